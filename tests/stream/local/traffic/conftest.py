"""Fixtures of the traffic generator tests: a small geo database, a fixed start time."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

# Country -> networks of the test database (GeoIP2 layout: {"country": {"iso_code": ...}}).
# Large IPv4 networks so that the probing path (large databases) hits each of them.
TEST_NETWORKS: dict[str, tuple[str, ...]] = {
    "FR": ("90.0.0.0/9", "2.0.0.0/12", "2a01:cb00::/24", "2a01:e00::/26"),
    "BE": ("91.176.0.0/13", "2a02:a03f::/32"),
    "CH": ("85.0.0.0/13", "2a02:1200::/27"),
    "CA": ("99.224.0.0/11", "2607:fea8::/32"),
    "DE": ("79.192.0.0/10", "2003::/19"),
    "JP": ("126.0.0.0/8",),
}
# A network with a record but no country: must never be used.
NO_COUNTRY_NETWORK = "100.0.0.0/8"


def write_test_geo_db(path: Path) -> Path:
    """Write the test database to `path` (IPv6 tree with IPv4 mapped in, as GeoLite2)."""
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-Country")
    for country, networks in TEST_NETWORKS.items():
        writer.insert_network(IPSet(list(networks)), {"country": {"iso_code": country}})
    writer.insert_network(IPSet([NO_COUNTRY_NETWORK]), {"continent": {"code": "NA"}})
    writer.to_db_file(str(path))
    return path


@pytest.fixture(scope="session")
def geo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of the test geo database."""
    return write_test_geo_db(tmp_path_factory.mktemp("geo") / "test-country.mmdb")


@pytest.fixture
def start() -> datetime:
    """A fixed time for the first event, so that seeded runs are byte-identical."""
    return datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
