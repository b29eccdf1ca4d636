"""Where visitors' IP addresses come from: networks of a MaxMind-format `.mmdb`, by country.

With a database, every generated address lies in a network the database maps to a country,
so the pipeline's geolocation can be checked against the generator's ground truth.

* Small databases (<= `ITERATE_MAX_NODES` search-tree nodes, e.g. test databases written
  with mmdb-writer) are read whole with maxminddb's reader iteration.
* Larger ones (GeoLite2-City has ~3.6 M nodes, ~1 min to iterate) are sampled instead: IPv4
  networks by looking up `PROBES` addresses drawn with a fixed seed, IPv6 networks by
  looking up the built-in IPv6 prefixes below (random IPv6 probes almost never hit).

Without a database, the built-in table of public ISP prefixes per country is used
(checked against GeoLite2-City 2018-07-03: 20 random addresses of each prefix resolved to
its country). Countries are then only as right as that table.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream.local.traffic.exceptions import GeoDatabaseError
from stream.local.traffic.randomness import Draws, Weighted

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ITERATE_MAX_NODES = 100_000
PROBES = 60_000
PROBE_SEED = 20_240_601

BUILTIN_PREFIXES: dict[str, tuple[str, ...]] = {
    "FR": (
        "2.0.0.0/12",
        "90.0.0.0/9",
        "78.192.0.0/10",
        "88.160.0.0/11",
        "176.128.0.0/10",
        "82.64.0.0/14",
        "109.208.0.0/13",
        "86.192.0.0/11",
        "2a01:cb00::/24",
        "2a01:e00::/26",
        "2001:861::/32",
    ),
    "BE": ("91.176.0.0/13", "2a02:a03f::/32", "2a02:1810::/28", "2a02:2c40::/32"),
    "CH": ("85.0.0.0/13", "178.192.0.0/13", "83.76.0.0/14", "2a02:1200::/27", "2a02:aa10::/28"),
    "CA": (
        "99.224.0.0/11",
        "142.112.0.0/12",
        "70.48.0.0/13",
        "2607:fa48::/32",
        "2607:fea8::/32",
        "2001:56a::/32",
    ),
    "DE": ("79.192.0.0/10", "91.0.0.0/10", "2003::/19"),
    "US": ("73.0.0.0/8", "2601::/20"),
    "GB": ("86.128.0.0/10", "81.96.0.0/13", "2a00:23c0::/27"),
    "ES": ("83.32.0.0/11", "88.0.0.0/11", "2a0c:5a80::/29"),
    "IT": ("79.0.0.0/10", "93.32.0.0/12", "2001:b07::/32"),
    "LU": ("85.93.192.0/19", "2001:7e8::/32"),
    "NL": ("84.24.0.0/13", "2a02:a440::/29"),
    "MA": ("105.128.0.0/11",),
}

# Visitor countries of a French shop: the rest of the traffic goes to OTHER_COUNTRIES
# present in the database (or, if none is, to any other country it holds).
COUNTRY_WEIGHTS: dict[str, float] = {"FR": 0.72, "BE": 0.07, "CH": 0.06, "CA": 0.05}
OTHER_SHARE = 0.10
OTHER_COUNTRIES = ("DE", "GB", "US", "ES", "IT", "LU", "NL", "MA", "PT", "MC", "DZ", "TN", "SN")


@dataclass(frozen=True, slots=True)
class CountryNetworks:
    """The IPv4 and IPv6 networks of one country (ISO 3166 alpha-2)."""

    country: str
    ipv4: tuple[ipaddress.IPv4Network, ...]
    ipv6: tuple[ipaddress.IPv6Network, ...]


class GeoPool:
    """Networks by country, and the country mix of the visitor population."""

    def __init__(self, networks: Iterable[tuple[IPNetwork, str]], *, source: str) -> None:
        by_country: dict[str, tuple[list[ipaddress.IPv4Network], list[ipaddress.IPv6Network]]]
        by_country = {}
        for network, country in networks:
            if not _usable(network):
                continue
            v4, v6 = by_country.setdefault(country, ([], []))
            if isinstance(network, ipaddress.IPv4Network):
                v4.append(network)
            else:
                v6.append(network)
        if not by_country:
            raise GeoDatabaseError(f"{source}: no public network with a country found")
        self.source = source
        self.countries: dict[str, CountryNetworks] = {
            country: CountryNetworks(country, tuple(sorted(v4)), tuple(sorted(v6)))
            for country, (v4, v6) in sorted(by_country.items())
        }
        self.country_mix: Weighted[str] = Weighted(_country_weights(list(self.countries)))
        # (first address as int, size) of each network, per country: [IPv4, IPv6]
        self._spans: dict[str, tuple[list[tuple[int, int]], list[tuple[int, int]]]] = {
            country: (
                [(int(n.network_address), n.num_addresses) for n in entry.ipv4],
                [(int(n.network_address), n.num_addresses) for n in entry.ipv6],
            )
            for country, entry in self.countries.items()
        }

    @classmethod
    def builtin(cls) -> GeoPool:
        """The built-in table of public prefixes (see module doc)."""
        return cls(
            (
                (ipaddress.ip_network(prefix), country)
                for country, prefixes in BUILTIN_PREFIXES.items()
                for prefix in prefixes
            ),
            source="built-in prefix table",
        )

    @classmethod
    def from_mmdb(cls, path: Path) -> GeoPool:
        """Networks and countries of the `.mmdb` at `path` (see module doc for large files)."""
        import maxminddb

        try:
            reader = maxminddb.open_database(str(path))
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            raise GeoDatabaseError(f"cannot read geo database {path}: {exc}") from None
        try:
            if reader.metadata().node_count <= ITERATE_MAX_NODES:
                found = list(_iterate(reader))
            else:
                found = list(_probe(reader))
        finally:
            reader.close()
        return cls(found, source=str(path))

    def address(self, country: str, *, version: int, draws: Draws) -> str | None:
        """A random host address in one of `country`'s networks of IP `version`, if any."""
        spans = self._spans[country][0 if version == 4 else 1]
        if not spans:
            return None
        first, size = draws.pick(spans)
        value = first + (1 + draws.big(size - 2) if size >= 4 else draws.big(size))
        if version == 4:
            return f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"
        return str(ipaddress.IPv6Address(value))


