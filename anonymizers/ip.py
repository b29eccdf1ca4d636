"""IP addresses: strict parsing, geolocation, truncation.

`parse_ip` accepts IPv4 dotted quads, IPv6 and IPv4-mapped IPv6 (unwrapped to IPv4), with
surrounding whitespace; anything else (a port, leading zeros, a zone id, brackets, a
prefix, garbage, a non-string) gives None, so the event gets no geolocation and no IP.

`GeoLookup` opens any MaxMind-format City or Country database by path and caches results by
network (see its docstring). `IpAnonymizer` turns a parsed address into the fields the policy
allows (country, region, city, ip_prefix); the address itself never reaches the output.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Collection
from typing import Any, Final, NamedTuple

import maxminddb

from anonymizers.exceptions import GeoDatabaseError
from anonymizers.geo import records as georecords
from anonymizers.geo.index import Ipv4Index
from anonymizers.geo.records import PlaceDecoder, UnsupportedRecord
from anonymizers.memo import bounded_put
from anonymizers.native import twin
from anonymizers.policy import GeoConfig

MAX_IPV4_PREFIX: Final = 24
"""Longest IPv4 prefix ever kept (bits); looser settings are rejected by the policy."""
MAX_IPV6_PREFIX: Final = 48
"""Longest IPv6 prefix ever kept (bits)."""
DEFAULT_CACHE_SIZE: Final = 131_072
"""Entries of the geolocation cache (networks plus single addresses)."""
UNKNOWN_PLACE: Final = "unknown"
"""Region (and city, at city granularity) of an address whose country the database knows but
not that finer place. Explicit, so that a metric by (country, region) counts these people in
their country instead of skipping them (a fifth of real traffic, and every event with a
country-only database); no ISO 3166-2 code or English subdivision name reads "unknown"."""
CACHE_LEVELS: Final[dict[int, tuple[int, ...]]] = {
    4: tuple(range(MAX_IPV4_PREFIX, 7, -1)),
    6: tuple(range(MAX_IPV6_PREFIX, 15, -4)),
}
"""Prefix lengths the geolocation cache keys networks by, finest first, per IP version."""

_NOT_IPV4_CHARS: Final = -1
"""`ipv4_value`'s answer for a text with a character other than a digit or a dot."""
# NamedTuple construction without its Python-level __new__ (on every new address).
_new_tuple: Final = tuple.__new__
_IPV6_REJECT: Final = frozenset("%[]/ \t")
DATA_SEPARATOR_BYTES: Final = 16
"""Zero bytes between a MaxMind DB's search tree and its data section."""


class ParsedIp(NamedTuple):
    """A valid address: version (4 or 6), its integer value and canonical text."""

    version: int
    value: int
    text: str


class GeoResult(NamedTuple):
    """What a database says about an address; each part None when unknown."""

    country: str | None
    region: str | None
    city: str | None


_UNKNOWN: Final = GeoResult(None, None, None)
_Place = tuple[str | None, ...]
_UNKNOWN_PLACE: Final[_Place] = (None, None, None)
OUTPUT_FIELDS: Final = ("country", "region", "city", "ip_prefix")
"""The IP unit's output fields, in output order."""
_Fields = tuple[tuple[str, str], ...]


def ipv4_reader() -> Callable[[str], int]:
    """The chosen twin's `ipv4_value` (`anonymizers.native`), for a caller of `parse_ip` to
    take once when it is built."""
    reader: Callable[[str], int] = twin().ipv4_value
    return reader


