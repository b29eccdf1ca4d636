# ruff: noqa: E501  (long literal tables of test data)
"""Shared fixtures: small MaxMind-format databases with known networks, keys, pipelines."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from anonymizers.chain import Pipeline
from anonymizers.geo import GeoLookup
from anonymizers.keys import StaticKeyProvider
from anonymizers.policy import Policy, default_policy

# network -> (country, region code or None, region name, city) ; the ground truth of the tests.
CITY_NETWORKS: dict[str, tuple[str, str | None, str | None, str | None]] = {
    "81.2.69.0/24": ("GB", "ENG", "England", "London"),
    "203.0.113.0/25": ("FR", "IDF", "Ile-de-France", "Paris"),
    "203.0.113.128/25": ("DE", "BE", "Berlin", "Berlin"),
    "198.51.100.0/24": ("US", "CA", "California", None),
    "192.0.2.0/24": ("NL", None, None, None),
    "100.64.0.0/10": ("CH", None, "Zurich", "Zurich"),  # DB-IP style: subdivision without code
    "2a02:a000::/32": ("BE", "VLG", "Flanders", "Antwerp"),
    "2001:db8:1::/48": ("JP", "13", "Tokyo", "Tokyo"),
    "2001:db8:2:100::/56": ("IT", "RM", "Lazio", "Rome"),
}


def _record(country: str, code: str | None, region: str | None, city: str | None) -> dict[str, Any]:
    record: dict[str, Any] = {"country": {"iso_code": country, "names": {"en": country}}}
    if region is not None:
        subdivision: dict[str, Any] = {"names": {"en": region}}
        if code is not None:
            subdivision["iso_code"] = code
        record["subdivisions"] = [subdivision]
    if city is not None:
        record["city"] = {"names": {"en": city, "fr": city + "-fr"}}
    return record


def build_mmdb(
    path: Path,
    *,
    ip_version: int = 6,
    database_type: str = "GeoIP2-City",
    country_only: bool = False,
) -> Path:
    """Write an mmdb of CITY_NETWORKS (IPv4 networks only when ip_version is 4)."""
    writer = MMDBWriter(
        ip_version=ip_version,
        database_type=database_type,
        ipv4_compatible=ip_version == 6,
        languages=["en"],
        description={"en": "test"},
    )
    for network, (country, code, region, city) in CITY_NETWORKS.items():
        if ip_version == 4 and ":" in network:
            continue
        record = (
            {"country": {"iso_code": country}}
            if country_only
            else _record(country, code, region, city)
        )
        writer.insert_network(IPSet([network]), record)
    writer.to_db_file(str(path))
    return path


@pytest.fixture(scope="session")
def city_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_mmdb(tmp_path_factory.mktemp("geo") / "city.mmdb")


@pytest.fixture(scope="session")
def country_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_mmdb(
        tmp_path_factory.mktemp("geo") / "country.mmdb",
        database_type="GeoLite2-Country",
        country_only=True,
    )


@pytest.fixture(scope="session")
def ipv4_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_mmdb(tmp_path_factory.mktemp("geo") / "v4.mmdb", ip_version=4)


@pytest.fixture()
def geo(city_db: Path) -> GeoLookup:
    return GeoLookup(str(city_db))


KEY_A = bytes(range(1, 33))
KEY_B = bytes(range(101, 133))
DAY = 86400
# 2024-05-01T00:00:00Z is epoch 19844 of a one-day rotation.
EPOCH_MAY_1 = 19844


def static_keys(epochs: dict[int, bytes] | None = None, rotation: int = DAY) -> StaticKeyProvider:
    return StaticKeyProvider(
        epochs if epochs is not None else {EPOCH_MAY_1: KEY_A, EPOCH_MAY_1 + 1: KEY_B},
        rotation_seconds=rotation,
    )


@pytest.fixture()
def make_pipeline(city_db: Path) -> Callable[..., Pipeline]:
    def make(policy: Policy | None = None, **kwargs: Any) -> Pipeline:
        kwargs.setdefault("keys", static_keys())
        kwargs.setdefault("geo", GeoLookup(str(city_db)))
        return Pipeline.from_policy(policy or default_policy(), **kwargs)

    return make


def unkeyed_hashes(value: str) -> list[str]:
    """MD5, SHA-1, SHA-256 of `value` (also lower-cased) as hex and base64 (std/url, padded or not)."""
    out: list[str] = []
    for variant in {value, value.lower(), value.strip()}:
        for algorithm in ("md5", "sha1", "sha256"):
            digest = hashlib.new(algorithm, variant.encode()).digest()
            out.append(digest.hex())
            out.append(digest.hex().upper())
            for encoded in (base64.b64encode(digest), base64.urlsafe_b64encode(digest)):
                text = encoded.decode()
                out.extend({text, text.rstrip("=")})
    return out
