"""The flat IPv4 index: the same answers as the database's own look-up, on test and real data."""

from __future__ import annotations

import bisect
import ipaddress
import random
import tempfile
from array import array
from pathlib import Path
from typing import Any

import maxminddb
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from anonymizers.exceptions import GeoDatabaseError
from anonymizers.geo.index import Ipv4Index, Ipv4Ranges, _records
from anonymizers.geo.lookup import GeoLookup, _record_to_result
from anonymizers.ip import parse_ip
from tests.anonymizers.conftest import CITY_NETWORKS, build_mmdb


def _encode(left: int, right: int, record_size: int) -> bytes:
    """One search-tree node as the MaxMind DB spec lays it out (independent of the decoder)."""
    if record_size == 24:
        return left.to_bytes(3, "big") + right.to_bytes(3, "big")
    if record_size == 28:
        middle = ((left >> 24) << 4) | (right >> 24)
        return (
            (left & 0xFFFFFF).to_bytes(3, "big")
            + bytes([middle])
            + (right & 0xFFFFFF).to_bytes(3, "big")
        )
    return left.to_bytes(4, "big") + right.to_bytes(4, "big")


@pytest.mark.parametrize("record_size", [24, 28, 32])
def test_records_follow_the_spec_layout(record_size: int) -> None:
    """Left and right records decode as encoded, at every record size (incl. 28-bit nibbles)."""
    rng = random.Random(record_size)
    pairs = [(rng.randrange(2**record_size), rng.randrange(2**record_size)) for _ in range(200)]
    pairs += [(0, 2**record_size - 1), (2**record_size - 1, 0)]
    raw = np.frombuffer(b"".join(_encode(a, b, record_size) for a, b in pairs), dtype=np.uint8)
    left, right = _records(raw.reshape(len(pairs), record_size // 4), record_size)
    assert list(zip(left.tolist(), right.tolist(), strict=True)) == pairs


def _databases() -> dict[str, Path]:
    folder = Path(tempfile.mkdtemp())
    return {
        "v6": build_mmdb(folder / "v6.mmdb"),
        "v4": build_mmdb(folder / "v4.mmdb", ip_version=4),
        "country": build_mmdb(folder / "c.mmdb", country_only=True),
    }


_DATABASES = _databases()
_LOOKUPS = {
    name: (GeoLookup(str(path)), GeoLookup(str(path), index=False, cache_size=0))
    for name, path in _DATABASES.items()
}
_EDGES = sorted(
    {
        int(address)
        for network in CITY_NETWORKS
        if ":" not in network
        for net in [ipaddress.ip_network(network)]
        for address in (net[0], net[-1], int(net[0]) - 1, int(net[-1]) + 1)
    }
    | {0, 2**32 - 1}
)


@pytest.mark.parametrize("name", sorted(_DATABASES))
@given(value=st.one_of(st.integers(0, 2**32 - 1), st.sampled_from(_EDGES)))
def test_index_answers_as_the_database(name: str, value: int) -> None:
    """Indexed and plain look-ups agree everywhere in IPv4, network edges included."""
    indexed, plain = _LOOKUPS[name]
    parsed = parse_ip(str(ipaddress.IPv4Address(value)))
    assert parsed is not None
    assert indexed(parsed) == plain(parsed)


def test_records_are_read_once_per_pointer() -> None:
    """Addresses of one database record cost one read, even across distant networks."""
    geo = GeoLookup(str(_DATABASES["v6"]))
    for address in ("81.2.69.1", "81.2.69.200", "81.2.69.7"):
        parsed = parse_ip(address)
        assert parsed is not None
        assert geo(parsed).city == "London"
    assert geo.lookups == 1


def test_every_record_of_a_large_database(tmp_path: Path) -> None:
    """3,000 distinct places (data past 2,048 and 526,336 bytes: 2- and 3-byte pointers), each
    /24 answered as written, a second address of it from the cache; one read per record."""
    writer = MMDBWriter(ip_version=6, database_type="GeoIP2-City", ipv4_compatible=True)
    rng = random.Random(3)
    expected: dict[int, tuple[str | None, str | None, str | None]] = {}
    for index in range(3000):
        country, city = f"C{index % 50}", f"city-{index}-en-" + "n" * rng.randrange(200)
        names = {"en": city} | {
            lang: f"city-{index}-{lang}-" + "n" * rng.randrange(200) for lang in ("de", "fr")
        }
        place: dict[str, Any] = {
            "country": {"iso_code": country, "names": {"en": f"country {index % 50}"}},
            "city": {"names": names, "geoname_id": index},
            "location": {"latitude": rng.uniform(-90, 90), "longitude": rng.uniform(-180, 180)},
        }
        region = None
        if index % 3:
            # A region code, else (DB-IP lite) only an English name.
            region = f"R{index % 7}" if index % 2 else f"r{index}"
            place["subdivisions"] = [
                {"iso_code": region} if index % 2 else {"names": {"en": region}}
            ]
        writer.insert_network(IPSet([f"10.{index // 256}.{index % 256}.0/24"]), place)
        expected[index] = (country, region, city)
    path = tmp_path / "many.mmdb"
    writer.to_db_file(str(path))
    assert path.stat().st_size > 526_336 + 3000 * 200
    geo = GeoLookup(str(path))
    for index, place_written in expected.items():
        for host in (0, rng.randrange(1, 256)):
            parsed = parse_ip(f"10.{index // 256}.{index % 256}.{host}")
            assert parsed is not None
            assert geo.place(parsed) == place_written, (index, host)
    assert geo.lookups == 3000


@pytest.fixture(scope="module")
def geolite2() -> Path:
    from stream.cli.preview import bundled_geo_database

    path = bundled_geo_database()
    if path is None:
        pytest.skip("no bundled GeoLite2 database")
    return Path(path)


def test_index_matches_geolite2(geolite2: Path) -> None:
    """On the real GeoLite2 City (28-bit records), indexed answers equal the reader's."""
    geo = GeoLookup(str(geolite2))
    reader = maxminddb.open_database(str(geolite2))
    rng = random.Random(2024)
    values = [rng.randrange(2**32) for _ in range(3000)] + [0, 2**32 - 1, 0x51024500]
    for value in values:
        text = str(ipaddress.IPv4Address(value))
        parsed = parse_ip(text)
        assert parsed is not None
        assert geo(parsed) == _record_to_result(reader.get(text)), text
    assert geo.lookups < len(values)


def test_truncated_database_refused(tmp_path: Path) -> None:
    """A file shorter than its declared search tree raises GeoDatabaseError."""
    metadata = maxminddb.open_database(str(_DATABASES["v6"])).metadata()
    path = tmp_path / "short.mmdb"
    path.write_bytes(b"\0" * 10)
    with pytest.raises(GeoDatabaseError):
        Ipv4Index.build(
            str(path),
            node_count=metadata.node_count,
            record_size=metadata.record_size,
            ip_version=6,
        )


# ------------------------------------------------------------------ Ipv4Ranges: contract


def _ranges(starts: list[int], pointers: list[int], blocks: list[int] | None = None) -> Any:
    if blocks is None:
        edges = [block << 16 for block in range(65_537)]
        blocks = [bisect.bisect_left(starts, edge) for edge in edges]
    return Ipv4Ranges(array("I", starts), array("I", pointers), array("I", blocks))


def test_ipv4_ranges_find_the_network_holding_an_address() -> None:
    """Against a plain scan of a random sorted list of network starts."""
    rng = random.Random(4)
    starts = sorted({0, *(rng.randrange(2**32) for _ in range(2_000))})
    pointers = [rng.randrange(2**32) for _ in starts]
    ranges = _ranges(starts, pointers)
    probes = [rng.randrange(2**32) for _ in range(3_000)]
    probes += [s for s in starts[:200]] + [max(0, s - 1) for s in starts[:200]] + [2**32 - 1]
    for address in probes:
        holder = max(i for i, start in enumerate(starts) if start <= address)
        assert ranges.find(address) == pointers[holder]


def test_ipv4_ranges_refuse_bad_arrays_and_addresses() -> None:
    with pytest.raises(ValueError, match="start at"):
        _ranges([5, 9], [1, 2])
    with pytest.raises(ValueError, match="sorted"):
        Ipv4Ranges(array("I", [0, 9, 5]), array("I", [1, 2, 3]), array("I", [0] * 65_537))
    with pytest.raises(ValueError, match="same"):
        _ranges([0, 9], [1])
    with pytest.raises(ValueError, match="65,537"):
        _ranges([0], [1], [0, 1])
    with pytest.raises(ValueError, match="blocks"):
        _ranges([0], [1], [2] * 65_537)
    with pytest.raises(TypeError, match="32-bit"):
        Ipv4Ranges(array("Q", [0]), array("I", [1]), array("I", [0] * 65_537))
    with pytest.raises(TypeError):
        Ipv4Ranges([0], array("I", [1]), array("I", [0] * 65_537))
    ranges = _ranges([0], [7])
    assert ranges.find(0) == ranges.find(2**32 - 1) == 7
    with pytest.raises(ValueError):
        ranges.find(2**32)
    with pytest.raises(OverflowError):
        ranges.find(-1)
    with pytest.raises(TypeError):
        ranges.find("1")


def test_ipv4_ranges_hold_the_arrays_they_search() -> None:
    """The arrays are held, not copied: they cannot be resized while searched, and a refused
    array is let go at once."""
    held = array("I", [0])
    pointers = array("I", [3])
    ranges = Ipv4Ranges(held, pointers, array("I", [1] * 65_537))
    assert ranges.find(2**31) == 3
    with pytest.raises(BufferError):
        held.append(1)
    bad = array("I", [0, 9, 5])
    with pytest.raises(ValueError):
        Ipv4Ranges(bad, array("I", [1, 2, 3]), array("I", [0] * 65_537))
    bad.append(1)  # not held after the refusal
