"""`PlaceDecoder` reads the same country, region and city as the reader's full decode.

Two independent sources of truth: values encoded here by hand from the MaxMind DB spec
(https://maxmind.github.io/MaxMind-DB/, "Output Data Section"), and `maxminddb`'s own reader
(through `anonymizers.geo.lookup._record_to_result`) on test databases and the bundled GeoLite2
City.
"""

from __future__ import annotations

import ipaddress
import random
from pathlib import Path

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from anonymizers.geo.index import Ipv4Index
from anonymizers.geo.lookup import DATA_SEPARATOR_BYTES, GeoLookup, _record_to_result
from anonymizers.geo.records import UNKNOWN, PlaceDecoder, UnsupportedRecord
from anonymizers.ip import parse_ip

POINTER, STRING, DOUBLE, BYTES, UINT16, UINT32, MAP = 1, 2, 3, 4, 5, 6, 7
INT32, UINT64, UINT128, ARRAY, CONTAINER, END_MARKER, BOOLEAN, FLOAT = 8, 9, 10, 11, 12, 13, 14, 15
POINTER_BASES = (0, 2048, 526_336, 0)


# --------------------------------------------------------------------- a spec encoder
def control(kind: int, size: int) -> bytes:
    """Control byte(s) of a value of `kind` and `size` (extended type and size per the spec)."""
    if size < 29:
        low, extra = size, b""
    elif size < 285:
        low, extra = 29, bytes([size - 29])
    elif size < 65_821:
        low, extra = 30, (size - 285).to_bytes(2, "big")
    else:
        low, extra = 31, (size - 65_821).to_bytes(3, "big")
    if kind <= MAP:
        return bytes([kind << 5 | low]) + extra
    return bytes([low, kind - 7]) + extra


def string(text: str) -> bytes:
    raw = text.encode()
    return control(STRING, len(raw)) + raw


def mapping(*pairs: tuple[bytes, bytes]) -> bytes:
    return control(MAP, len(pairs)) + b"".join(key + value for key, value in pairs)


def array(*items: bytes) -> bytes:
    return control(ARRAY, len(items)) + b"".join(items)


def pointer(target: int, size_class: int) -> bytes:
    """A pointer to data offset `target` in size class 0-3 (1-4 bytes after the control)."""
    value = target - POINTER_BASES[size_class]
    assert value >= 0
    if size_class == 3:
        return bytes([POINTER << 5 | 3 << 3]) + value.to_bytes(4, "big")
    high, low = value >> (8 * (size_class + 1)), value & ((1 << (8 * (size_class + 1))) - 1)
    assert high < 8
    return bytes([POINTER << 5 | size_class << 3 | high]) + low.to_bytes(size_class + 1, "big")


def record(country: bytes, region: bytes, city: bytes, *before: tuple[bytes, bytes]) -> bytes:
    return mapping(
        *before,
        (string("city"), city),
        (string("country"), country),
        (string("subdivisions"), region),
    )


def place_of(data: bytes, offset: int = 0) -> tuple[str | None, str | None, str | None]:
    return PlaceDecoder(data).place(offset)


COUNTRY = mapping((string("iso_code"), string("FR")), (string("names"), mapping()))
REGION = array(mapping((string("iso_code"), string("IDF"))))
CITY = mapping(
    (string("names"), mapping((string("de"), string("Paris-de")), (string("en"), string("Paris"))))
)


def test_inline_record() -> None:
    assert place_of(record(COUNTRY, REGION, CITY)) == ("FR", "IDF", "Paris")


@pytest.mark.parametrize("size_class", [0, 1, 2, 3])
def test_pointers_of_every_size_class(size_class: int) -> None:
    """Record keys and values behind pointers of 1-4 bytes land on the right offsets."""
    start = 600_000 if size_class == 2 else 3_000 if size_class == 1 else 100
    parts = {"country": COUNTRY, "region": REGION, "city": CITY, "key": string("country")}
    data = bytearray(b"\x00" * start)
    where = {}
    for name, encoded in parts.items():
        where[name] = len(data)
        data += encoded
    top = len(data)
    data += record(
        pointer(where["country"], size_class),
        pointer(where["region"], size_class),
        pointer(where["city"], size_class),
    )
    assert place_of(bytes(data), top) == ("FR", "IDF", "Paris")
    # A key behind a pointer too, and the record itself reached through one.
    second = len(data)
    data += mapping((pointer(where["key"], size_class), pointer(where["country"], size_class)))
    via = len(data)
    data += pointer(second, size_class)
    assert place_of(bytes(data), via) == ("FR", None, None)


