"""Commit-aware steering: CDN contracts, delivered volume, and the controller that paces them.

``contract`` parses what the zone file says; ``ledger`` keeps delivered bytes per target
(a usage feed, or an estimate from gslb's own answers); ``controller`` turns both into the
answer-share snapshot the ``commit`` policy step reads; ``service`` runs it off the DNS path.
"""
