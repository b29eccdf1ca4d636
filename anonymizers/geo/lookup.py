"""Geolocation from a MaxMind-format database: `GeoLookup` (see its docstring).

Opening the database by path is the only I/O of `anonymizers`. An address is anything with
`version` (4 or 6), `value` (its integer) and `text` (canonical), as
`anonymizers.ip.parse_ip` gives.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple, Protocol

import maxminddb

from anonymizers.exceptions import GeoDatabaseError
from anonymizers.geo.index import Ipv4Index
from anonymizers.memo import bounded_put

DEFAULT_CACHE_SIZE: Final = 131_072
"""Entries of the geolocation cache (networks plus single addresses)."""
CACHE_LEVELS: Final[dict[int, tuple[int, ...]]] = {
    4: tuple(range(24, 7, -1)),
    6: tuple(range(48, 15, -4)),
}
"""Prefix lengths the geolocation cache keys networks by, finest first, per IP version."""
# NamedTuple construction without its Python-level __new__.
_new_tuple: Final = tuple.__new__


class Address(Protocol):
    """A parsed IP address (`anonymizers.ip.ParsedIp`)."""

    @property
    def version(self) -> int: ...
    @property
    def value(self) -> int: ...
    @property
    def text(self) -> str: ...


class GeoResult(NamedTuple):
    """What a database says about an address; each part None when unknown."""

    country: str | None
    region: str | None
    city: str | None


_UNKNOWN: Final = GeoResult(None, None, None)
Place = tuple[str | None, ...]
"""(country, region, city) as a plain tuple, as `GeoLookup.place` caches it."""
_UNKNOWN_PLACE: Final[Place] = (None, None, None)


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
      record pointer in the database, and each record is decoded once by the reader and
      cached by pointer.
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
        # Results are cached as plain tuples, which the garbage collector stops tracking
        # (a NamedTuple it tracks for ever): record pointer -> result (IPv4 with the index);
        self._records: dict[int, Place] = {}
        # (version, prefix length, address >> host bits) -> result; prefix 32 or 128 for
        # addresses cached one by one.
        self._cache: dict[tuple[int, int, int], Place] = {}
        self._cache_size = cache_size
        self.lookups = 0
        """Records read from the database (cache misses)."""

    def __repr__(self) -> str:
        return f"GeoLookup(database_type={self.database_type!r})"

    def __call__(self, ip: Address) -> GeoResult:
        """Country, region and city of `ip`; `GeoResult(None, None, None)` when unknown."""
        return _new_tuple(GeoResult, self.place(ip))

    def place(self, ip: Address) -> Place:
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
                place = tuple(self._lookup(ip)[0])
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

    def _lookup(self, ip: Address) -> tuple[GeoResult, int]:
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
