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

Large memos of str keys (the IP, consent digest and pseudonym memos: 65,536 to 262,144
entries) name the kind of their values (`values="object"`, `"pseudonym"` or `"u64"`): their
table is then a `FingerprintTable` of `anonymizers.native.twin()`, chosen when the memo is
built. The fast twin (C) stores a 128-bit keyed fingerprint of each key (SipHash-2-4 under a
random per-table key) and the value inline, two entries per 64-byte bucket, and evicts the
least recently used of a bucket's two: a hit reads one cache line where a dict reads four or
five (index, entry, stored key, value), and the table holds no raw key at all. The slow twin
(anonymizers/native/slow.py) is a bounded dict as above behind the same interface. Their
`get`, item assignment, `len`, `in` and `clear` are a dict's, so the hot paths read either
alike.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any, Final, Generic, Literal, Protocol, TypeVar

from anonymizers.native import native_enabled, twin
from anonymizers.native.slow import drop_oldest

K = TypeVar("K")
V = TypeVar("V")
KC = TypeVar("KC", contravariant=True)

ValueKind = Literal["object", "pseudonym", "u64"]
"""What a fingerprint table stores: any object (by reference), a 22-character base64url
pseudonym (as its 16 bytes), or an int in [0, 2**64)."""
_KINDS: Final[dict[str, int]] = {"object": 0, "pseudonym": 1, "u64": 2}


class MemoTable(Protocol[KC, V]):
    """What the hot paths use of a memo's table: a dict's `get` and item assignment."""

    def get(self, key: KC, /) -> V | None: ...

    def __setitem__(self, key: KC, value: V, /) -> None: ...

    def __contains__(self, key: object, /) -> bool: ...

    def __len__(self) -> int: ...

    def clear(self) -> None: ...


def fingerprint_table(max_size: int, values: ValueKind) -> Any:
    """A new `FingerprintTable` of the chosen twin (`anonymizers.native.twin()`) holding at
    least `max_size` (>= 2) entries of `values`, under a fresh random key."""
    return twin().FingerprintTable(max_size, _KINDS[values], secrets.token_bytes(16))


class Memo(Generic[K, V]):
    """`compute(key)` by key, at most `max_size` entries (0: compute every time, store nothing).

    `misses` counts the computations; `len(memo)` is the number of entries held. With
    `values` (str keys only), the table is a `FingerprintTable` of that kind (of the twin
    chosen now), and `max_size` is rounded up to a power of two.
    """

    __slots__ = ("_compute", "_dict", "_native", "max_size", "misses", "table")

    def __init__(
        self, compute: Callable[[K], V], *, max_size: int, values: ValueKind | None = None
    ) -> None:
        if max_size < 0:
            raise ValueError("max_size must be >= 0")
        self.table: MemoTable[K, V]
        self._dict: dict[K, V] | None
        self._native = False
        if values is not None and max_size:
            self._native = native_enabled()
            table = fingerprint_table(max_size, values)
            self.table = table
            self._dict = None
            max_size = table.capacity
        else:
            plain: dict[K, V] = {}
            self.table = plain
            self._dict = plain
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

    @property
    def native(self) -> bool:
        """True when the table is the fast twin's (C) `FingerprintTable`."""
        return self._native

    @property
    def plain_table(self) -> dict[K, V]:
        """The table of a memo that names no kind of values: always a dict (compiled code
        reads a dict faster than any other table)."""
        if self._dict is None:
            raise TypeError("this memo's table is a FingerprintTable")
        return self._dict

    def __getitem__(self, key: K) -> V:
        value = self.table.get(key)
        if value is None:
            return self.miss(key)
        return value

    def miss(self, key: K) -> V:
        """Compute the value of `key` (not in the memo), store it and return it."""
        self.misses += 1
        value = self._compute(key)
        if self.max_size:
            plain = self._dict
            if plain is None:
                # A fingerprint table (either twin's) evicts by itself.
                self.table[key] = value
            else:
                if len(plain) >= self.max_size:
                    drop_oldest(plain)
                plain[key] = value
        return value

    def clear(self) -> None:
        """Forget every entry."""
        self.table.clear()


def bounded_put(cache: dict[K, V], key: K, value: V, *, max_size: int) -> None:
    """`cache[key] = value`, first evicting the oldest eighth if `cache` holds `max_size`.

    For caches whose look-up is not a plain function of the key (`Memo` is for those).
    """
    if len(cache) >= max_size:
        drop_oldest(cache)
    cache[key] = value
