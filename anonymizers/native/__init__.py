"""The optional C extension `anonymizers.native._fast` (anonymizers/native/_fast.c), and its switch.

Every install builds it where a C compiler exists (setup.py; the compiled build requires
it): fingerprint tables for the large memos (`anonymizers.memo`) and the event time's fast
path (`anonymizers.chain._EventTime`). Without it, the same code runs on dicts and Python
(same results, slower). `use_native(False)` makes objects built afterwards use the Python
paths: the tests run both, and `benchmarks/bench_chain.py --no-native` measures the gain.
"""

from __future__ import annotations

from types import ModuleType
from typing import Final


def _load() -> ModuleType | None:
    try:
        from anonymizers.native import _fast
    except ImportError:  # a pure-Python install without a C compiler
        return None
    return _fast


EXTENSION: Final = _load()
"""The extension module, or None where it is not built."""
_SWITCH: Final = {"enabled": EXTENSION is not None}


def native_enabled() -> bool:
    """True when objects built now use the extension."""
    return _SWITCH["enabled"]


def use_native(enabled: bool) -> None:
    """Whether objects built from now on use the extension (when it is built)."""
    _SWITCH["enabled"] = enabled and EXTENSION is not None
