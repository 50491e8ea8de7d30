"""Step ``proximity``: keep the values whose nearest PoP is close to the client.

Distance is great-circle (haversine) from the client's GeoIP coordinates to each value's
nearest usable PoP. Values within ``nearest + km`` (or ``nearest * ratio``) stay; values
without coordinates stay too (they cannot be judged); with an unknown client location the
step does nothing. In ratio mode the limit is never below ``nearest + min_km`` (500 km by
default): GeoIP coordinates are only good to a few hundred km, and without the floor a client
next to one PoP (nearest ~0 km) would lose every other CDN. For A/AAAA values whose PoPs
carry addresses, the answer becomes the nearest PoP's addresses.
"""

from __future__ import annotations

from gslb.config.model import Pop
from gslb.geo import haversine_km
from gslb.policy.context import Candidate, Context


def nearest_pop(pops: tuple[Pop, ...], lat: float, lon: float) -> tuple[Pop, float]:
    distances = [(haversine_km(lat, lon, p.lat, p.lon), i) for i, p in enumerate(pops)]
    distance, index = min(distances)
    return pops[index], distance


def step(ctx: Context, cands: list[Candidate]) -> list[Candidate]:
    ctx.trace.step("proximity", cands)
    located = [c for c in cands if c.pops]
    if not located:
        ctx.trace.note("skipped", "no value has coordinates")
        ctx.trace.done(cands)
        return cands
    # From here the outcome depends on where the client is, even when that is "unknown".
    ctx.used_location = True
    loc = ctx.client.location
    if loc is None or loc.lat is None or loc.lon is None:
        ctx.trace.note("skipped", "client location unknown")
        ctx.trace.done(cands)
        return cands
    for cand in located:
        pop, cand.distance_km = nearest_pop(cand.pops, loc.lat, loc.lon)
        cand.pop = pop.name
        cand.values = pop.addresses or (cand.target.value,)
    nearest = min(c.distance_km for c in located if c.distance_km is not None)
    options = ctx.options
    if options.proximity_km is not None:
        limit, rule = nearest + options.proximity_km, f"nearest + {options.proximity_km:g} km"
    else:
        ratio = options.proximity_ratio or 1.0
        floor = options.proximity_min_km
        limit = max(nearest * ratio, nearest + floor)
        rule = f"max(nearest * {ratio:g}, nearest + {floor:g} km)"
    ctx.trace.note("nearest_km", round(nearest, 1))
    ctx.trace.note("limit_km", round(limit, 1))
    keep: list[Candidate] = []
    for cand in cands:
        if cand.distance_km is not None and cand.distance_km > limit:
            ctx.trace.drop(cand, f"{cand.distance_km:.0f} km > {rule} = {limit:.0f} km")
        else:
            keep.append(cand)
    ctx.trace.done(keep)
    return keep
