"""Geolocation: `GeoLookup` over a MaxMind-format database, its flat IPv4 index, and where the
bundled GeoLite2 City database is."""

from anonymizers.geo.bundled import default_database_path
from anonymizers.geo.lookup import GeoLookup, GeoResult, Place

__all__ = ["GeoLookup", "GeoResult", "Place", "default_database_path"]