def parse_ip(raw: object, ipv4_value: Callable[[str], int] | None = None) -> ParsedIp | None:
    """A strictly parsed address, or None for anything that is not exactly one address.

    Dotted quads are read by `ipv4_value` (from `ipv4_reader()`), by default the chosen
    twin's (`anonymizers.native`): four octets 0-255, no leading zero.
    """
    if not isinstance(raw, str):
        return None
    text = raw.strip()
    if not text or len(text) > 45:
        return None
    # Typed, so that compiled code compares the answer as an int.
    reader: Callable[[str], int] = twin().ipv4_value if ipv4_value is None else ipv4_value
    value = reader(text)
    if value >= 0:
        return _new_tuple(ParsedIp, (4, value, text))
    if value != _NOT_IPV4_CHARS:
        return None
    if ":" not in text or not _IPV6_REJECT.isdisjoint(text) or not text.isascii():
        return None
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        return None
    mapped = address.ipv4_mapped
    if mapped is not None:
        # mmdb files written by common tools do not alias ::ffff:0:0/96; look up the IPv4.
        return ParsedIp(4, int(mapped), str(mapped))
    return ParsedIp(6, int(address), address.compressed)


def truncate(ip: ParsedIp, *, ipv4_prefix: int, ipv6_prefix: int) -> str:
    """The network of `ip` at the given prefix length, as CIDR text ("81.2.69.0/24").

    Prefixes longer than /24 (IPv4) or /48 (IPv6) are refused: ValueError.
    """
    if not 0 <= ipv4_prefix <= MAX_IPV4_PREFIX or not 0 <= ipv6_prefix <= MAX_IPV6_PREFIX:
        raise ValueError("prefix longer than /24 (IPv4) or /48 (IPv6)")
    if ip.version == 4:
        bits, prefix, factory = 32, ipv4_prefix, ipaddress.IPv4Network
    else:
        bits, prefix, factory = 128, ipv6_prefix, ipaddress.IPv6Network  # type: ignore[assignment]
    host_bits = bits - prefix
    network = (ip.value >> host_bits) << host_bits
    return str(factory((network, prefix)))


def _record_to_result(record: Any) -> GeoResult:
    if not isinstance(record, dict):
        return _UNKNOWN
    country = record.get("country")
    country_code = country.get("iso_code") if isinstance(country, dict) else None
    region: str | None = None
    subdivisions = record.get("subdivisions")
    if isinstance(subdivisions, list) and subdivisions and isinstance(subdivisions[0], dict):
        first = subdivisions[0]
        code = first.get("iso_code")
        names = first.get("names")
        # DB-IP lite has names but no subdivision codes: fall back to the English name.
        region = code if isinstance(code, str) else _english(names)
    city = record.get("city")
    city_name = _english(city.get("names")) if isinstance(city, dict) else None
    country_text = country_code if isinstance(country_code, str) else None
    return _new_tuple(GeoResult, (country_text, region, city_name))


def _english(names: object) -> str | None:
    if isinstance(names, dict):
        name = names.get("en")
        if isinstance(name, str):
            return name
    return None


