"""IPv6 transition addresses (6to4, Teredo, NAT64, IPv4-compatible, IPv4-mapped): each is
geolocated and truncated as the IPv4 address it embeds, on real .mmdb files.

The IPv6 forms are built here bit by bit from the IPv4 address (RFC 3056, 4380, 6052, 8215,
4291), and the expected places come from the fixture's own table or from maxminddb itself,
never from the code under test.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path

import maxminddb
import pytest
from hypothesis import given
from hypothesis import strategies as st

from anonymizers.chain import Pipeline
from anonymizers.geo import GeoLookup
from anonymizers.geo.bundled import default_database_path
from anonymizers.ip import IpAnonymizer, parse_ip
from anonymizers.outcome import Anonymized
from anonymizers.policy import GeoConfig, default_policy
from tests.anonymizers.conftest import CITY_NETWORKS, static_keys

TEREDO_SERVER = "65.54.227.120"


def v4(text: str) -> int:
    """The integer value of a dotted quad."""
    a, b, c, d = (int(part) for part in text.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


def six(value: int) -> str:
    """The canonical text of a 128-bit value."""
    return str(ipaddress.IPv6Address(value))


def sixtofour(ip: int, *, subnet: int = 0, interface: int = 1) -> str:
    """6to4 (RFC 3056): 2002 | IPv4 (32 bits) | subnet (16) | interface id (64)."""
    return six((0x2002 << 112) | (ip << 80) | (subnet << 64) | interface)


def teredo(
    ip: int, *, server: int = v4(TEREDO_SERVER), flags: int = 0x8000, port: int = 40000
) -> str:
    """Teredo (RFC 4380): 2001:0000 | server IPv4 | flags | port XOR ffff | client XOR ffffffff."""
    return six(
        (0x2001_0000 << 96)
        | (server << 64)
        | (flags << 48)
        | ((port ^ 0xFFFF) << 32)
        | (ip ^ 0xFFFF_FFFF)
    )


def nat64(ip: int) -> str:
    """NAT64 well-known prefix 64:ff9b::/96 (RFC 6052): the IPv4 in the last 32 bits."""
    return six((0x0064_FF9B << 96) | ip)


def nat64_local(ip: int, *, middle: int = 0) -> str:
    """NAT64 local-use block 64:ff9b:1::/48 (RFC 8215), /96 form: the IPv4 in the last 32 bits."""
    return six((0x0064_FF9B_0001 << 80) | (middle << 32) | ip)


def compatible(ip: int) -> str:
    """IPv4-compatible (RFC 4291, deprecated): 96 zero bits, then the IPv4."""
    return six(ip)


def mapped(ip: int) -> str:
    """IPv4-mapped: ::ffff:a.b.c.d."""
    return six((0xFFFF << 32) | ip)


def expected_place(address: str) -> tuple[str | None, str | None, str | None]:
    """(country, region, city) at city granularity from the fixture table ("unknown" for a
    finer level a known country's record lacks)."""
    ip = ipaddress.ip_address(address)
    for network, (country, code, region, city) in CITY_NETWORKS.items():
        if ip in ipaddress.ip_network(network):
            return country, code or region or "unknown", city or "unknown"
    return None, None, None


def expected_prefix(address: str) -> str:
    """The /24 of an IPv4 address or the /48 of an IPv6 one, by arithmetic on its value."""
    ip = ipaddress.ip_address(address)
    bits, keep = (32, 24) if ip.version == 4 else (128, 48)
    network = (int(ip) >> (bits - keep)) << (bits - keep)
    return f"{ipaddress.ip_address(network) if ip.version == 4 else six(network)}/{keep}"


# (address as sent, the address it must be treated as)
TRANSITION_CASES = [
    pytest.param(sixtofour(v4("81.2.69.160")), "81.2.69.160", id="6to4"),
    pytest.param(
        sixtofour(v4("203.0.113.200"), subnet=0xBEEF, interface=0x0123_4567_89AB_CDEF),
        "203.0.113.200",
        id="6to4-subnet-and-interface",
    ),
    pytest.param(
        "2002:CB00:7105:0000:0000:0000:0000:0001", "203.0.113.5", id="6to4-uppercase-long"
    ),
    pytest.param(teredo(v4("203.0.113.200")), "203.0.113.200", id="teredo"),
    pytest.param(
        teredo(v4("8.8.8.8"), server=v4("81.2.69.1")), "8.8.8.8", id="teredo-server-not-used"
    ),
    pytest.param(
        teredo(v4("198.51.100.7"), flags=0, port=3544), "198.51.100.7", id="teredo-other-flags"
    ),
    pytest.param(nat64(v4("203.0.113.10")), "203.0.113.10", id="nat64-well-known"),
    pytest.param("64:ff9b::81.2.69.7", "81.2.69.7", id="nat64-dotted"),
    pytest.param(nat64_local(v4("198.51.100.7")), "198.51.100.7", id="nat64-local-use"),
    pytest.param(
        nat64_local(v4("100.64.1.1"), middle=0xABCD_0000_0001),
        "100.64.1.1",
        id="nat64-local-use-operator-bits",
    ),
    pytest.param(compatible(v4("192.0.2.7")), "192.0.2.7", id="ipv4-compatible"),
    pytest.param("::81.2.69.160", "81.2.69.160", id="ipv4-compatible-dotted"),
    pytest.param(mapped(v4("100.64.0.1")), "100.64.0.1", id="ipv4-mapped"),
    # Controls: addresses that embed nothing stay IPv6.
    pytest.param("2001:db8:1::5", "2001:db8:1::5", id="native-ipv6"),
    pytest.param("2a02:a000::1", "2a02:a000::1", id="native-ipv6-other"),
    pytest.param("::1", "::1", id="loopback-not-compatible"),
    pytest.param("2001:db8:2:100::1", "2001:db8:2:100::1", id="2001-not-teredo"),
    pytest.param("64:ff9b:2::1", "64:ff9b:2::1", id="outside-nat64-blocks"),
]


@pytest.mark.parametrize(("sent", "treated_as"), TRANSITION_CASES)
def test_transition_address_geolocated_and_truncated_as_its_ipv4(
    city_db: Path, sent: str, treated_as: str
) -> None:
    """An IPv6 transition address gets the place and the /24 of its IPv4 (the fixture's
    table); other IPv6 addresses keep their own place and /48."""
    unit = IpAnonymizer(
        GeoConfig(granularity="city", keep_ip_prefix=True, ipv4_prefix=24, ipv6_prefix=48),
        GeoLookup(str(city_db)),
    )
    parsed = parse_ip(sent)
    assert parsed is not None
    assert (parsed.version, parsed.value) == (
        ipaddress.ip_address(treated_as).version,
        int(ipaddress.ip_address(treated_as)),
    )
    outcome = unit.outcome(parsed)
    assert (outcome.country, outcome.region, outcome.city) == expected_place(treated_as)
    assert outcome.ip_prefix == expected_prefix(treated_as)


BUNDLED_IPV4 = ["81.2.69.160", "8.8.8.8", "89.160.20.112", "202.196.224.1"]
WRAPPERS: list[Callable[[int], str]] = [sixtofour, teredo, nat64, nat64_local, compatible, mapped]


@pytest.fixture(scope="module")
def bundled() -> tuple[maxminddb.Reader, IpAnonymizer]:
    """maxminddb's own reader of the bundled GeoLite2 City file, and an IP unit on it."""
    path = default_database_path()
    assert path is not None, "maxminddb-geolite2 is a dependency"
    unit = IpAnonymizer(GeoConfig(granularity="country", keep_ip_prefix=True), GeoLookup(str(path)))
    return maxminddb.open_database(str(path)), unit


@pytest.mark.parametrize("wrap", WRAPPERS, ids=[w.__name__ for w in WRAPPERS])
@pytest.mark.parametrize("address", BUNDLED_IPV4)
def test_bundled_geolite2_locates_the_embedded_ipv4(
    bundled: tuple[maxminddb.Reader, IpAnonymizer], wrap: Callable[[int], str], address: str
) -> None:
    """On the bundled GeoLite2 City database, each transition form of an IPv4 address gets
    the country maxminddb itself gives that IPv4 address, and its /24."""
    reader, unit = bundled
    record = reader.get(address)
    assert isinstance(record, dict)
    outcome = unit.outcome(parse_ip(wrap(v4(address))))
    assert (outcome.country, outcome.ip_prefix) == (
        record["country"]["iso_code"],
        expected_prefix(address),
    )


@given(
    ip=st.integers(0, 0xFFFF_FFFF),
    form=st.sampled_from(["6to4", "teredo", "nat64", "nat64_local", "compatible", "mapped"]),
    extra=st.integers(0, (1 << 64) - 1),
    server=st.integers(0, 0xFFFF_FFFF),
)
def test_kept_prefix_never_reveals_more_than_the_ipv4_24(
    ip: int, form: str, extra: int, server: int
) -> None:
    """Whatever the IPv4 address and the other bits of its transition form, the kept prefix
    is the IPv4 /24 (never a /48 that would hold the whole IPv4 address)."""
    if form == "compatible" and ip <= 1:
        ip += 2  # :: and ::1 are the unspecified and loopback addresses, not IPv4-compatible
    sent = {
        "6to4": lambda: sixtofour(ip, subnet=extra >> 48, interface=extra),
        "teredo": lambda: teredo(ip, server=server, flags=extra >> 48, port=extra & 0xFFFF),
        "nat64": lambda: nat64(ip),
        "nat64_local": lambda: nat64_local(ip, middle=extra >> 16),
        "compatible": lambda: compatible(ip),
        "mapped": lambda: mapped(ip),
    }[form]()
    unit = IpAnonymizer(GeoConfig(granularity="none", keep_ip_prefix=True), None)
    parsed = parse_ip(sent)
    assert parsed is not None and parsed.version == 4
    assert unit.outcome(parsed).ip_prefix == f"{ipaddress.IPv4Address(ip & 0xFFFF_FF00)}/24"


@pytest.mark.parametrize(
    "sent",
    [sixtofour(v4("81.2.69.160"), subnet=7), teredo(v4("81.2.69.160")), nat64(v4("81.2.69.160"))],
    ids=["6to4", "teredo", "nat64"],
)
def test_chain_treats_transition_address_as_its_ipv4(city_db: Path, sent: str) -> None:
    """Through the whole chain, a cookieless visitor behind a transition address is the same
    visitor, in the same place, as with the IPv4 address, and no output holds either form."""
    policy = default_policy()
    pipeline = Pipeline.from_policy(policy, keys=static_keys(), geo=GeoLookup(str(city_db)))
    base = {
        "event_id": "e",
        "event_type": "page_view",
        "occurred_at": "2024-05-01T10:00:00Z",
        "user_agent": "Mozilla/5.0",
        "page_url": f"https://shop.example/{sent}",
    }
    wrapped = pipeline({**base, "ip": sent})
    plain = pipeline({**base, "ip": "81.2.69.160"})
    assert isinstance(wrapped, Anonymized) and isinstance(plain, Anonymized)
    assert wrapped.subject == plain.subject
    country, region, _ = expected_place("81.2.69.160")
    assert (wrapped.event["country"], wrapped.event["region"]) == (country, region)
    text = str(wrapped.event).casefold()
    assert sent.casefold() not in text and "81.2.69.160" not in text
