"""What-if simulation: shares per target and continent, expected cost, client sources."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from gslb.config.dynamic import parse_dynamic
from gslb.config.model import CNAME, DynamicRecord
from gslb.geo import GeoDB
from gslb.health.view import EMPTY_VIEW
from gslb.policy.chain import Engine
from gslb.simulate import load_clients, render_text, run_simulation, sample_clients, simulate
from tests.geodb import CLIENTS, write_world_db


def record(fail_open: bool = True) -> DynamicRecord:
    data = {
        "type": "CNAME",
        "value": "origin.example.net.",
        "dynamic": {
            "pools": {
                "eu": {"values": [{"value": "a.cdn.net.", "weight": 3}, {"value": "b.cdn.net."}]},
                "rest": {"values": [{"value": "c.cdn.net."}]},
            },
            "rules": [{"geos": ["EU"], "pool": "eu"}, {"pool": "rest"}],
        },
        "gslb": {
            "sticky": True,
            "fail_open": fail_open,
            "targets": {
                "a.cdn.net.": {"cost": 1.0},
                "b.cdn.net.": {"cost": 1.1},
                "origin.example.net.": {"cost": 10.0},
            },
        },
    }
    errors: list[str] = []
    parsed, _ = parse_dynamic("content.example.com.", b"x", CNAME, 60, data, "t", errors)
    assert errors == [] and parsed is not None
    return parsed


@pytest.fixture(scope="module")
def geo(tmp_path_factory) -> GeoDB:
    with GeoDB.open(write_world_db(tmp_path_factory.mktemp("geo"))) as db:
        yield db


def eu_and_asia_clients() -> list[ipaddress.IPv4Address]:
    """400 clients in Germany (one per /24, so sticky hashing spreads them), 100 in Japan."""
    de = [ipaddress.IPv4Address(f"46.4.{i}.10") for i in range(200)]
    fr = [ipaddress.IPv4Address(f"51.15.{i}.10") for i in range(200)]
    jp = [ipaddress.IPv4Address(f"126.0.{i}.10") for i in range(100)]
    return de + fr + jp


def test_shares_per_target_and_continent_and_expected_cost(geo: GeoDB) -> None:
    result = simulate(record(), Engine(geo), EMPTY_VIEW, eu_and_asia_clients())
    assert result["clients"] == 500
    (rec,) = result["records"]
    shares = rec["targets"]
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["c.cdn.net."] == pytest.approx(0.2)  # Japan: the catch-all pool
    assert shares["a.cdn.net."] == pytest.approx(0.6, abs=0.05)  # 3/4 of Europe's 80 %
    assert rec["continents"]["EU"]["share"] == pytest.approx(0.8)
    assert set(rec["continents"]["AS"]["targets"]) == {"c.cdn.net."}
    assert rec["continents"]["EU"]["targets"]["a.cdn.net."] == pytest.approx(0.75, abs=0.06)
    expected = shares["a.cdn.net."] * 1.0 + shares["b.cdn.net."] * 1.1
    assert rec["expected_cost_per_gb"] == pytest.approx(expected)
    assert rec["uncosted_share"] == pytest.approx(0.2)  # c.cdn.net. has no cost
    assert rec["reasons"] == {"rule": pytest.approx(0.8), "pool": pytest.approx(0.2)}


def test_origin_cost_comes_from_targets_or_the_argument(geo: GeoDB) -> None:
    rec = record()
    # Every CDN forced down: everything goes to the origin.
    down = {
        "type": "CNAME",
        "value": "origin.example.net.",
        "dynamic": {
            "pools": {"p": {"values": [{"value": "a.cdn.net.", "status": "down"}]}},
            "rules": [{"pool": "p"}],
        },
        "gslb": {"targets": {"origin.example.net.": {"cost": 10.0}}},
    }
    errors: list[str] = []
    origin_only, _ = parse_dynamic("x.example.com.", b"x", CNAME, 60, down, "t", errors)
    assert origin_only is not None
    clients = eu_and_asia_clients()[:10]
    out = simulate([rec, origin_only], Engine(geo), EMPTY_VIEW, clients)
    assert out["records"][1]["targets"] == {"origin": 1.0}
    assert out["records"][1]["expected_cost_per_gb"] == pytest.approx(10.0)
    out = simulate(origin_only, Engine(geo), EMPTY_VIEW, clients, origin_cost=3.0)
    assert out["records"][0]["expected_cost_per_gb"] == pytest.approx(3.0)


def test_render_text_names_targets_shares_and_continents(geo: GeoDB) -> None:
    result = simulate(record(), Engine(geo), EMPTY_VIEW, eu_and_asia_clients())
    text = render_text(result)
    assert text.startswith("content.example.com. CNAME: 500 clients, expected cost ")
    assert "c.cdn.net." in text and "20.0%" in text
    assert "AS" in text and "EU" in text and "of answers without a cost" in text


def test_clients_file_takes_ips_and_cidrs(tmp_path: Path) -> None:
    path = tmp_path / "clients.txt"
    path.write_text(
        "# resolvers\n46.4.1.10\n\n51.15.0.0/16  # France\n2a01:4f8::/32\n10.0.0.7/32\n"
    )
    assert load_clients(path) == [
        ipaddress.ip_address("46.4.1.10"),
        ipaddress.ip_address("51.15.0.1"),
        ipaddress.ip_address("2a01:4f8::1"),
        ipaddress.ip_address("10.0.0.7"),
    ]
    path.write_text("46.4.1.10\nnot-an-ip\n")
    with pytest.raises(ValueError, match=r"clients.txt:2: not an IP address or CIDR"):
        load_clients(path)


def test_samples_follow_networks_or_fall_back_to_public_ipv4() -> None:
    nets = [ipaddress.ip_network("46.4.0.0/16"), ipaddress.ip_network("126.0.0.0/16")]
    drawn = sample_clients(300, networks=lambda: nets, seed=3)
    assert len(drawn) == 300 and all(any(a in n for n in nets) for a in drawn)
    assert {any(a in nets[0] for a in drawn), any(a in nets[1] for a in drawn)} == {True}
    assert drawn == sample_clients(300, networks=nets, seed=3)  # seeded
    public = sample_clients(500, seed=1)
    assert len(public) == 500 and all(a.is_global and a.version == 4 for a in public)


def test_run_simulation_as_the_cli_calls_it(geo: GeoDB, tmp_path: Path) -> None:
    path = tmp_path / "clients.txt"
    path.write_text("\n".join([CLIENTS["DE"], CLIENTS["FR"], CLIENTS["JP"], CLIENTS["US-CA"]]))
    rec = record()
    first = run_simulation(rec, Engine(geo), EMPTY_VIEW, geo=geo, clients_file=path, seed=1)
    again = run_simulation(rec, Engine(geo), EMPTY_VIEW, geo=geo, clients_file=path, seed=1)
    assert first == again
    assert first["clients"] == 4
    assert first["records"][0]["continents"]["NA"]["targets"] == {"c.cdn.net.": 1.0}
    sampled = run_simulation(rec, Engine(geo), EMPTY_VIEW, geo=geo, sample=50, seed=2)
    assert sampled["clients"] == 50