def _usable(network: IPNetwork) -> bool:
    return network.is_global and not network.is_multicast


def _country_weights(available: list[str]) -> list[tuple[str, float]]:
    weights = {c: w for c, w in COUNTRY_WEIGHTS.items() if c in available}
    others = [c for c in OTHER_COUNTRIES if c in available and c not in weights]
    if not others:
        others = [c for c in available if c not in COUNTRY_WEIGHTS]
    for country in others:
        weights[country] = OTHER_SHARE / len(others)
    if not weights:
        weights = dict.fromkeys(available, 1.0)
    return sorted(weights.items())


def country_of(record: Any) -> str | None:
    """The ISO country code of an mmdb record: GeoIP2 `country.iso_code`, else
    `registered_country.iso_code`, else a flat `country` / `country_code` string."""
    if not isinstance(record, Mapping):
        return None
    for key in ("country", "registered_country", "country_code", "iso_code"):
        value = record.get(key)
        if isinstance(value, Mapping):
            value = value.get("iso_code")
        if isinstance(value, str) and len(value) == 2 and value.isalpha():
            return value.upper()
    return None


def _iterate(reader: Any) -> Iterable[tuple[IPNetwork, str]]:
    for network, record in reader:
        country = country_of(record)
        if country is not None:
            yield network, country


def _probe(reader: Any) -> Iterable[tuple[IPNetwork, str]]:
    seen: set[IPNetwork] = set()
    rng = random.Random(PROBE_SEED)  # noqa: S311 - sampling a database, not security
    for _ in range(PROBES):
        address = ipaddress.IPv4Address(rng.getrandbits(32))
        record, prefix_len = reader.get_with_prefix_len(address)
        country = country_of(record)
        if country is None:
            continue
        network = ipaddress.IPv4Network(
            (int(address) >> (32 - prefix_len) << (32 - prefix_len), prefix_len)
        )
        if network not in seen:
            seen.add(network)
            yield network, country
    if reader.metadata().ip_version == 6:
        for prefix in (p for prefixes in BUILTIN_PREFIXES.values() for p in prefixes if ":" in p):
            network6 = ipaddress.IPv6Network(prefix)
            country = country_of(reader.get(network6.network_address))
            if country is not None:
                yield network6, country