@pytest.mark.parametrize("length", [28, 29, 284, 285, 300, 65_820, 65_821, 70_000])
def test_extended_sizes(length: int) -> None:
    """String lengths in each size encoding (5 bits, +1, +2, +3 bytes), read and skipped."""
    long_name = "x" * length
    city = mapping((string("names"), mapping((string("en"), string(long_name)))))
    skipped = (string("postal"), string("y" * length))
    assert place_of(record(COUNTRY, REGION, city, skipped)) == ("FR", "IDF", long_name)


def test_skips_values_of_every_type() -> None:
    before = [
        (string("double"), control(DOUBLE, 8) + b"\x40\x09\x21\xfb\x54\x44\x2d\x18"),
        (string("bytes"), control(BYTES, 3) + b"\x00\xff\x10"),
        (string("uint16"), control(UINT16, 2) + b"\x01\x02"),
        (string("uint32"), control(UINT32, 4) + b"\x01\x02\x03\x04"),
        (string("int32"), control(INT32, 4) + b"\xff\xff\xff\xfe"),
        (string("uint64"), control(UINT64, 8) + bytes(range(8))),
        (string("uint128"), control(UINT128, 16) + bytes(range(16))),
        (string("true"), control(BOOLEAN, 1)),
        (string("float"), control(FLOAT, 4) + b"\x3f\x80\x00\x00"),
        (string("empty"), mapping()),
        (
            string("nested"),
            mapping((string("a"), array(string("b"), mapping((string("c"), control(UINT16, 0)))))),
        ),
        (string("location"), mapping((string("latitude"), control(DOUBLE, 8) + bytes(8)))),
    ]
    assert place_of(record(COUNTRY, REGION, CITY, *before)) == ("FR", "IDF", "Paris")


@pytest.mark.parametrize(
    ("country", "region", "city", "expected"),
    [
        # Not maps, not strings, empty array: None, as `_record_to_result` says.
        (string("FR"), REGION, CITY, (None, "IDF", "Paris")),
        (
            mapping((string("iso_code"), control(UINT16, 1) + b"\x07")),
            REGION,
            CITY,
            (None, "IDF", "Paris"),
        ),
        (COUNTRY, array(), CITY, ("FR", None, "Paris")),
        (COUNTRY, mapping(), CITY, ("FR", None, "Paris")),
        (COUNTRY, array(string("IDF")), CITY, ("FR", None, "Paris")),
        # A subdivision without a code: its English name (DB-IP lite).
        (
            COUNTRY,
            array(mapping((string("names"), mapping((string("en"), string("Zurich")))))),
            CITY,
            ("FR", "Zurich", "Paris"),
        ),
        (
            COUNTRY,
            REGION,
            mapping((string("names"), mapping((string("fr"), string("Paris"))))),
            ("FR", "IDF", None),
        ),
        (COUNTRY, REGION, mapping((string("names"), string("Paris"))), ("FR", "IDF", None)),
    ],
)
def test_missing_or_odd_parts(
    country: bytes, region: bytes, city: bytes, expected: tuple[str | None, ...]
) -> None:
    assert place_of(record(country, region, city)) == expected


def test_a_record_that_is_not_a_map_has_no_place() -> None:
    assert place_of(string("FR")) == UNKNOWN
    assert place_of(array(COUNTRY)) == UNKNOWN


@pytest.mark.parametrize(
    "data",
    [
        record(control(CONTAINER, 0), REGION, CITY),
        record(COUNTRY, REGION, CITY, (string("end"), control(END_MARKER, 0))),
        bytes([0, 0]),  # extended type 7 + 0: not a valid extended type
        record(pointer(10_000, 1), REGION, CITY),  # beyond the data
        mapping((string("city"), CITY))[:-3],  # truncated inside the city's English name
        mapping((string("city"), CITY))[:-9],  # truncated between values
        pointer(2, 0) + pointer(0, 0),  # a pointer to a pointer
    ],
    ids=[
        "container",
        "end-marker",
        "bad-extended-type",
        "out-of-range",
        "truncated-string",
        "truncated-map",
        "pointer-to-pointer",
    ],
)
def test_unexpected_encodings_are_refused(data: bytes) -> None:
    with pytest.raises(UnsupportedRecord):
        place_of(data)


