"""One DNSSEC key: PEM in, DNSKEY/DS/key tag/signatures out (RFC 4034, RFC 6605, RFC 8080).

Only ``cryptography`` is used at run time. ECDSA signatures are deterministic (RFC 6979), so
every instance holding the same key produces byte-identical RRSIGs for the same data.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ECDSAP256SHA256, ED25519 = 13, 15
ALGORITHMS = {"ecdsap256sha256": ECDSAP256SHA256, "ed25519": ED25519}
ALGORITHM_NAMES = {number: name for name, number in ALGORITHMS.items()}
CSK_FLAGS = 257  # zone key + secure entry point: one combined signing key
PROTOCOL = 3
DIGEST_SHA256 = 2
DNSKEY_HEAD = struct.Struct("!HBB")


class KeyError_(ValueError):
    """A key file that cannot be used: unreadable, not PEM, wrong algorithm."""


def parse_algorithm(value: object) -> int:
    """``13``, ``"13"``, ``"ECDSAP256SHA256"`` or ``"ed25519"`` -> algorithm number."""
    text = str(value).strip().lower().replace("-", "").replace("_", "")
    if text.isdigit() and int(text) in ALGORITHM_NAMES:
        return int(text)
    if text in ALGORITHMS:
        return ALGORITHMS[text]
    raise KeyError_(f'algorithm "{value}" not supported (ECDSAP256SHA256 = 13, ED25519 = 15)')


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private key with what the zone publishes for it. Picklable (workers get the PEM and
    load the key object lazily in their own process)."""

    pem: bytes
    algorithm: int
    public: bytes  # the DNSKEY public key field
    source: str = ""  # the file it came from, for messages
    _private: list = field(default_factory=list, compare=False, repr=False)

    @classmethod
    def from_pem(cls, pem: bytes, source: str = "") -> SigningKey:
        try:
            private = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise KeyError_(f"not an unencrypted PKCS#8 PEM private key ({exc})") from None
        if isinstance(private, ec.EllipticCurvePrivateKey):
            if not isinstance(private.curve, ec.SECP256R1):
                raise KeyError_(f"ECDSA key on {private.curve.name}, only P-256 is supported")
            numbers = private.public_key().public_numbers()
            public = numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")
            return cls(pem, ECDSAP256SHA256, public, source, [private])
        if isinstance(private, ed25519.Ed25519PrivateKey):
            public = private.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            return cls(pem, ED25519, public, source, [private])
        raise KeyError_(f"{type(private).__name__} keys are not supported (P-256 or Ed25519)")

    @property
    def dnskey_rdata(self) -> bytes:
        return DNSKEY_HEAD.pack(CSK_FLAGS, PROTOCOL, self.algorithm) + self.public

    @property
    def tag(self) -> int:
        return key_tag(self.dnskey_rdata)

    def ds_digest(self, owner: bytes) -> bytes:
        """SHA-256 DS digest (RFC 4509) for the zone apex ``owner`` (lowercase wire)."""
        return hashlib.sha256(owner + self.dnskey_rdata).digest()

    def ds_rdata(self, owner: bytes) -> bytes:
        return struct.pack("!HBB", self.tag, self.algorithm, DIGEST_SHA256) + self.ds_digest(owner)

    def sign(self, data: bytes) -> bytes:
        """The RRSIG signature field: r||s (RFC 6605) or the raw Ed25519 signature."""
        private = self.private()
        if self.algorithm == ED25519:
            return private.sign(data)
        der = private.sign(data, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
        r, s = decode_dss_signature(der)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def private(self):
        if not self._private:  # unpickled in a worker: load once
            self._private.append(serialization.load_pem_private_key(self.pem, password=None))
        return self._private[0]

    def __getstate__(self):
        return (self.pem, self.algorithm, self.public, self.source)

    def __setstate__(self, state) -> None:
        for name, value in zip(("pem", "algorithm", "public", "source"), state, strict=True):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_private", [])


def key_tag(rdata: bytes) -> int:
    """RFC 4034 Appendix B: the ones-complement-like sum over the DNSKEY RDATA."""
    total = 0
    for index, byte in enumerate(rdata):
        total += byte if index & 1 else byte << 8
    total += (total >> 16) & 0xFFFF
    return total & 0xFFFF


def generate(algorithm: int = ECDSAP256SHA256) -> bytes:
    """A new private key as unencrypted PKCS#8 PEM."""
    if algorithm == ED25519:
        private = ed25519.Ed25519PrivateKey.generate()
    elif algorithm == ECDSAP256SHA256:
        private = ec.generate_private_key(ec.SECP256R1())
    else:
        raise KeyError_(f"algorithm {algorithm} not supported")
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_key_file(path, expected_algorithm: int | None = None) -> SigningKey:
    """Read and check one key file; KeyError_ says what is wrong (the caller adds zone/file)."""
    try:
        pem = open(path, "rb").read()  # noqa: SIM115 - tiny file, read whole
    except OSError as exc:
        raise KeyError_(f"cannot read key file: {exc.strerror or exc}") from None
    key = SigningKey.from_pem(pem, str(path))
    if expected_algorithm is not None and key.algorithm != expected_algorithm:
        raise KeyError_(
            f"key is algorithm {key.algorithm} ({ALGORITHM_NAMES[key.algorithm]}), the zone "
            f"is configured for {expected_algorithm} ({ALGORITHM_NAMES[expected_algorithm]})"
        )
    return key
