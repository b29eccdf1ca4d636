"""Visitor addresses: from the geo database's networks, or the built-in prefix table."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import maxminddb
import pytest

from stream.local.traffic import GeoDatabaseError, GeoPool
from stream.local.traffic import geo as geo_module
from stream.local.traffic.randomness import Draws
from tests.stream.local.traffic.conftest import NO_COUNTRY_NETWORK, TEST_NETWORKS


def _check_addresses(pool: GeoPool, geo_db: Path) -> None:
    draws = Draws(1)
    with maxminddb.open_database(str(geo_db)) as reader:
        for country in pool.countries:
            for version in (4, 6):
                address = pool.address(country, version=version, draws=draws)
                if address is None:
                    continue
                record: Any = reader.get(address)
                assert isinstance(record, dict) and record["country"]["iso_code"] == country
                assert ipaddress.ip_address(address).is_global


def test_networks_come_from_iterating_the_database(geo_db: Path) -> None:
    """Every network with a country is found, none without; addresses resolve to it."""
    pool = GeoPool.from_mmdb(geo_db)
    expected = {c: {ipaddress.ip_network(n) for n in nets} for c, nets in TEST_NETWORKS.items()}
    found = {c: {*e.ipv4, *e.ipv6} for c, e in pool.countries.items()}
    assert found == expected
    assert all(ipaddress.ip_network(NO_COUNTRY_NETWORK) not in nets for nets in found.values())
    _check_addresses(pool, geo_db)


def test_large_databases_are_sampled(geo_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above the iteration threshold, IPv4 networks are probed and IPv6 ones looked up from
    the built-in prefixes; addresses still resolve to their country in the database."""
    monkeypatch.setattr(geo_module, "ITERATE_MAX_NODES", 0)
    pool = GeoPool.from_mmdb(geo_db)
    assert {"FR", "BE", "CH", "CA", "DE"} <= set(pool.countries)
    assert pool.countries["FR"].ipv6  # found through the built-in IPv6 prefixes
    _check_addresses(pool, geo_db)


def test_builtin_table_addresses_lie_in_their_country_prefixes() -> None:
    """Without a database, addresses come from the documented prefixes of their country."""
    pool = GeoPool.builtin()
    draws = Draws(2)
    for country, prefixes in geo_module.BUILTIN_PREFIXES.items():
        networks = [ipaddress.ip_network(p) for p in prefixes]
        for version in (4, 6):
            for _ in range(20):
                address = pool.address(country, version=version, draws=draws)
                if address is not None:
                    assert any(ipaddress.ip_address(address) in n for n in networks)
    assert pool.country_mix.at(0.99) != "FR" and pool.country_mix.at(0.5) == "FR"


def test_unreadable_database_is_one_clear_error(tmp_path: Path) -> None:
    """A file that is not an .mmdb raises GeoDatabaseError naming it."""
    bogus = tmp_path / "not-a-db.mmdb"
    bogus.write_bytes(b"hello")
    with pytest.raises(GeoDatabaseError, match=r"not-a-db\.mmdb"):
        GeoPool.from_mmdb(bogus)


@pytest.mark.parametrize(
    ("record", "country"),
    [
        ({"country": {"iso_code": "FR"}}, "FR"),
        ({"registered_country": {"iso_code": "BE"}}, "BE"),
        ({"country": "ch"}, "CH"),
        ({"country_code": "CA"}, "CA"),
        ({"city": "Paris"}, None),
        ("FR", None),
        (None, None),
    ],
    ids=["geoip2", "registered", "flat", "country_code", "no-country", "string", "none"],
)
def test_country_of_record_layouts(record: object, country: str | None) -> None:
    """The country is read from GeoIP2 and simpler record layouts; others give None."""
    assert geo_module.country_of(record) == country
