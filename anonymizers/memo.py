"""A bounded memo of a pure function of one value: the one cache helper of `anonymizers`.

`Memo(compute, max_size=n)` maps an input value to `compute(value)`. Only use it for
functions of the key alone (and of configuration fixed at construction): then a cached
answer is the answer; `tests/anonymizers/test_memo.py` checks the chain's memos this way.

`memo[value]` looks up and computes on a miss. Hot paths read the plain dict `memo.table`
themselves, `table.get(value)`, and call `memo.miss(value)` when that gives None: a dict
look-up and no Python call for a value seen before (such memos must never hold None).

Why a plain dict and not a dict subclass with `__missing__` (which would read the same):
CPython's garbage collector stops tracking a plain dict that holds only strings and numbers,
but walks every entry of a dict subclass at each full collection. With the pseudonym and
digest memos (hundreds of thousands of entries) that was ~8% of the chain's time.

Bounded: when full, the oldest eighth of the entries (insertion order) goes in one step.
Evicting one entry at a time with `pop(next(iter(d)))` looks O(1) but is not: CPython skips
the deleted slots at the front of the entry table on every `iter`, which cost ~40 µs per
insertion in a full 65,536-entry dict. A memo lives in process memory only: never persisted,
never logged; its keys may be raw values (IPs, user agents, URLs), so nothing may print it.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import islice
from typing import Final, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

EVICT_FRACTION: Final = 8
"""When full, 1/EVICT_FRACTION of the entries (the oldest) are evicted at once."""


class Memo(Generic[K, V]):
    """`compute(key)` by key, at most `max_size` entries (0: compute every time, store nothing).

    `misses` counts the computations; `len(memo)` is the number of entries held.
    """

    __slots__ = ("_compute", "max_size", "misses", "table")

    def __init__(self, compute: Callable[[K], V], *, max_size: int) -> None:
        if max_size < 0:
            raise ValueError("max_size must be >= 0")
        self.table: dict[K, V] = {}
        self._compute = compute
        self.max_size = max_size
        self.misses = 0

    def __repr__(self) -> str:
        # Keys may be raw identifiers: never show them (str() falls back to this too).
        return f"Memo(size={len(self.table)}, max_size={self.max_size}, misses={self.misses})"

    def __len__(self) -> int:
        return len(self.table)

    def __contains__(self, key: K) -> bool:
        return key in self.table

    def __getitem__(self, key: K) -> V:
        table = self.table
        if key in table:
            return table[key]
        return self.miss(key)

    def miss(self, key: K) -> V:
        """Compute the value of `key` (not in the memo), store it and return it."""
        self.misses += 1
        value = self._compute(key)
        if self.max_size:
            table = self.table
            if len(table) >= self.max_size:
                drop_oldest(table)
            table[key] = value
        return value

    def clear(self) -> None:
        """Forget every entry."""
        self.table.clear()


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
