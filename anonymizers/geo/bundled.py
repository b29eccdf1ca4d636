"""Where the bundled geolocation database is: the GeoLite2 City file of `maxminddb-geolite2`.

Only locates the file (no network, no environment); `anonymizers.ip.GeoLookup` opens it.
Attribution: this product includes GeoLite2 data created by MaxMind, available from
https://www.maxmind.com (release of 2018-07-03, CC BY-SA 4.0).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Final

BUNDLED_MODULE: Final = "_maxminddb_geolite2"
BUNDLED_FILE: Final = "GeoLite2-City.mmdb"


def default_database_path() -> Path | None:
    """The bundled GeoLite2 City database, or None when the package is not installed."""
    spec = importlib.util.find_spec(BUNDLED_MODULE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / BUNDLED_FILE
        if candidate.is_file():
            return candidate
    return None
