"""The zone the commit tests share: one dynamic name over two CDNs, a contract on the first."""

from __future__ import annotations

A, B = "cdn-a.example.net.", "cdn-b.example.net."


def commit_zone(start: float, controller: str, commit: str, period: str) -> str:
    """``controller`` is the record's ``gslb.commit`` flow mapping body; cdn-a commits
    ``commit`` bytes per ``period`` from ``start``; cdn-b is the cheap one without a contract."""
    return f"""\
'':
  - type: NS
    values: [ns1.example.com.]
ns1:
  type: A
  value: 192.0.2.53
content:
  type: CNAME
  ttl: 30
  value: origin.example.com.
  dynamic:
    pools:
      all:
        values:
          - {{value: {A}, weight: 50}}
          - {{value: {B}, weight: 50}}
    rules:
      - pool: all
  gslb:
    commit: {{{controller}}}
    targets:
      {A}:
        commit: {{volume: {commit}, period: {period}, start: {start}, price: 0.004, overage: 0.006}}
      {B}: {{cost: 0.002}}
"""
