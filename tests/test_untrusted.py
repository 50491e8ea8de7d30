"""Files we do not fully trust: zone YAML that is huge, deeply nested or an alias bomb is refused
with a clear error (by `gslb check`, and by a live reload that keeps the last good config), and
a missing or corrupt GeoIP database stops `gslb serve` at start with the reason."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import dns.message
import pytest

from gslb.cli import main
from gslb.config import safeyaml
from gslb.config.safeyaml import MAX_ALIASES, MAX_BYTES, MAX_DEPTH
from tests.conftest import write_zone
from tests.server import ServerThread
from tests.test_web import HEAD, metric, scrape

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[1]
GOOD = HEAD + "www:\n  type: A\n  value: 192.0.2.1\n"


def write_huge(path: Path) -> None:
    """Just over the size cap, written sparsely: valid YAML head, then a hole of zeros."""
    with path.open("wb") as f:
        f.write(GOOD.encode())
        f.truncate(MAX_BYTES + 1)


def billion_laughs() -> str:
    """Nine levels of nine aliases each: 9**9 nodes once expanded, a few hundred bytes."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 10):
        aliases = ", ".join([f"*l{level - 1}"] * 9)
        lines.append(f"l{level}: &l{level} [{aliases}]")
    return "\n".join(lines) + "\n"


ALIAS_LIMIT = 1000  # the tests lower safeyaml.MAX_ALIASES to this: same check, less time


def many_aliases() -> str:
    return "base: &b x\nlist: [" + ", ".join(["*b"] * (ALIAS_LIMIT + 1)) + "]\n"


@pytest.fixture(autouse=True)
def small_alias_limit(monkeypatch):
    monkeypatch.setattr(safeyaml, "MAX_ALIASES", ALIAS_LIMIT)
    assert ALIAS_LIMIT < MAX_ALIASES


def nested_block(depth: int) -> str:
    return "".join(" " * level + f"k{level}:\n" for level in range(depth)) + " " * depth + "v\n"


BAD_FILES = {
    "huge": (None, f"larger than {MAX_BYTES // (1024 * 1024)} MiB"),
    "nested-flow": ("a: " + "[" * 500 + "]" * 500 + "\n", f"deeper than {MAX_DEPTH} levels"),
    "nested-block": (nested_block(200), f"deeper than {MAX_DEPTH} levels"),
    "billion-laughs": (billion_laughs(), "YAML bomb"),
    "many-aliases": (many_aliases(), f"more than {ALIAS_LIMIT} aliases"),
}


def write_bad(directory: Path, kind: str) -> Path:
    text, _ = BAD_FILES[kind]
    path = directory / "example.com.yaml"
    if text is None:
        write_huge(path)
    else:
        write_zone(directory, "example.com", text)
    return path


