"""Control the ``make demo`` stand-ins and watch the answers, without dig or curl.

python demo/ctl.py down cdn-a          # cdn-a's /health answers 503 from now on
python demo/ctl.py up cdn-a            # healthy again
python demo/ctl.py watch               # ask gslb twice a second, print what it answers
python demo/ctl.py status              # each check's state, from gslb's /status
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from collections import Counter, deque

EDGES = {"origin": 9080, "cdn-a": 9081, "cdn-b": 9082, "cdn-c": 9083}
DNS_PORT, HTTP_PORT = 5300, 9053
NAME = "content.demo.example."


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dns-port", type=int, default=DNS_PORT, metavar="PORT")
    parser.add_argument("--http-port", type=int, default=HTTP_PORT, metavar="PORT")
    parser.add_argument("--edge-port", type=int, default=EDGES["origin"], metavar="PORT",
                        help="as given to demo/run.py (the origin's; the CDNs the next three)")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in ("down", "up"):
        p = sub.add_parser(command, help=f"switch stand-ins {command}")
        p.add_argument("names", nargs="+", choices=sorted(EDGES))
    watch = sub.add_parser("watch", help="query gslb repeatedly and print the answers")
    watch.add_argument("--every", type=float, default=0.5, metavar="SECONDS")
    sub.add_parser("status", help="each health check's state")
    return parser.parse_args()


def switch(command: str, names: list[str]) -> int:
    for name in names:
        request = urllib.request.Request(f"http://127.0.0.1:{EDGES[name]}/{command}", b"", {})
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                print(response.read().decode().strip())
        except OSError as exc:
            print(f"{name}: {exc} (is `make demo` running?)", file=sys.stderr)
            return 1
    return 0


def answer(query) -> str:
    """The chain of names and addresses, like ``dig +short`` prints it, on one line."""
    import dns.query

    reply = dns.query.udp(query, "127.0.0.1", port=DNS_PORT, timeout=1)
    parts = [rr.to_text() for rrset in reply.answer for rr in rrset]
    return " -> ".join(parts) or f"(no answer, {reply.rcode()})"


def watch(every: float) -> int:
    """One line per query, with the share of each first answer over the last 20."""
    import dns.exception
    import dns.message

    query = dns.message.make_query(NAME, "A")
    recent: deque[str] = deque(maxlen=20)
    try:
        while True:
            try:
                text = answer(query)
            except (dns.exception.Timeout, OSError) as exc:
                text = f"(no reply: {exc})"
            recent.append(text.split(" -> ")[0])
            shares = ", ".join(f"{k} {v * 100 // len(recent)}%" for k, v in
                               Counter(recent).most_common())  # fmt: skip
            print(f"{time.strftime('%H:%M:%S')}  {text:<45}  last {len(recent)}: {shares}")
            time.sleep(every)
    except KeyboardInterrupt:
        return 0


def status() -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{HTTP_PORT}/status", timeout=2) as r:
            data = json.load(r)
    except OSError as exc:
        print(f"gslb: {exc} (is `make demo` running?)", file=sys.stderr)
        return 1
    checks = (data.get("health") or {}).get("checks", {})
    for key, state in sorted(checks.items()):
        print(f"{key.partition('#')[0]:<32} {state.get('effective', state)}")
    return 0


def main() -> int:
    global DNS_PORT, HTTP_PORT
    args = parse_args()
    DNS_PORT, HTTP_PORT = args.dns_port, args.http_port
    for offset, name in enumerate(EDGES):
        EDGES[name] = args.edge_port + offset
    if args.command in ("down", "up"):
        return switch(args.command, args.names)
    if args.command == "watch":
        return watch(args.every)
    return status()


if __name__ == "__main__":
    raise SystemExit(main())
