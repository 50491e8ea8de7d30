"""Step ``health``: drop what is down; an empty pool falls to its ``fallback``, and so on; the
end of the chain is the record's own values (the origin).

- ``status: down`` always drops, ``status: up`` always keeps (whatever the prober says);
  ``obey`` follows the check (no check, or not probed yet, counts as up).
- ``drained`` values are used only when nothing else in the same pool is usable.
- A value with PoPs is usable while one of its PoPs is; PoPs whose own check is down leave.
- The origin is answered when its ``origin_check`` is up; when it is down too, ``fail_open``
  answers it anyway (reason ``fail-open``), else there is no answer (reason ``exhausted``).
"""

from __future__ import annotations

from gslb.config.model import Target
from gslb.health.view import DOWN, DRAINED, UP, HealthView
from gslb.policy.context import Candidate, Context, candidates, pop_values


def target_health(
    view: HealthView, target: Target, record: str = "", pool: str | None = None
) -> tuple[str, bool]:
    """(up | drained | down, forced): the zone's status first, then an operator's override
    of the value, then the health view (the check's probes or the check's override)."""
    if target.status == "down":
        return DOWN, False
    operator = view.target_override(record, pool, target.value)
    if operator is not None:
        return operator, operator == UP and view.effective(target.check) != UP
    effective = view.effective(target.check)
    if target.status == "up":
        return UP, effective != UP
    state = view.state(target.check)
    forced = state is not None and state.override == UP and not state.up
    return effective, forced


def assess(view: HealthView, cand: Candidate, record: str = "") -> None:
    """Fill in health, forced and the usable PoPs of one candidate."""
    health, forced = target_health(view, cand.target, record, cand.pool)
    if health != DOWN and cand.pops and cand.target.status != "up":
        usable = tuple(p for p in cand.pops if p.check is None or view.effective(p.check) != DOWN)
        if not usable:
            health = DOWN
        cand.pops = usable
        cand.values = pop_values(cand.target, usable)
    cand.health, cand.forced = health, forced


def usable(ctx: Context, cands: list[Candidate]) -> list[Candidate]:
    """Up candidates; drained ones only when nothing in this pool is up."""
    view = ctx.health
    for cand in cands:
        assess(view, cand, ctx.record.fqdn)
        if view.varies and _varies(view, cand):
            ctx.used_location = True  # the verdict differs by region: scope to the network
    up = [c for c in cands if c.health == UP]
    keep = up or [c for c in cands if c.health == DRAINED]
    for cand in cands:
        if cand.health == DOWN:
            why = "status: down" if cand.target.status == "down" else _down_reason(ctx, cand)
            ctx.trace.drop(cand, why)
        elif cand.health == DRAINED and up:
            ctx.trace.drop(cand, "drained (other values of the pool are up)")
    return keep


def _varies(view: HealthView, cand: Candidate) -> bool:
    checks = (cand.target.check, *(pop.check for pop in cand.target.pops))
    return any(check in view.varies for check in checks if check is not None)


def _down_reason(ctx: Context, cand: Candidate) -> str:
    view = ctx.health
    if view.target_override(ctx.record.fqdn, cand.pool, cand.target.value) == DOWN:
        return "forced down by operator"
    state = view.state(cand.target.check)
    if state is not None and state.effective == DOWN:
        return f"check down: {state.reason}" if state.reason else "check down"
    return "every PoP's check is down"


def step(ctx: Context, cands: list[Candidate]) -> list[Candidate]:
    ctx.trace.step("health", cands)
    tried: list[str] = []
    while True:
        keep = usable(ctx, cands)
        if keep or ctx.pool is None:
            break
        tried.append(ctx.pool)
        following = ctx.record.pools[ctx.pool].fallback
        if following is not None and following not in tried:
            ctx.pool, ctx.reason = following, "fallback"
            cands = candidates(ctx.record.pools[following].targets, following)
        else:
            ctx.pool, ctx.reason = None, "origin"
            cands = origin_candidates(ctx)
    if tried:
        ctx.trace.note("exhausted_pools", tried)
    if ctx.pool is None:
        keep = origin_outcome(ctx, cands, keep)
    ctx.trace.note("pool", ctx.pool if ctx.pool is not None else "(origin)")
    ctx.trace.note("reason", ctx.reason)
    ctx.trace.done(keep)
    return keep


def origin_candidates(ctx: Context) -> list[Candidate]:
    record = ctx.record
    targets = record.origin_targets or tuple(
        Target(value=v, check=record.options.origin_check) for v in record.origin
    )
    return candidates(targets, None)


def origin_outcome(ctx: Context, cands: list[Candidate], keep: list[Candidate]) -> list[Candidate]:
    """The last resort: healthy origin values, or fail-open / exhausted when none is."""
    if keep:
        return keep
    if ctx.options.fail_open:
        ctx.reason = "fail-open"
        ctx.trace.note("fail_open", "origin check down, answering it anyway")
        for cand in cands:
            cand.values = pop_values(cand.target, cand.target.pops)
        return cands
    ctx.reason = "exhausted"
    return []