class GeoLookup:
    """Geolocation from a MaxMind-format database (GeoLite2/GeoIP2, DB-IP lite; City or Country).

    Opening is the only I/O of `anonymizers`. Every answer is exact, never approximated:

    - IPv4 (with `index`, the default): `anonymizers.geo.index.Ipv4Index` gives the address's
      record pointer in the database, and each record is decoded once and cached by pointer:
      by `anonymizers.geo.records.PlaceDecoder` (only the three strings needed) when
      `decode_records` is true, by default in the compiled build; else by the reader.
    - IPv6, or IPv4 without the index: results are cached by network. The database's own
      network for an address (from `get_with_prefix_len`) is a block every address of which
      has the same record, so the answer is cached under the widest of the levels
      `CACHE_LEVELS` that lies inside that block; addresses in database networks finer than
      /24 (/48) are cached one by one.

    Caches are bounded by `cache_size` entries each (oldest evicted first); 0 disables them.
    """

    def __init__(
        self,
        path: str,
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
        index: bool = True,
        decode_records: bool | None = None,
    ) -> None:
        try:
            self._reader = maxminddb.open_database(path)
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            raise GeoDatabaseError(f"cannot open geolocation database {path!r}: {exc}") from exc
        metadata = self._reader.metadata()
        self.database_type: str = str(metadata.database_type)
        self.build_epoch: int = int(metadata.build_epoch)
        self._ipv4_only = metadata.ip_version == 4
        node_count, record_size = int(metadata.node_count), int(metadata.record_size)
        self._index = (
            Ipv4Index.build(
                path,
                node_count=node_count,
                record_size=record_size,
                ip_version=int(metadata.ip_version),
            )
            if index
            else None
        )
        # With the index in the compiled build (`decode_records` None), records are read by
        # `PlaceDecoder` from the data section, held in memory (~31 MB for GeoLite2 City);
        # the reader decodes what it cannot read.
        self._decoder: PlaceDecoder | None = None
        self._data_base = node_count + DATA_SEPARATOR_BYTES
        if index and (georecords.COMPILED if decode_records is None else decode_records):
            self._decoder = PlaceDecoder(
                _data_section(path, node_count * record_size // 4 + DATA_SEPARATOR_BYTES)
            )
        # Results are cached as plain tuples, which the garbage collector stops tracking
        # (a NamedTuple it tracks for ever): record pointer -> result (IPv4 with the index);
        self._records: dict[int, _Place] = {}
        # (version, prefix length, address >> host bits) -> result; prefix 32 or 128 for
        # addresses cached one by one.
        self._cache: dict[tuple[int, int, int], _Place] = {}
        self._cache_size = cache_size
        self.lookups = 0
        """Records read from the database (cache misses)."""

    def __repr__(self) -> str:
        return f"GeoLookup(database_type={self.database_type!r})"

    def __call__(self, ip: ParsedIp) -> GeoResult:
        """Country, region and city of `ip`; `GeoResult(None, None, None)` when unknown."""
        return _new_tuple(GeoResult, self.place(ip))

    def place(self, ip: ParsedIp) -> _Place:
        """(country, region, city) of `ip` as the cached plain tuple (`__call__` names them).

        The same tuple object is returned for every address of a cached record or network.
        """
        version, value = ip.version, ip.value
        if version == 4 and self._index is not None:
            pointer = self._index(value)
            if pointer is None:
                return _UNKNOWN_PLACE
            place = self._records.get(pointer)
            if place is None:
                place = self._record_place(pointer, ip)
                if self._cache_size:
                    bounded_put(self._records, pointer, place, max_size=self._cache_size)
            return place
        bits = 32 if version == 4 else 128
        cache = self._cache
        for level in CACHE_LEVELS[version]:
            cached = cache.get((version, level, value >> (bits - level)))
            if cached is not None:
                return cached
        cached = cache.get((version, bits, value))
        if cached is not None:
            return cached
        result, prefix_len = self._lookup(ip)
        place = tuple(result)
        if self._cache_size:
            # The widest level inside the database's network; the address alone if none is.
            level = next((lv for lv in reversed(CACHE_LEVELS[version]) if lv >= prefix_len), bits)
            key = (version, level, value >> (bits - level))
            bounded_put(cache, key, place, max_size=self._cache_size)
        return place

    def cache_stats(self) -> tuple[int, int, int]:
        """(entries cached, bound per cache, records read from the database)."""
        return len(self._records) + len(self._cache), self._cache_size, self.lookups

    def _record_place(self, pointer: int, ip: ParsedIp) -> _Place:
        """The place of the record `pointer` (a search-tree record value) that `ip` maps to."""
        if self._decoder is not None:
            try:
                place = self._decoder.place(pointer - self._data_base)
            except UnsupportedRecord:
                pass
            else:
                self.lookups += 1
                return place
        return tuple(self._lookup(ip)[0])

    def _lookup(self, ip: ParsedIp) -> tuple[GeoResult, int]:
        if ip.version == 6 and self._ipv4_only:
            return _UNKNOWN, 0
        self.lookups += 1
        try:
            record, prefix_len = self._reader.get_with_prefix_len(ip.text)
        except ValueError:
            return _UNKNOWN, 128
        return _record_to_result(record), prefix_len

    def close(self) -> None:
        """Close the database."""
        self._reader.close()


def _data_section(path: str, start: int) -> bytes:
    """The bytes of the database file from `start` (its data section) to the end."""
    try:
        with open(path, "rb") as file:
            file.seek(start)
            return file.read()
    except OSError as exc:
        raise GeoDatabaseError(f"cannot read geolocation database {path!r}: {exc}") from exc


class IpOutcome(NamedTuple):
    """The IP unit's output fields; None where the policy or the data gives nothing."""

    country: str | None
    region: str | None
    city: str | None
    ip_prefix: str | None


_NOTHING: Final = IpOutcome(None, None, None, None)


class IpAnonymizer:
    """Geolocation at the policy's granularity, then the IP is dropped or truncated.

    Configured once from `GeoConfig`; called with the address `parse_ip` returned (None for
    a missing or malformed one, which yields no geolocation and no prefix). When the country
    is known, the finer levels the granularity asks for are never absent: `UNKNOWN_PLACE`
    stands for what the database does not know. With no country, there is no geolocation.

    `output_fields` gives the same as (name, value) pairs, limited to the names in `fields`
    (the allowlist's); the geolocation part is memoised per database place.
    """

    def __init__(
        self,
        config: GeoConfig,
        geo: GeoLookup | None,
        *,
        fields: Collection[str] = OUTPUT_FIELDS,
    ) -> None:
        self._geo = geo if config.granularity != "none" else None
        self._granularity = config.granularity
        self._keep_prefix = config.keep_ip_prefix
        self._ipv4_prefix = config.ipv4_prefix
        self._ipv6_prefix = config.ipv6_prefix
        self._prefixes: dict[tuple[int, int], str] = {}
        self._wanted = frozenset(fields)
        self._want_prefix = self._keep_prefix and "ip_prefix" in self._wanted
        # Database place (cached tuple from GeoLookup.place) -> (output pairs, located).
        self._place_fields: dict[_Place, tuple[_Fields, bool]] = {}

    def __call__(self, ip: ParsedIp | None) -> IpOutcome:
        if ip is None:
            return _NOTHING
        country = region = city = None
        if self._geo is not None:
            country, region, city = self._finer(self._geo.place(ip))
        prefix = self._prefix(ip) if self._keep_prefix else None
        return _new_tuple(IpOutcome, (country, region, city, prefix))

    def output_fields(self, ip: ParsedIp) -> tuple[_Fields, bool]:
        """The output fields of `ip` as (name, value) pairs in `OUTPUT_FIELDS` order, only
        names in `fields` and known values; and whether the address was geolocated."""
        fields: _Fields = ()
        located = False
        if self._geo is not None:
            place = self._geo.place(ip)
            known = self._place_fields.get(place)
            if known is None:
                known = self._place_entry(place)
                bounded_put(self._place_fields, place, known, max_size=DEFAULT_CACHE_SIZE)
            fields, located = known
        if self._want_prefix:
            fields = (*fields, ("ip_prefix", self._prefix(ip)))
        return fields, located

    def _place_entry(self, place: _Place) -> tuple[_Fields, bool]:
        country, region, city = self._finer(place)
        found = (("country", country), ("region", region), ("city", city))
        wanted = self._wanted
        fields = tuple((n, v) for n, v in found if v is not None and n in wanted)
        return fields, country is not None

    def _finer(self, place: _Place) -> tuple[str | None, str | None, str | None]:
        """(country, region, city) at the policy's granularity, `UNKNOWN_PLACE` filled in."""
        country, found_region, found_city = place
        region = city = None
        granularity = self._granularity
        if granularity != "country" and country is not None:
            region = found_region or UNKNOWN_PLACE
            if granularity == "city":
                city = found_city or UNKNOWN_PLACE
        return country, region, city

    def _prefix(self, ip: ParsedIp) -> str:
        prefix = self._ipv4_prefix if ip.version == 4 else self._ipv6_prefix
        key = (ip.version, ip.value >> ((32 if ip.version == 4 else 128) - prefix))
        text = self._prefixes.get(key)
        if text is None:
            if len(self._prefixes) >= DEFAULT_CACHE_SIZE:
                self._prefixes.clear()
            text = truncate(ip, ipv4_prefix=self._ipv4_prefix, ipv6_prefix=self._ipv6_prefix)
            self._prefixes[key] = text
        return text
