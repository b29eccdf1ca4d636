"""Build what the anonymize stage runs from the settings: policy, geo database, chain.

`anonstream preview` and the stream build the chain through `anonymizers.chain.Pipeline`
with the same policy and database, so what the privacy team previews is what runs.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from anonymizers.geo import GeoLookup
from anonymizers.policy import Policy, default_policy, load_policy
from stream.health.metrics import PROCESS_FACTS
from stream.settings import Settings

log = logging.getLogger(__name__)

GEO_MAX_AGE_S = 60 * 86400
"""A geolocation database built longer ago than this (60 days) is logged as a warning."""


def load_stream_policy(settings: Settings) -> Policy:
    """The policy named by `ANONSTREAM_POLICY_PATH`, or the shipped default.

    Raises `PolicyError` listing every problem before anything starts.
    """
    if settings.policy_path is None:
        return default_policy()
    return load_policy(settings.policy_path)


def geo_database_path(settings: Settings) -> Path | None:
    """`ANONSTREAM_GEO_DB_PATH`, else the shipped database, else None."""
    if settings.geo_db_path is not None:
        return settings.geo_db_path
    try:
        from anonymizers.geo.bundled import default_database_path
    except ImportError:
        return None
    path = default_database_path()
    return Path(path) if path is not None else None


def geo_build_epoch(path: Path) -> int:
    """When the .mmdb database at `path` was built (its metadata's build_epoch, Unix seconds)."""
    import maxminddb

    reader = maxminddb.open_database(str(path))
    try:
        return int(reader.metadata().build_epoch)
    finally:
        reader.close()


def report_geo_age(path: Path, *, now: float | None = None) -> float:
    """Record the database's build time for `anonstream_geo_database_age_seconds`, log its
    build date (a warning past `GEO_MAX_AGE_S`) and return its age in seconds."""
    built = geo_build_epoch(path)
    age_s = (time.time() if now is None else now) - built
    PROCESS_FACTS.geo_build_epoch = float(built)
    date = time.strftime("%Y-%m-%d", time.gmtime(built))
    days = int(age_s // 86400)
    if age_s > GEO_MAX_AGE_S:
        log.warning(
            "geolocation database %s built %s, %d days ago (over %d): mount a current one "
            "(ANONSTREAM_GEO_DB_PATH)",
            path.name,
            date,
            days,
            GEO_MAX_AGE_S // 86400,
        )
    else:
        log.info("geolocation database %s built %s, %d days ago", path.name, date, days)
    return age_s


def open_geo(settings: Settings) -> GeoLookup | None:
    """The geolocation database of `ANONSTREAM_GEO_DB_PATH`, else the shipped one, else None;
    its build date is logged and exported (`report_geo_age`)."""
    path = geo_database_path(settings)
    if path is None:
        return None
    geo = GeoLookup(str(path))
    report_geo_age(path)
    return geo
