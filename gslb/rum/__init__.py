"""Real-user measurements: beacons from browsers, aggregates per client network, decisions.

``ingest`` (beacons and the bulk feed) -> ``store`` (mergeable per-level aggregates, bounded)
-> ``decide`` (levels, floors, tolerance, hysteresis) -> ``snapshot`` (immutable, read by the
``rum`` policy step on the DNS path). ``service`` runs it inside ``gslb serve``.
"""
