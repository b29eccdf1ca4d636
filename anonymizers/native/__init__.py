"""The chain's native helpers as twins: the C extension `_fast` and its pure-Python twin `slow`.

Apache Beam's coders' pattern: `anonymizers/native/_fast.c` (module `anonymizers.native._fast`,
built by every install where a C compiler exists) and `anonymizers/native/slow.py` have the
same API: `FingerprintTable` (the large memos' tables, `anonymizers.memo`), `EventClock` (the
event time's fast path), `ipv4_value` (`anonymizers.ip.parse_ip`'s IPv4 reader), `Ipv4Ranges`
(`anonymizers.geo.index`'s search) and the `KIND_*` constants. One test suite runs against both
(tests/anonymizers/native/test_native.py); slow.py says where they differ (eviction order,
raw keys held).

Callers take `twin()` when they build an object, so `use_native(False)` makes objects built
afterwards use the slow twin: the tests run both, and `benchmarks/bench_chain.py --no-native`
measures the gain.
"""

from __future__ import annotations

from types import ModuleType
from typing import Final

from anonymizers.native import slow


def _load() -> ModuleType | None:
    try:
        from anonymizers.native import _fast
    except ImportError:  # a pure-Python install without a C compiler
        return None
    return _fast


FAST: Final = _load()
"""The C extension module, or None where it is not built."""
SLOW: Final[ModuleType] = slow
"""The pure-Python twin (anonymizers.native.slow)."""
_SWITCH: Final = {"enabled": FAST is not None}


def twin() -> ModuleType:
    """The fast twin where it is built and switched on, else the slow one."""
    return FAST if FAST is not None and _SWITCH["enabled"] else SLOW


def native_enabled() -> bool:
    """True when objects built now use the fast twin."""
    return _SWITCH["enabled"]


def use_native(enabled: bool) -> None:
    """Whether objects built from now on use the fast twin (when it is built)."""
    _SWITCH["enabled"] = enabled and FAST is not None
