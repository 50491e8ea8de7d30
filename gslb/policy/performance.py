"""Step ``performance``: drop values that are much slower than the best, or that fail often.

Reads the prober's moving averages (``CheckState.latency``, ``success_ratio``). A value
without data is kept: no data is not bad data. The step never drops everything: if every
value would go, all stay (a slow answer beats no answer).
"""

from __future__ import annotations

from gslb.policy.context import Candidate, Context


def step(ctx: Context, cands: list[Candidate]) -> list[Candidate]:
    ctx.trace.step("performance", cands)
    options, view = ctx.options, ctx.health
    for cand in cands:
        state = view.state(cand.target.check)
        if state is not None:
            cand.latency, cand.success_ratio = state.latency, state.success_ratio
    measured = [c.latency for c in cands if c.latency is not None]
    limit = None
    if measured:
        best = min(measured)
        limit = max(best * (1 + options.latency_tolerance), best + options.latency_margin)
    keep: list[Candidate] = []
    dropped: list[tuple[Candidate, str]] = []
    for cand in cands:
        if cand.success_ratio is not None and cand.success_ratio < options.success_floor:
            floor = options.success_floor
            dropped.append((cand, f"success ratio {cand.success_ratio:.2f} < floor {floor:.2f}"))
        elif limit is not None and cand.latency is not None and cand.latency > limit:
            why = f"latency {cand.latency * 1000:.0f} ms > limit {limit * 1000:.0f} ms"
            dropped.append(
                (
                    cand,
                    f"{why} (best * {1 + options.latency_tolerance:g}, "
                    f"at least best + {options.latency_margin * 1000:.0f} ms)",
                )
            )
        else:
            keep.append(cand)
    if not keep:
        ctx.trace.note("kept_all", "every value would be dropped; keeping them all")
        keep = cands
    else:
        for cand, why in dropped:
            ctx.trace.drop(cand, why)
    ctx.trace.done(keep)
    return keep