def test_invalid_utf8_is_refused() -> None:
    city = mapping((string("names"), mapping((string("en"), control(STRING, 2) + b"\xff\xfe"))))
    with pytest.raises(UnsupportedRecord):
        place_of(record(COUNTRY, REGION, city))


# --------------------------------------------------------------------- against the reader
def _records_of(geo: GeoLookup) -> dict[int, str]:
    """Every record pointer of the database's IPv4 index and one address that maps to it."""
    index = geo._index
    assert isinstance(index, Ipv4Index)
    found: dict[int, str] = {}
    for start, value in zip(index._starts, index._pointers, strict=True):
        if value != index._empty and value not in found:
            found[value] = str(ipaddress.IPv4Address(start))
    return found


def _check_against_reader(path: Path, *, sample: int | None = None) -> int:
    geo = GeoLookup(str(path), decode_records=True)
    decoder = geo._decoder
    assert decoder is not None
    records = list(_records_of(geo).items())
    if sample is not None and len(records) > sample:
        records = random.Random(5).sample(records, sample)
    for value, address in records:
        expected = tuple(_record_to_result(geo._reader.get(address)))
        assert decoder.place(value - geo._data_base) == expected, address
    return len(records)


@pytest.mark.parametrize("fixture", ["city_db", "country_db", "ipv4_db"])
def test_same_as_the_reader_on_test_databases(fixture: str, request: pytest.FixtureRequest) -> None:
    assert _check_against_reader(request.getfixturevalue(fixture)) >= 1


def test_same_as_the_reader_with_long_pointers(tmp_path: Path) -> None:
    """3,000 distinct places: data past 2,048 and 526,336 bytes, so 2- and 3-byte pointers."""
    writer = MMDBWriter(ip_version=6, database_type="GeoIP2-City", ipv4_compatible=True)
    rng = random.Random(3)
    for index in range(3000):
        network = f"10.{index // 256}.{index % 256}.0/24"
        names = {
            lang: f"city-{index}-{lang}-" + "n" * rng.randrange(200) for lang in ("en", "de", "fr")
        }
        place = {
            "country": {"iso_code": f"C{index % 50}", "names": {"en": f"country {index % 50}"}},
            "city": {"names": names, "geoname_id": index},
            "location": {"latitude": rng.uniform(-90, 90), "longitude": rng.uniform(-180, 180)},
        }
        if index % 3:
            place["subdivisions"] = [
                {"iso_code": f"R{index % 7}"} if index % 2 else {"names": {"en": f"r{index}"}}
            ]
        writer.insert_network(IPSet([network]), place)
    path = tmp_path / "many.mmdb"
    writer.to_db_file(str(path))
    assert path.stat().st_size > 526_336 + 3000 * 200
    assert _check_against_reader(path) == 3000


def test_same_as_the_reader_on_geolite2() -> None:
    from stream.cli.preview import bundled_geo_database

    path = bundled_geo_database()
    if path is None:
        pytest.fail("the bundled GeoLite2 City database is missing (maxminddb-geolite2)")
    assert _check_against_reader(path, sample=20_000) == 20_000


def test_geolookup_answers_alike_with_the_decoder_the_reader_and_the_fallback() -> None:
    from stream.cli.preview import bundled_geo_database

    path = str(bundled_geo_database())
    decoded = GeoLookup(path, decode_records=True)
    read = GeoLookup(path, decode_records=False)
    assert read._decoder is None
    fallback = GeoLookup(path, decode_records=True)
    fallback._decoder = PlaceDecoder(b"")  # every record is out of range: the reader answers
    rng = random.Random(11)
    for _ in range(3000):
        address = str(ipaddress.IPv4Address(rng.randrange(2**32)))
        ip = parse_ip(address)
        assert ip is not None
        assert decoded(ip) == read(ip) == fallback(ip), address
    assert decoded.lookups == read.lookups == fallback.lookups > 0


def test_data_section_offset_matches_the_spec(city_db: Path) -> None:
    """Data offset = record value - node count - 16, file offset = tree size + 16 + that."""
    geo = GeoLookup(str(city_db), decode_records=True)
    metadata = geo._reader.metadata()
    assert geo._data_base == metadata.node_count + DATA_SEPARATOR_BYTES
    tree = metadata.node_count * metadata.record_size // 4
    assert city_db.read_bytes()[tree : tree + DATA_SEPARATOR_BYTES] == bytes(DATA_SEPARATOR_BYTES)
