"""gslb.geo: lookups on tiny written DBs, MaxMind's official test DBs and the shipped default DB."""

from __future__ import annotations

import gzip
import ipaddress
import shutil
from pathlib import Path

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

import gslb
from gslb.geo import GeoDB, GeoError, Location, default_db_path, haversine_km
from tests.geodb import CLIENTS, CLIENTS6, UNKNOWN_CLIENT, WORLD, write_test_db, write_world_db

DATA = Path(__file__).parent / "data" / "geoip"
CITY_TEST_DBS = ["GeoIP2-City-Test.mmdb", "GeoLite2-City-Test.mmdb"]
ip = ipaddress.ip_address


@pytest.fixture
def world(tmp_path: Path):
    with GeoDB.open(write_world_db(tmp_path)) as db:
        yield db


# --- tiny written DBs ---------------------------------------------------------------------


def test_exact_record_and_network(world: GeoDB) -> None:
    loc = world.locate(ip(CLIENTS["DE"]))
    assert loc == Location("DE", "EU", None, 50.1109, 8.6821, ipaddress.ip_network("46.4.0.0/16"))


@pytest.mark.parametrize(
    ("name", "address"), sorted(CLIENTS.items()) + sorted(CLIENTS6.items()), ids=str
)
def test_every_world_client_is_found_in_its_network(world: GeoDB, name: str, address) -> None:
    loc = world.locate(ip(address))
    assert loc is not None
    spec = WORLD[str(loc.network)]
    assert (loc.country, loc.continent, loc.lat, loc.lon) == (
        spec["country"],
        spec["continent"],
        spec["lat"],
        spec["lon"],
    )
    assert name.split("-")[0] == loc.country


def test_ipv4_client_gets_ipv4_network(world: GeoDB) -> None:
    loc = world.locate(ip(CLIENTS["JP"]))
    assert isinstance(loc.network, ipaddress.IPv4Network)
    assert str(loc.network) == "126.0.0.0/16"


def test_ipv6_client(world: GeoDB) -> None:
    loc = world.locate(ip(CLIENTS6["US-CA"]))
    assert (loc.country, loc.subdivision) == ("US", "CA")
    assert loc.network == ipaddress.ip_network("2600:1f1c::/32")


def test_ipv4_mapped_ipv6_is_looked_up_as_ipv4(world: GeoDB) -> None:
    plain = world.locate(ip(CLIENTS["IN"]))
    mapped = world.locate(ip("::ffff:" + CLIENTS["IN"]))
    assert mapped is plain
    assert mapped.country == "IN"
    assert isinstance(mapped.network, ipaddress.IPv4Network)


def test_geos_chain_from_db(world: GeoDB) -> None:
    assert world.locate(ip(CLIENTS["US-CA"])).geos() == ("NA-US-CA", "NA-US", "NA")
    assert world.locate(ip(CLIENTS["US-NY"])).geos() == ("NA-US-NY", "NA-US", "NA")
    assert world.locate(ip(CLIENTS["ZA"])).geos() == ("AF-ZA", "AF")


@pytest.mark.parametrize(
    ("continent", "country", "subdivision", "expected"),
    [
        ("EU", "DE", None, ("EU-DE", "EU")),
        ("EU", None, None, ("EU",)),
        (None, "DE", None, ()),
        ("OC", "AU", "NSW", ("OC-AU-NSW", "OC-AU", "OC")),
    ],
)
def test_geos_needs_each_parent_level(continent, country, subdivision, expected) -> None:
    net = ipaddress.ip_network("192.0.2.0/24")
    assert Location(country, continent, subdivision, None, None, net).geos() == expected


def test_location_compares_by_value() -> None:
    net = ipaddress.ip_network("46.4.0.0/16")
    a = Location("DE", "EU", None, 50.0, 8.0, net)
    assert a == Location("DE", "EU", None, 50.0, 8.0, net)
    assert hash(a) == hash(Location("DE", "EU", None, 50.0, 8.0, net))
    assert a != Location("DE", "EU", None, 50.0, 8.5, net)


def test_unknown_address_is_none(world: GeoDB) -> None:
    assert world.locate(ip(UNKNOWN_CLIENT)) is None
    assert world.locate(ip("2a02:ffff::1")) is None


