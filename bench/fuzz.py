"""``make fuzz``: the packet-path property of tests/test_fuzz.py, at scale and bounded in time.

For ``FUZZ_SECONDS`` (default 120) it rotates through three kinds of batch until time is up:

* hypothesis: the structured strategies of tests/test_fuzz.py (bogus OPT/ECS, pointer and label
  loops, lying counts, every opcode and class), each example with derived variants, against
  ``Responder.handle`` directly; a failure is shrunk by hypothesis;
* mutation: a corpus of valid queries (dnspython) mutated at random, tens of thousands of cases
  per batch, against ``Responder.handle`` directly;
* live: mutated messages sent to a real server on loopback over UDP and TCP (framed, and raw
  garbage streams), each followed by a normal query that must be answered.

The invariant is ``tests.test_fuzz.check``: no exception escapes, silence only for what is not a
query, every reply parses, carries the query's ID and fits the size the client allowed. The
first failure stops the run: its bytes go to bench/results/fuzz-failure.bin and the exit status
is 1. Figures go to bench/results/fuzz.json.
"""

from __future__ import annotations

import os
import random
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file: make gslb and tests importable
    sys.path.insert(0, str(ROOT))

import dns.edns  # noqa: E402
import dns.message  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from gslb.config.load import load_config  # noqa: E402
from gslb.dns.responder import Options, Responder  # noqa: E402
from gslb.geo import GeoDB  # noqa: E402
from gslb.policy.chain import Engine  # noqa: E402
from tests.geodb import WORLD, write_test_db  # noqa: E402
from tests.server import ServerThread  # noqa: E402
from tests.test_fuzz import (  # noqa: E402
    CLIENTS,
    IDENTITY,
    NAMES,
    Client,
    check,
    messages,
    probe_for,
    variants,
    zones_dir,
)  # fmt: skip

RESULTS = ROOT / "bench" / "results"
QTYPES = ["A", "AAAA", "CNAME", "SOA", "NS", "MX", "TXT", "SRV", "PTR", "CAA", "ANY", "HTTPS"]


class Failure(Exception):
    def __init__(self, kind: str, data: bytes, transport: str, detail: str) -> None:
        super().__init__(f"{kind} ({transport}): {detail}")
        self.kind, self.data, self.transport, self.detail = kind, data, transport, detail


def corpus() -> list[bytes]:
    """Valid queries for every name and type, plain, with EDNS, with ECS, with NSID."""
    out = []
    for name in NAMES:
        for qtype in QTYPES:
            out.append(dns.message.make_query(name or ".", qtype).to_wire())
            ecs = [dns.edns.ECSOption("46.4.1.0", 24), dns.edns.GenericOption(3, b"")]
            query = dns.message.make_query(name or ".", qtype, use_edns=0, options=ecs)
            out.append(query.to_wire())
    return out


def mutate(data: bytes, rng: random.Random) -> bytes:
    mutant = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        action = rng.random()
        position = rng.randrange(len(mutant) + 1)
        if action < 0.35 and mutant:
            mutant[min(position, len(mutant) - 1)] ^= 1 << rng.randrange(8)
        elif action < 0.5 and mutant:
            mutant[min(position, len(mutant) - 1)] = rng.randrange(256)
        elif action < 0.65:
            del mutant[position:]
        elif action < 0.8:
            mutant[position:position] = rng.randbytes(rng.randint(1, 16))
        elif action < 0.9 and len(mutant) >= 12:
            offset = rng.choice((4, 6, 8, 10))
            mutant[offset : offset + 2] = rng.choice((b"\xff\xff", b"\x00\x00", b"\x00\x02"))
        elif mutant:
            del mutant[position : position + rng.randint(1, 8)]
    return bytes(mutant)


def checked(responder: Responder, data: bytes, kind: str) -> None:
    for transport in ("udp", "tcp"):
        try:
            check(data, responder.handle(data, random.choice(CLIENTS), transport), transport)
        except Exception as exc:  # an assertion or anything escaping the responder
            raise Failure(kind, data, transport, f"{type(exc).__name__}: {exc}") from exc


