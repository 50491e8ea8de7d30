"""Step ``cost``: keep values costing at most ``cheapest * (1 + tolerance)`` (NS1's Cost filter
with a tolerance, so near-equal prices still share traffic). Values without a cost stay.
"""

from __future__ import annotations

from gslb.policy.context import Candidate, Context


def step(ctx: Context, cands: list[Candidate]) -> list[Candidate]:
    ctx.trace.step("cost", cands)
    costs = [c.target.cost for c in cands if c.target.cost is not None]
    if not costs:
        ctx.trace.note("skipped", "no value has a cost")
        ctx.trace.done(cands)
        return cands
    tolerance = ctx.options.cost_tolerance
    limit = min(costs) * (1 + tolerance) * (1 + 1e-9)  # 1.1 * 1.2 must still keep 1.32
    ctx.trace.note("limit", round(limit, 6))
    keep: list[Candidate] = []
    for cand in cands:
        cost = cand.target.cost
        if cost is not None and cost > limit:
            ctx.trace.drop(cand, f"cost {cost:g} > cheapest * {1 + tolerance:g} = {limit:.4g}")
        else:
            keep.append(cand)
    ctx.trace.done(keep)
    return keep