@pytest.mark.parametrize("kind", BAD_FILES)
def test_gslb_check_refuses_with_a_clear_error(tmp_path, capsys, kind):
    path = write_bad(tmp_path, kind)
    assert main(["check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: " in err and BAD_FILES[kind][1] in err
    assert "1 problem(s) found" in err


def test_huge_file_is_sparse_and_refused_by_the_command(tmp_path):
    """The real command, in a subprocess: exit status and message as an operator sees them."""
    path = write_bad(tmp_path, "huge")
    assert path.stat().st_size > MAX_BYTES
    assert path.stat().st_blocks * 512 < 1024 * 1024, "sparse: no 64 MiB written to disk"
    result = subprocess.run(
        [sys.executable, "-m", "gslb", "check", str(tmp_path)],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 1
    assert "larger than 64 MiB" in result.stderr


DEPTH = 20_000
DEEP_FLOW = {
    "brackets": "a: " + "[" * DEPTH + "]" * DEPTH + "\n",
    "braces": "a: " + "{a: " * DEPTH + "}" * DEPTH + "\n",
    # a closer inside a string or a comment must not hide a level from the depth check
    "double-quoted-closer": "a: " + '["]", ' * DEPTH + "x" + "]" * DEPTH + "\n",
    "single-quoted-closer": "a: " + "[']', " * DEPTH + "x" + "]" * DEPTH + "\n",
    "comment-closer": "a: " + " [ # ]\n" * DEPTH + " x" + "]" * DEPTH + "\n",
}  # fmt: skip


def small_stack() -> None:
    """1 MiB of C stack, no core file: a recursion crash shows at 20k levels, in a second
    (the default 8 MiB stack needs ~30k+ levels and a slower run to show the same)."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_STACK, (1 << 20, 1 << 20))


@pytest.mark.parametrize("text", DEEP_FLOW.values(), ids=DEEP_FLOW.keys())
def test_very_deep_flow_nesting_is_refused_not_a_crash(tmp_path, text):
    """In a subprocess: the failure mode is the interpreter dying, not an exception."""
    write_zone(tmp_path, "example.com", text)
    result = subprocess.run(
        [sys.executable, "-m", "gslb", "check", str(tmp_path)],
        capture_output=True, text=True, timeout=60, cwd=REPO, preexec_fn=small_stack,
    )  # fmt: skip
    assert result.returncode == 1, f"exit status {result.returncode}: {result.stderr[-300:]}"
    path = tmp_path / "example.com.yaml"
    problem = next(line for line in result.stderr.splitlines() if line.startswith(f"{path}: "))
    assert "nest" in problem.lower(), "the reason names the nesting, whichever layer found it"


@pytest.fixture(scope="module")
def live(tmp_path_factory, geo_db):
    zones = tmp_path_factory.mktemp("zones")
    write_zone(zones, "example.com", GOOD)
    with ServerThread(zones, geo_db) as server:
        yield server, zones


def answer(server: ServerThread) -> str:
    reply = server.udp(dns.message.make_query("www.example.com", "A"))
    return reply.answer[0][0].address


@pytest.mark.parametrize("kind", BAD_FILES)
def test_live_reload_refuses_and_keeps_the_last_good_config(live, kind):
    server, zones = live
    good = server.app.config.digest
    write_bad(zones, kind)
    result = server.call(server.app.reload())
    assert not result.ok
    assert any(BAD_FILES[kind][1] in line for line in result.errors), result.errors
    assert server.app.config.digest == good
    assert answer(server) == "192.0.2.1", "the last good config keeps serving"
    assert metric(scrape(server), "gslb_config_last_reload_successful") == 0
    write_zone(zones, "example.com", GOOD.replace("192.0.2.1", "192.0.2.2"))
    assert server.call(server.app.reload()).ok
    assert answer(server) == "192.0.2.2"
    write_zone(zones, "example.com", GOOD)
    assert server.call(server.app.reload()).ok


# -- GeoIP database at start -----------------------------------------------------------------


def serve(zones: Path, geoip: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "gslb", "serve", "--zones", str(zones), "--geoip",
               str(geoip), "--dns", "127.0.0.1:0", "--http", "127.0.0.1:0", "--workers", "1",
               "--watch-interval", "0"]  # fmt: skip
    if os.geteuid() == 0:
        command.append("--allow-root")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=REPO, env=env)


def corrupt_copy(geo_db: Path, directory: Path) -> Path:
    """The test database cut in half: the header is fine, the metadata is gone."""
    raw = geo_db.read_bytes()
    path = directory / "cut.mmdb"
    path.write_bytes(raw[: len(raw) // 2])
    return path


@pytest.mark.parametrize("kind", ["missing", "not-mmdb", "bad-gzip", "cut"])
def test_serve_stops_at_start_on_a_bad_geoip_database(tmp_path, geo_db, kind):
    zones = tmp_path / "zones"
    write_zone(zones, "example.com", GOOD)
    path = tmp_path / "geo.mmdb"
    if kind == "not-mmdb":
        path.write_bytes(b"this is not a MaxMind database\n" * 100)
    elif kind == "bad-gzip":
        path = tmp_path / "geo.mmdb.gz"
        path.write_bytes(b"\x1f\x8b\x08\x00" + os.urandom(200))
    elif kind == "cut":
        path = corrupt_copy(geo_db, tmp_path)
    result = serve(zones, path)
    assert result.returncode == 2, result.stderr[-500:]
    assert "cannot start" in result.stderr and f"GeoIP database {path}" in result.stderr
    assert "listening for DNS" not in result.stderr, "nothing may be served without geo data"
