"""IP parsing, geolocation on test databases, truncation and the prefix cache."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anonymizers.exceptions import GeoDatabaseError
from anonymizers.geo import GeoLookup, GeoResult
from anonymizers.ip import IpAnonymizer, ipv4_value, parse_ip, truncate
from anonymizers.policy import GeoConfig
from tests.anonymizers.conftest import CITY_NETWORKS

PARSE_CASES = [
    pytest.param("81.2.69.160", (4, "81.2.69.160"), id="valid-ipv4"),
    pytest.param("  81.2.69.160\n", (4, "81.2.69.160"), id="whitespace"),
    pytest.param("0.0.0.0", (4, "0.0.0.0"), id="zero"),
    pytest.param("2001:DB8:1::5", (6, "2001:db8:1::5"), id="ipv6-upper"),
    pytest.param("2001:0db8:0001:0000:0000:0000:0000:0005", (6, "2001:db8:1::5"), id="ipv6-long"),
    pytest.param("::ffff:81.2.69.160", (4, "81.2.69.160"), id="ipv4-mapped"),
    pytest.param("::FFFF:5102:45a0", (4, "81.2.69.160"), id="ipv4-mapped-hex"),
    pytest.param(None, None, id="None"),
    pytest.param("", None, id="empty"),
    pytest.param("   ", None, id="blank"),
    pytest.param(1234, None, id="not-a-string"),
    pytest.param("81.2.69.160:8080", None, id="ipv4-port"),
    pytest.param("[2001:db8::1]:443", None, id="ipv6-port"),
    pytest.param("[2001:db8::1]", None, id="ipv6-brackets"),
    pytest.param("010.1.1.1", None, id="leading-zero"),
    pytest.param("81.2.69.0160", None, id="leading-zero-last"),
    pytest.param("256.1.1.1", None, id="octet-too-big"),
    pytest.param("81.2.69", None, id="three-octets"),
    pytest.param("81.2.69.160.1", None, id="five-octets"),
    pytest.param("fe80::1%eth0", None, id="zone-id"),
    pytest.param("81.2.69.0/24", None, id="network"),
    pytest.param("not an ip", None, id="garbage"),
    pytest.param("::ffff:010.1.1.1", None, id="mapped-leading-zero"),
    pytest.param("١٢.٢.٣.٤", None, id="non-ascii-digits"),
    pytest.param("0x51.2.69.160", None, id="hex-octet"),
    pytest.param("81.2.69.160 81.2.69.161", None, id="two-addresses"),
]


@pytest.mark.parametrize(("raw", "expected"), PARSE_CASES)
def test_parse_ip(raw: object, expected: tuple[int, str] | None) -> None:
    """parse_ip accepts exactly one well-formed address and rejects everything else."""
    parsed = parse_ip(raw)
    if expected is None:
        assert parsed is None
    else:
        assert parsed is not None
        assert (parsed.version, parsed.text) == expected
        assert parsed.value == int(ipaddress.ip_address(expected[1]))


# ------------------------------------------------------------------ ipv4_value: contract


def _quad_value(text: str) -> int:
    """ipv4_value's answer by the standard library (strict decimal quads since 3.9.5)."""
    if not set(text) <= set("0123456789."):
        return -1
    try:
        return int(ipaddress.IPv4Address(text))
    except ValueError:
        return -2


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.text(alphabet="0123456789.", max_size=20),
        st.tuples(*[st.integers(0, 300)] * 4).map(lambda q: ".".join(map(str, q))),
        st.text(alphabet="0123456789.:abcdef x\u0661\u00b2", max_size=16),
    )
)
def test_ipv4_value_agrees_with_the_standard_library(text: str) -> None:
    assert ipv4_value(text) == _quad_value(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0.0.0", 0),
        ("255.255.255.255", 2**32 - 1),
        ("81.2.69.160", 0x510245A0),
        ("00.1.2.3", -2),
        ("1.2.3.04", -2),
        ("1.2.3.4.", -2),
        ("1..3.4", -2),
        ("1234.1.1.1", -2),
        ("", -2),
        ("1.2.3.4 ", -1),
        ("\u00b9.2.3.4", -1),  # superscript one: a digit to str.isdigit, not to us
        ("\u0661.2.3.4", -1),  # Arabic-Indic one (a two-byte-wide str)
    ],
)
def test_ipv4_value_table(text: str, expected: int) -> None:
    assert ipv4_value(text) == expected


def test_ipv4_value_takes_a_str() -> None:
    with pytest.raises(TypeError):
        ipv4_value(b"1.2.3.4")


def _expected(address: str) -> GeoResult:
    """Ground truth from the fixture's own table, not from the code under test."""
    ip = ipaddress.ip_address(address)
    for network, (country, code, region, city) in CITY_NETWORKS.items():
        if ip in ipaddress.ip_network(network):
            return GeoResult(country, code if code is not None else region, city)
    return GeoResult(None, None, None)


