"""End-to-end fixtures: the test geolocation database and one pipeline run per module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.anonymizers.conftest import build_mmdb


@pytest.fixture(scope="session")
def e2e_geo_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A City database of the networks `traffic.PLACES` names (tests/anonymizers/conftest)."""
    yield build_mmdb(tmp_path_factory.mktemp("e2e-geo") / "city.mmdb")
