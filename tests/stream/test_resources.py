"""The geolocation database's age (`stream.resources`): logged at start-up and exported."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from stream.health.metrics import PROCESS_FACTS, parse_samples, worker_families
from stream.resources import geo_build_epoch, open_geo, report_geo_age
from stream.settings import Settings

DAY_S = 86400


@pytest.fixture(autouse=True)
def fresh_facts() -> Iterator[None]:
    PROCESS_FACTS.geo_build_epoch = None
    yield
    PROCESS_FACTS.geo_build_epoch = None


@pytest.fixture
def fresh_db(tmp_path: Path) -> tuple[Path, float, float]:
    """A database written now: (path, time before writing, time after)."""
    writer = MMDBWriter(ip_version=4, database_type="GeoIP2-City", languages=["en"])
    writer.insert_network(IPSet(["192.0.2.0/24"]), {"country": {"iso_code": "NL"}})
    path = tmp_path / "city.mmdb"
    before = time.time()
    writer.to_db_file(str(path))
    return path, before, time.time()


def scraped() -> dict[str, float]:
    from prometheus_client import generate_latest

    from stream.health.metrics import CallbackCollector, new_registry

    registry = new_registry()
    registry.register(
        CallbackCollector(lambda: worker_families("anonymize", ready=True, alive=True))
    )
    return parse_samples(generate_latest(registry).decode())


def test_the_build_time_is_read_from_the_database(fresh_db: tuple[Path, float, float]) -> None:
    """build_epoch is when the file was written (to the second)."""
    path, before, after = fresh_db
    assert int(before) <= geo_build_epoch(path) <= after


def test_a_current_database_is_logged_and_exported(
    fresh_db: tuple[Path, float, float], caplog: pytest.LogCaptureFixture
) -> None:
    """Opening a fresh database logs its build date at info and exports an age near 0."""
    path, before, _ = fresh_db
    caplog.set_level(logging.INFO, logger="stream.resources")
    assert open_geo(Settings(geo_db_path=path)) is not None
    (record,) = caplog.records
    assert record.levelno == logging.INFO
    assert time.strftime("%Y-%m-%d", time.gmtime(before)) in record.getMessage()
    age = scraped()["anonstream_geo_database_age_seconds"]
    assert 0 <= age <= time.time() - int(before)


def test_a_database_past_sixty_days_is_a_warning(
    fresh_db: tuple[Path, float, float], caplog: pytest.LogCaptureFixture
) -> None:
    """61 days after its build the same database is a warning naming the age; 59 is not."""
    path, _, after = fresh_db
    caplog.set_level(logging.INFO, logger="stream.resources")
    report_geo_age(path, now=after + 59 * DAY_S)
    report_geo_age(path, now=after + 61 * DAY_S)
    levels = [record.levelno for record in caplog.records]
    assert levels == [logging.INFO, logging.WARNING]
    assert "61 days ago" in caplog.records[1].getMessage()
    assert "ANONSTREAM_GEO_DB_PATH" in caplog.records[1].getMessage()


def test_the_bundled_2018_database_is_flagged_old(caplog: pytest.LogCaptureFixture) -> None:
    """Without ANONSTREAM_GEO_DB_PATH the bundled GeoLite2 (maxminddb-geolite2 2018.703, built
    in July 2018) is used: warned about and exported with an age of years."""
    caplog.set_level(logging.INFO, logger="stream.resources")
    if open_geo(Settings()) is None:
        pytest.skip("maxminddb-geolite2 is not installed")
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "built 2018-07-" in record.getMessage()
    assert scraped()["anonstream_geo_database_age_seconds"] > (time.time() - 1531000000) - DAY_S


def test_no_database_no_gauge() -> None:
    """A worker that read no database exports no age."""
    assert "anonstream_geo_database_age_seconds" not in scraped()
