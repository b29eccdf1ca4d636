"""Build what the anonymize stage runs from the settings: policy, geo database, chain.

`anonstream preview` and the stream build the chain through `anonymizers.chain.Pipeline`
with the same policy and database, so what the privacy team previews is what runs.
"""

from __future__ import annotations

from anonymizers.geo import GeoLookup
from anonymizers.policy import Policy, default_policy, load_policy
from stream.settings import Settings


def load_stream_policy(settings: Settings) -> Policy:
    """The policy named by `ANONSTREAM_POLICY_PATH`, or the shipped default.

    Raises `PolicyError` listing every problem before anything starts.
    """
    if settings.policy_path is None:
        return default_policy()
    return load_policy(settings.policy_path)


def open_geo(settings: Settings) -> GeoLookup | None:
    """The geolocation database of `ANONSTREAM_GEO_DB_PATH`, else the shipped one, else None."""
    if settings.geo_db_path is not None:
        return GeoLookup(str(settings.geo_db_path))
    try:
        from anonymizers.geo.bundled import default_database_path
    except ImportError:
        return None
    path = default_database_path()
    return GeoLookup(str(path)) if path is not None else None