class Fuzzer:
    def __init__(self, responder: Responder, server: ServerThread, seed: int) -> None:
        self.responder, self.server = responder, server
        self.rng = random.Random(seed)
        self.corpus = corpus()
        self.client = Client(server.dns_port)
        self.cases = {"hypothesis": 0, "mutation": 0, "live": 0, "garbage_streams": 0}
        self.seconds = {"hypothesis": 0.0, "mutation": 0.0, "live": 0.0}

    def hypothesis_batch(self, examples: int = 300) -> None:
        @settings(max_examples=examples, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(data=messages, seed=st.integers(0, 2**32))
        def run(data: bytes, seed: int) -> None:
            for case in variants(data, seed):
                checked(self.responder, case, "hypothesis")
                self.cases["hypothesis"] += 1

        run()

    def mutation_batch(self, count: int = 20_000) -> None:
        for _ in range(count):
            data = mutate(self.rng.choice(self.corpus), self.rng)
            checked(self.responder, data, "mutation")
        self.cases["mutation"] += count

    def live_batch(self, count: int = 200) -> None:
        for _ in range(count):
            data = mutate(self.rng.choice(self.corpus), self.rng)
            probe = probe_for(data)
            for transport in ("udp", "tcp"):
                try:
                    reply = getattr(self.client, transport)(data, probe)
                    if reply is not None or transport == "udp":
                        check(data, reply, transport)
                    elif not (len(data) < 12 or data[2] & 0x80):
                        raise AssertionError("a query got a hang-up over TCP")
                except Exception as exc:
                    detail = f"{type(exc).__name__}: {exc}"
                    raise Failure("live", data, transport, detail) from exc
        self.cases["live"] += 2 * count
        self.garbage_streams()

    def garbage_streams(self, count: int = 20) -> None:
        """Unframed bytes on TCP connections; the server must then still answer."""
        for _ in range(count):
            with socket.create_connection(("127.0.0.1", self.server.dns_port), timeout=2) as s:
                s.sendall(self.rng.randbytes(self.rng.randint(1, 3000)))
        self.cases["garbage_streams"] += count
        reply = self.server.tcp(dns.message.make_query("www.example.com", "A"))
        if not reply.answer:
            raise Failure("live", b"", "tcp", "no answer after garbage streams")

    def run(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        batches: list[tuple[str, Callable[[], None]]] = [
            ("hypothesis", self.hypothesis_batch), ("mutation", self.mutation_batch),
            ("live", self.live_batch),
        ]  # fmt: skip
        for name, batch in cycle(batches):
            if time.monotonic() >= deadline:
                return
            started = time.monotonic()
            batch()
            self.seconds[name] += time.monotonic() - started


def cycle(items: list) -> Iterator:
    while True:
        yield from items


def main() -> int:
    seconds = float(os.environ.get("FUZZ_SECONDS", "120"))
    seed = int(os.environ.get("FUZZ_SEED", str(int(time.time()))))
    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gslb-fuzz-") as tmp:
        work = Path(tmp)
        geo = write_test_db(work / "world.mmdb", WORLD)
        zones = zones_dir(work / "zones")
        config, errors = load_config(zones)
        if config is None:
            print("\n".join(errors), file=sys.stderr)
            return 2
        responder = Responder(config, Engine(GeoDB.open(geo)), Options(IDENTITY, "fuzz"))
        overrides = {"identity": IDENTITY, "version_string": "fuzz"}
        with ServerThread(zones, geo, **overrides) as server:
            fuzzer = Fuzzer(responder, server, seed)
            print(f"fuzzing for {seconds:.0f} s (FUZZ_SECONDS), seed {seed} (FUZZ_SEED)")
            return report(fuzzer, seconds, seed)


def report(fuzzer: Fuzzer, seconds: float, seed: int) -> int:
    import json

    started = time.monotonic()
    failure = None
    try:
        fuzzer.run(seconds)
    except Failure as exc:
        failure = exc
    except Exception as exc:  # hypothesis re-raises the shrunk failure as itself
        failure = Failure("hypothesis", b"", "?", "".join(traceback.format_exception(exc)))
    elapsed = time.monotonic() - started
    result = {
        "seconds": round(elapsed, 1), "seed": seed, "cases": fuzzer.cases,
        "rates_per_second": {k: round(fuzzer.cases[k] / v) for k, v in fuzzer.seconds.items() if v},
        "failure": None if failure is None else {
            "kind": failure.kind, "transport": failure.transport, "detail": failure.detail,
            "bytes_hex": failure.data.hex(),
        },
    }  # fmt: skip
    (RESULTS / "fuzz.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if failure is not None:
        (RESULTS / "fuzz-failure.bin").write_bytes(failure.data)
        print(f"FAILED: {failure}", file=sys.stderr)
        return 1
    total = sum(fuzzer.cases.values())
    print(f"ok: {total} cases in {elapsed:.0f} s, no failure")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