PRIVATE = [
    "10.1.2.3",
    "127.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "100.64.0.1",
    "169.254.1.1",
    "192.0.2.1",
    "224.0.0.1",
    "0.0.0.0",
    "::1",
    "::",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "ff02::1",
    "2001:db8::1",
    "::ffff:10.1.2.3",
]


def test_private_addresses_are_none_even_when_the_db_covers_them(tmp_path: Path) -> None:
    """A DB that (wrongly) maps private ranges must not give them a location."""
    anywhere = {"country": "DE", "continent": "EU", "lat": 50.0, "lon": 8.0}
    path = write_test_db(tmp_path / "all.mmdb", {"0.0.0.0/0": anywhere, "::/1": anywhere})
    with GeoDB.open(path) as db:
        assert db.locate(ip("46.4.1.1")).country == "DE"  # the DB does answer for public ones
        leaked = {a: db.locate(ip(a)) for a in PRIVATE if db.locate(ip(a)) is not None}
        assert leaked == {}


def test_same_network_gives_the_same_object(world: GeoDB) -> None:
    first = world.locate(ip("46.4.1.1"))
    second = world.locate(ip("46.4.200.7"))
    assert first is second


def test_repeat_address_is_served_from_cache(world: GeoDB, monkeypatch) -> None:
    calls: list[object] = []
    real = world._reader.get_with_prefix_len

    def counting(address):
        calls.append(address)
        return real(address)

    monkeypatch.setattr(world, "_reader", _Proxy(world._reader, get_with_prefix_len=counting))
    first = world.locate(ip("13.228.9.9"))
    again = world.locate(ip("13.228.9.9"))
    assert again is first and again.country == "SG"
    assert len(calls) == 1
    assert world.locate(ip(UNKNOWN_CLIENT)) is None
    assert world.locate(ip(UNKNOWN_CLIENT)) is None
    assert len(calls) == 2  # "unknown" is cached too


def test_tiny_cache_stays_correct_when_cleared(tmp_path: Path) -> None:
    with GeoDB.open(write_world_db(tmp_path), cache_size=2) as db:
        answers = [db.locate(ip(CLIENTS[name])).country for name in ("DE", "FR", "GB", "DE")]
        assert answers == ["DE", "FR", "GB", "DE"]
        assert len(db._by_address) <= 2
        assert len(db._by_network) <= 2


def test_records_of_another_shape_are_unknown_not_errors(tmp_path: Path) -> None:
    """Some vendors write flat records ("country": "DE"); they must not break the answer path."""
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="Flat-City")
    writer.insert_network(IPSet(["46.4.0.0/16"]), {"country": "DE", "location": [1, 2]})
    writer.insert_network(IPSet(["51.15.0.0/16"]), {"asn": 12876})
    writer.to_db_file(str(tmp_path / "flat.mmdb"))
    with GeoDB.open(tmp_path / "flat.mmdb") as db:
        assert db.locate(ip("46.4.0.1")) is None
        assert db.locate(ip("51.15.0.1")) is None


def test_country_db_has_no_coordinates(tmp_path: Path) -> None:
    nets = {"46.4.0.0/16": {"country": "DE", "continent": "EU"}}
    path = write_test_db(tmp_path / "c.mmdb", nets, database_type="GSLB-Test-Country")
    with GeoDB.open(path) as db:
        loc = db.locate(ip("46.4.0.1"))
        assert (loc.country, loc.lat, loc.lon) == ("DE", None, None)
        assert db.database_type == "GSLB-Test-Country"


def test_ipv6_lookup_in_ipv4_only_db_is_none(tmp_path: Path) -> None:
    nets = {"46.4.0.0/16": WORLD["46.4.0.0/16"]}
    with GeoDB.open(write_test_db(tmp_path / "v4.mmdb", nets, ip_version=4)) as db:
        assert db.locate(ip("46.4.0.1")).network == ipaddress.ip_network("46.4.0.0/16")
        assert db.locate(ip("2a01:4f8::1")) is None


def test_closed_db_answers_none_instead_of_raising(tmp_path: Path) -> None:
    db = GeoDB.open(write_world_db(tmp_path))
    db.close()
    assert db.locate(ip(CLIENTS["DE"])) is None