GEO_CASES = [
    pytest.param("81.2.69.160", id="ipv4-london"),
    pytest.param("81.2.69.1", id="ipv4-same-24"),
    pytest.param("203.0.113.5", id="finer-than-24-low"),
    pytest.param("203.0.113.200", id="finer-than-24-high"),
    pytest.param("198.51.100.7", id="no-city"),
    pytest.param("192.0.2.9", id="country-only-record"),
    pytest.param("100.64.1.1", id="subdivision-without-code"),
    pytest.param("8.8.8.8", id="not-in-db"),
    pytest.param("2a02:a000::1", id="ipv6"),
    pytest.param("2001:db8:1:ffff::1", id="ipv6-48"),
    pytest.param("2001:db8:2:1ff::1", id="ipv6-finer-than-48"),
    pytest.param("2001:db8:2:200::1", id="ipv6-same-48-outside-56"),
    pytest.param("::ffff:81.2.69.160", id="ipv4-mapped"),
]


@pytest.mark.parametrize("address", GEO_CASES)
def test_geolookup_matches_fixture_table(city_db: Path, address: str) -> None:
    """Lookups return the fixture's country, region code (or name) and city."""
    geo = GeoLookup(str(city_db))
    parsed = parse_ip(address)
    assert parsed is not None
    assert geo(parsed) == _expected(str(ipaddress.ip_address(parsed.text)))


def test_prefix_cache_is_exact_for_networks_finer_than_24(city_db: Path) -> None:
    """Two /25 halves of one /24 keep their own answers, in either lookup order."""
    geo = GeoLookup(str(city_db))
    low, high = parse_ip("203.0.113.5"), parse_ip("203.0.113.200")
    assert low is not None and high is not None
    for _ in range(3):
        assert geo(low).country == "FR"
        assert geo(high).country == "DE"


def test_prefix_cache_saves_lookups(city_db: Path) -> None:
    """Addresses of a /24 the database maps whole cost one database lookup."""
    geo = GeoLookup(str(city_db))
    for host in range(1, 200):
        parsed = parse_ip(f"81.2.69.{host}")
        assert parsed is not None
        assert geo(parsed).city == "London"
    assert geo.lookups == 1


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_cached_and_uncached_lookups_agree(value: int) -> None:
    """The cache never changes an answer (hypothesis over all of IPv4, near the fixtures too)."""
    address = str(ipaddress.IPv4Address(value))
    parsed = parse_ip(address)
    assert parsed is not None
    assert _GEO_CACHED(parsed) == _GEO_UNCACHED(parsed) == _expected(address)


@given(st.sampled_from(["81.2.69", "203.0.113", "198.51.100", "192.0.2"]), st.integers(0, 255))
def test_cache_agrees_near_known_networks(prefix: str, host: int) -> None:
    """Addresses inside the fixture networks resolve as the table says, cached or not."""
    parsed = parse_ip(f"{prefix}.{host}")
    assert parsed is not None
    assert _GEO_CACHED(parsed) == _GEO_UNCACHED(parsed) == _expected(parsed.text)


def test_country_database(country_db: Path) -> None:
    """A Country database gives the country and nothing finer."""
    geo = GeoLookup(str(country_db))
    parsed = parse_ip("81.2.69.160")
    assert parsed is not None
    assert geo(parsed) == GeoResult("GB", None, None)


def test_ipv4_only_database_with_ipv6_address(ipv4_db: Path) -> None:
    """An IPv6 address in an IPv4-only database is unknown, not an error."""
    geo = GeoLookup(str(ipv4_db))
    v6, v4 = parse_ip("2a02:a000::1"), parse_ip("::ffff:81.2.69.160")
    assert v6 is not None and v4 is not None
    assert geo(v6) == GeoResult(None, None, None)
    assert geo(v4).country == "GB"


@pytest.mark.parametrize("content", [b"", b"not a database" * 100], ids=["empty", "garbage"])
def test_bad_database_raises_geo_error(tmp_path: Path, content: bytes) -> None:
    """A file that is not an mmdb raises GeoDatabaseError naming it."""
    path = tmp_path / "bad.mmdb"
    path.write_bytes(content)
    with pytest.raises(GeoDatabaseError):
        GeoLookup(str(path))


def test_missing_database_raises_geo_error(tmp_path: Path) -> None:
    """A missing file raises GeoDatabaseError."""
    with pytest.raises(GeoDatabaseError):
        GeoLookup(str(tmp_path / "absent.mmdb"))


GRANULARITY_CASES = [
    pytest.param("none", (None, None, None), id="none"),
    pytest.param("country", ("GB", None, None), id="country"),
    pytest.param("region", ("GB", "ENG", None), id="region"),
    pytest.param("city", ("GB", "ENG", "London"), id="city"),
]


@pytest.mark.parametrize(("granularity", "expected"), GRANULARITY_CASES)
def test_granularity(city_db: Path, granularity: str, expected: tuple[str | None, ...]) -> None:
    """Geolocation is never finer than the policy's granularity."""
    unit = IpAnonymizer(GeoConfig(granularity=granularity), GeoLookup(str(city_db)))  # type: ignore[arg-type]
    outcome = unit.outcome(parse_ip("81.2.69.160"))
    assert (outcome.country, outcome.region, outcome.city) == expected
    assert outcome.ip_prefix is None


