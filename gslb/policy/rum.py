"""Step ``rum``: keep the CDNs that real users on the client's network find fast and available.

The decision was made off the answer path (``gslb.rum.decide``) and looked up by the engine
for this client before the chain ran (``ctx.rum``: the finest level with enough samples), so
the step only drops what that decision says, and explains it. No usable measurements for the
client's network at any level: every value passes through, and the trace says so. If every
value the decision keeps is gone already (health), all stay: a slow answer beats none.
"""

from __future__ import annotations

from gslb.policy.context import Candidate, Context


def step(ctx: Context, cands: list[Candidate]) -> list[Candidate]:
    ctx.trace.step("rum", cands)
    decision = ctx.rum
    if decision is None:
        ctx.trace.note("rum", "no usable measurements for this client: every value passes")
        ctx.trace.done(cands)
        return cands
    if ctx.trace.enabled:
        _describe(ctx, decision)
    dropped = decision.dropped
    keep = [c for c in cands if c.target.value not in dropped or c.pool is None]
    if not keep:
        ctx.trace.note("kept_all", "every value would be dropped; keeping them all")
        keep = cands
    else:
        for cand in cands:
            if cand not in keep:
                ctx.trace.drop(cand, f"rum {decision.level} {decision.key}: "
                               f"{dropped[cand.target.value]}")  # fmt: skip
    ctx.trace.done(keep)
    return keep


def _describe(ctx: Context, decision) -> None:
    ctx.trace.note("level", decision.level)
    ctx.trace.note("key", decision.key)
    ctx.trace.note("samples", round(decision.samples))
    ctx.trace.note("set_since", decision.since)
    ctx.trace.note(
        "targets",
        {
            f.target: {
                "samples": round(f.n),
                "p50_ms": None if f.p50 is None else round(f.p50, 1),
                "p90_ms": None if f.p90 is None else round(f.p90, 1),
                "availability": round(f.availability, 3),
                "verdict": f.verdict,
                "why": f.why,
            }
            for f in decision.figures
        },
    )