def test_gzipped_db_gives_the_same_answers(tmp_path: Path) -> None:
    plain = write_world_db(tmp_path)
    packed = tmp_path / "world.mmdb.gz"
    with plain.open("rb") as src, gzip.open(packed, "wb") as dst:
        shutil.copyfileobj(src, dst)
    with GeoDB.open(plain) as a, GeoDB.open(packed) as b:
        for name in CLIENTS:
            assert a.locate(ip(CLIENTS[name])) == b.locate(ip(CLIENTS[name]))
        assert b.locate(ip(CLIENTS["BR"])).country == "BR"
        assert b.path == str(packed)


def test_gzipped_db_without_writable_tmp_falls_back_to_memory(tmp_path: Path, monkeypatch) -> None:
    packed = tmp_path / "world.mmdb.gz"
    packed.write_bytes(gzip.compress(write_world_db(tmp_path).read_bytes()))

    def no_tmp(*args, **kwargs):
        raise PermissionError("read-only /tmp")

    monkeypatch.setattr("tempfile.mkstemp", no_tmp)
    with GeoDB.open(packed) as db:
        assert db.locate(ip(CLIENTS["AU"])).country == "AU"


def test_metadata_and_description(tmp_path: Path) -> None:
    with GeoDB.open(write_world_db(tmp_path)) as db:
        assert db.database_type == "GSLB-Test-City"
        assert db.build_epoch > 1_600_000_000
        assert db.description.startswith("GSLB-Test-City built 20")
        assert db.description.endswith("world.mmdb)")


# --- MaxMind's official test databases -----------------------------------------------------


@pytest.fixture(params=CITY_TEST_DBS)
def maxmind_city(request):
    with GeoDB.open(DATA / request.param) as db:
        yield db


@pytest.mark.parametrize(
    ("address", "country", "continent", "lat", "lon", "network"),
    [
        ("81.2.69.160", "GB", "EU", 51.5142, -0.0931, "81.2.69.160/27"),
        ("2.125.160.218", "GB", "EU", 51.75, -1.25, "2.125.160.216/29"),
        ("89.160.20.112", "SE", "EU", 58.4167, 15.6167, "89.160.20.112/28"),
        ("175.16.199.0", "CN", "AS", 43.88, 125.3228, "175.16.199.0/24"),
        ("216.160.83.56", "US", "NA", 47.2513, -122.3149, "216.160.83.56/29"),
        ("2001:218::1", "JP", "AS", 35.68536, 139.75309, "2001:218::/32"),
        ("::ffff:81.2.69.160", "GB", "EU", 51.5142, -0.0931, "81.2.69.160/27"),
    ],
)
def test_maxmind_city_dbs(maxmind_city, address, country, continent, lat, lon, network) -> None:
    loc = maxmind_city.locate(ip(address))
    assert (loc.country, loc.continent, loc.lat, loc.lon) == (country, continent, lat, lon)
    assert loc.network == ipaddress.ip_network(network)


def test_maxmind_subdivision_and_geos(maxmind_city: GeoDB) -> None:
    loc = maxmind_city.locate(ip("216.160.83.56"))
    assert loc.subdivision == "WA"
    assert loc.geos() == ("NA-US-WA", "NA-US", "NA")


@pytest.mark.parametrize("address", ["1.1.1.1", "8.8.8.8", "10.0.0.1"])
def test_maxmind_city_unknown(maxmind_city: GeoDB, address: str) -> None:
    assert maxmind_city.locate(ip(address)) is None


def test_maxmind_country_db_has_no_coordinates() -> None:
    with GeoDB.open(DATA / "GeoIP2-Country-Test.mmdb") as db:
        assert db.database_type == "GeoIP2-Country"
        loc = db.locate(ip("81.2.69.160"))
        assert (loc.country, loc.continent, loc.lat, loc.lon) == ("GB", "EU", None, None)
        assert db.locate(ip("2001:218::1")).country == "JP"


def test_maxmind_city_metadata(maxmind_city: GeoDB) -> None:
    assert "City" in maxmind_city.database_type
    assert maxmind_city.description.startswith(maxmind_city.database_type + " built ")


# --- errors --------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(GeoError, match="no such file"):
        GeoDB.open(tmp_path / "nope.mmdb")


def test_directory_is_not_a_db(tmp_path: Path) -> None:
    with pytest.raises(GeoError, match="no such file"):
        GeoDB.open(tmp_path)


