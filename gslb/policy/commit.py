"""Step ``commit``: replace the kept values' weights with the commit controller's weights.

It never adds or drops a value: it only re-weights the values that rules, health, RUM,
performance and proximity kept, so filling a contract never sends a user to a CDN those steps
ruled out. The weights come from an immutable ``Steering`` snapshot (``gslb.commit.view``)
computed off the DNS path; before the controller's first tick the static weights stand.
"""

from __future__ import annotations

from gslb.commit.view import Steering, record_key
from gslb.policy.context import Candidate, Context


def step(ctx: Context, cands: list[Candidate]) -> list[Candidate]:
    ctx.trace.step("commit", cands)
    record = ctx.record
    steering: Steering | None = ctx.health.steering.get(record_key(record.fqdn, record.rtype))
    if steering is None:
        ctx.trace.note("skipped", "no controller state yet: static weights")
        ctx.trace.done(cands)
        return cands
    weights = [steering.weight_of(c.target.value) for c in cands]
    if not any(weights):  # the controller has zeroed everything this client may use
        ctx.trace.note("kept_static", "controller gives no weight to any kept value")
        ctx.trace.done(cands)
        return cands
    for cand, weight in zip(cands, weights, strict=True):
        cand.weight = max(1, weight or 0)
    if ctx.trace.enabled:
        ctx.trace.note("controller", steering.describe())
    ctx.trace.done(cands)
    return cands