@pytest.mark.parametrize(
    ("raw", "granularity", "expected"),
    [
        pytest.param("192.0.2.7", "region", ("NL", "unknown", None), id="no-subdivision"),
        pytest.param("192.0.2.7", "city", ("NL", "unknown", "unknown"), id="no-subdivision-city"),
        pytest.param("198.51.100.7", "city", ("US", "CA", "unknown"), id="no-city"),
        pytest.param("100.64.0.1", "region", ("CH", "Zurich", None), id="name-without-code"),
        pytest.param("192.0.2.7", "country", ("NL", None, None), id="country-only"),
        pytest.param("8.8.8.8", "city", (None, None, None), id="unknown-address"),
    ],
)
def test_unknown_finer_place_is_explicit(
    city_db: Path, raw: str, granularity: str, expected: tuple[str | None, ...]
) -> None:
    """With a known country, a region or city the database lacks is "unknown" (so metrics by
    region keep these people); without a country there is no geolocation at all."""
    unit = IpAnonymizer(GeoConfig(granularity=granularity), GeoLookup(str(city_db)))  # type: ignore[arg-type]
    outcome = unit.outcome(parse_ip(raw))
    assert (outcome.country, outcome.region, outcome.city) == expected


@pytest.mark.parametrize(
    ("raw", "v4", "v6", "expected"),
    [
        pytest.param("81.2.69.160", 24, 48, "81.2.69.0/24", id="ipv4-24"),
        pytest.param("81.2.69.160", 16, 48, "81.2.0.0/16", id="ipv4-16"),
        pytest.param("81.2.69.160", 0, 48, "0.0.0.0/0", id="ipv4-0"),
        pytest.param("2001:db8:1:2:3::1", 24, 48, "2001:db8:1::/48", id="ipv6-48"),
        pytest.param("2001:db8:1:2:3::1", 24, 32, "2001:db8::/32", id="ipv6-32"),
        pytest.param("::ffff:81.2.69.160", 24, 48, "81.2.69.0/24", id="ipv4-mapped"),
    ],
)
def test_truncation(raw: str, v4: int, v6: int, expected: str) -> None:
    """Kept prefixes are the network at the configured length."""
    unit = IpAnonymizer(GeoConfig(keep_ip_prefix=True, ipv4_prefix=v4, ipv6_prefix=v6), None)
    assert unit.outcome(parse_ip(raw)).ip_prefix == expected


@pytest.mark.parametrize(
    ("v4", "v6"), [(25, 48), (24, 49), (32, 128)], ids=["v4-25", "v6-49", "full"]
)
def test_looser_prefixes_rejected(v4: int, v6: int) -> None:
    """Prefixes longer than /24 or /48 are rejected by the policy and by truncate()."""
    with pytest.raises(ValueError):
        GeoConfig(keep_ip_prefix=True, ipv4_prefix=v4, ipv6_prefix=v6)
    parsed = parse_ip("81.2.69.160")
    assert parsed is not None
    with pytest.raises(ValueError):
        truncate(parsed, ipv4_prefix=v4, ipv6_prefix=v6)


@given(
    st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)),
    st.integers(0, 24),
    st.integers(0, 48),
)
def test_kept_prefix_never_longer_than_allowed(address: object, v4: int, v6: int) -> None:
    """Whatever the address and setting, the kept network is at most /24 or /48 and contains it."""
    unit = IpAnonymizer(GeoConfig(keep_ip_prefix=True, ipv4_prefix=v4, ipv6_prefix=v6), None)
    parsed = parse_ip(str(address))
    assert parsed is not None
    prefix = unit.outcome(parsed).ip_prefix
    assert prefix is not None
    network = ipaddress.ip_network(prefix)
    assert network.prefixlen == (v4 if network.version == 4 else v6)
    assert network.prefixlen <= (24 if network.version == 4 else 48)
    assert ipaddress.ip_address(parsed.text) in network


@pytest.mark.parametrize(
    "raw", [None, "", "010.1.1.1", "81.2.69.160:80"], ids=["None", "empty", "leading-zero", "port"]
)
def test_malformed_ip_gives_no_geo_and_no_ip(city_db: Path, raw: object) -> None:
    """A missing or malformed IP yields no location and no prefix at all."""
    unit = IpAnonymizer(GeoConfig(granularity="city", keep_ip_prefix=True), GeoLookup(str(city_db)))
    assert tuple(unit.outcome(parse_ip(raw))) == (None, None, None, None)


def _make_geo() -> tuple[GeoLookup, GeoLookup]:
    import tempfile

    from tests.anonymizers.conftest import build_mmdb

    path = build_mmdb(Path(tempfile.mkdtemp()) / "h.mmdb")
    return GeoLookup(str(path)), GeoLookup(str(path), cache_size=0)


_GEO_CACHED, _GEO_UNCACHED = _make_geo()