@pytest.mark.parametrize("content", [b"", b"this is not a maxmind database\n" * 100])
def test_garbage_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "garbage.mmdb"
    path.write_bytes(content)
    with pytest.raises(GeoError, match="not a readable MaxMind DB"):
        GeoDB.open(path)


def test_truncated_file(tmp_path: Path) -> None:
    data = (DATA / "GeoIP2-City-Test.mmdb").read_bytes()
    path = tmp_path / "truncated.mmdb"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(GeoError, match=str(path)):
        GeoDB.open(path)


def test_truncated_gzip(tmp_path: Path) -> None:
    packed = gzip.compress((DATA / "GeoIP2-City-Test.mmdb").read_bytes())
    path = tmp_path / "truncated.mmdb.gz"
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(GeoError, match="not a readable MaxMind DB"):
        GeoDB.open(path)


def test_gzip_of_garbage(tmp_path: Path) -> None:
    path = tmp_path / "garbage.mmdb.gz"
    path.write_bytes(gzip.compress(b"not a database" * 50))
    with pytest.raises(GeoError, match="not a readable MaxMind DB"):
        GeoDB.open(path)


# --- the shipped default database ----------------------------------------------------------


@pytest.fixture(scope="module")
def default_db():
    with GeoDB.open(default_db_path()) as db:
        yield db


def test_default_db_path_is_in_repo_geoip(monkeypatch) -> None:
    monkeypatch.delenv("GSLB_GEOIP_DB", raising=False)
    path = default_db_path()
    assert path.parent == Path(gslb.__file__).resolve().parent.parent / "geoip"
    assert path.is_file()


def test_default_db_path_env_override(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GSLB_GEOIP_DB", str(tmp_path / "mine.mmdb"))
    assert default_db_path() == tmp_path / "mine.mmdb"


def test_default_db_is_city_type(default_db: GeoDB) -> None:
    assert "City" in default_db.database_type
    assert "DBIP" in default_db.database_type
    assert default_db.description.startswith(default_db.database_type + " built 2023-04-01")


@pytest.mark.parametrize(
    ("address", "geo"),
    [
        ("1.1.1.1", "OC-AU"),
        ("81.2.69.160", "EU-GB"),
        ("8.8.8.8", "NA-US"),
        ("2001:4860:4860::8888", "NA-CA"),
        ("::ffff:1.1.1.1", "OC-AU"),
    ],
)
def test_default_db_smoke(default_db: GeoDB, address: str, geo: str) -> None:
    loc = default_db.locate(ip(address))
    assert geo in loc.geos()
    assert loc.lat is not None and loc.lon is not None


def test_default_db_private_is_none(default_db: GeoDB) -> None:
    assert default_db.locate(ip("10.0.0.1")) is None


def test_default_db_has_us_states_for_ipv4(default_db: GeoDB) -> None:
    """geoip/README.md promises NA-US-CA style rules work with the shipped DB."""
    assert default_db.locate(ip("8.8.8.8")).geos() == ("NA-US-CA", "NA-US", "NA")


def test_notice_carries_the_attribution() -> None:
    notice = (default_db_path().parent / "NOTICE").read_text()
    assert gslb.GEOIP_ATTRIBUTION in notice
    assert "2023-04-01" in notice


# --- distance ------------------------------------------------------------------------------


def test_haversine_london_paris() -> None:
    assert haversine_km(51.5074, -0.1278, 48.8566, 2.3522) == pytest.approx(344, abs=2)


def test_haversine_properties() -> None:
    assert haversine_km(10.0, 20.0, 10.0, 20.0) == 0.0
    assert haversine_km(0, 0, 0, 180) == pytest.approx(20015, rel=1e-3)  # half the equator
    sydney_tokyo = haversine_km(-33.8688, 151.2093, 35.6762, 139.6503)
    assert sydney_tokyo == pytest.approx(haversine_km(35.6762, 139.6503, -33.8688, 151.2093))
    assert sydney_tokyo == pytest.approx(7820, rel=0.01)


class _Proxy:
    """Wrap a reader, replacing some attributes (maxminddb's C Reader cannot be patched)."""

    def __init__(self, target: object, **overrides: object) -> None:
        self._target = target
        self._overrides = overrides

    def __getattr__(self, name: str) -> object:
        if name in self._overrides:
            return self._overrides[name]
        return getattr(self._target, name)
