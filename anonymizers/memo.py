"""A bounded memo of a pure function of one value: the one cache helper of `anonymizers`.

`Memo(compute, max_size=n)` is a dict from an input value to `compute(value)`. Reading
`memo[value]` is a plain dict look-up when the value was seen (no Python call at all, which
is why it is a dict subclass and not a wrapper); on a miss `__missing__` computes, stores and
counts. Only use it for functions of the key alone (and of configuration fixed at
construction): then a cached answer is the answer, and `tests/anonymizers/test_memo.py`
checks this for each memo of the chain.

Bounded: when full, the oldest eighth of the entries (insertion order) goes in one step.
Evicting one entry at a time with `pop(next(iter(d)))` looks O(1) but is not: CPython skips
the deleted slots at the front of the entry table on every `iter`, which cost ~40 µs per
insertion in a full 65,536-entry dict. A memo lives in process memory only: never persisted,
never logged; its keys may be raw values (IPs, user agents, URLs), so nothing may print it.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import islice
from typing import Final, TypeVar

K = TypeVar("K")
V = TypeVar("V")

EVICT_FRACTION: Final = 8
"""When full, 1/EVICT_FRACTION of the entries (the oldest) are evicted at once."""


class Memo(dict[K, V]):
    """`compute(key)` by key, at most `max_size` entries (0: compute every time, store nothing).

    `misses` counts the computations; the dict's own length is the number held.
    """

    __slots__ = ("_compute", "max_size", "misses")

    def __init__(self, compute: Callable[[K], V], *, max_size: int) -> None:
        super().__init__()
        if max_size < 0:
            raise ValueError("max_size must be >= 0")
        self._compute = compute
        self.max_size = max_size
        self.misses = 0

    def __repr__(self) -> str:
        # Keys may be raw identifiers: never show them.
        return f"Memo(size={len(self)}, max_size={self.max_size}, misses={self.misses})"

    __str__ = __repr__

    def __missing__(self, key: K) -> V:
        self.misses += 1
        value = self._compute(key)
        if self.max_size:
            if len(self) >= self.max_size:
                drop_oldest(self)
            self[key] = value
        return value


def drop_oldest(cache: dict[K, V]) -> None:
    """Drop the oldest eighth of `cache`'s entries (at least one), in insertion order."""
    for key in list(islice(cache, max(1, len(cache) // EVICT_FRACTION))):
        del cache[key]


def bounded_put(cache: dict[K, V], key: K, value: V, *, max_size: int) -> None:
    """`cache[key] = value`, first evicting the oldest eighth if `cache` holds `max_size`.

    For caches whose look-up is not a plain function of the key (`Memo` is for those).
    """
    if len(cache) >= max_size:
        drop_oldest(cache)
    cache[key] = value
