"""Online DNSSEC signing: keys, zone settings, canonical forms, the signer, validity windows.

A zone opts in with a sidecar ``<zone>.dnssec.yaml`` next to its zone file (see
``gslb.dnssec.settings``); the responder then signs every reply to a DO query once, when the
reply is packed (``gslb.dnssec.signer``), so cached replies carry their signatures.
"""
