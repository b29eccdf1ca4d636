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
table is then a `FingerprintTable`, a bounded dict as above behind a checked interface (each
kind's values are checked when stored; no iteration, no deletion, no key in any message).
Its `get`, item assignment, `len`, `in` and `clear` are a dict's, so the hot paths read either
table alike. (A hand-written C version, which stored keyed fingerprints instead of keys, was
removed on 2026-12-02: it gained +10% / -6% end to end, short of the 25% native code must
gain; docs/internals/chain.md.)
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from itertools import islice
from typing import Any, Final, Generic, Literal, Protocol, TypeVar, cast

K = TypeVar("K")
V = TypeVar("V")
KC = TypeVar("KC", contravariant=True)

ValueKind = Literal["object", "pseudonym", "u64"]
"""What a fingerprint table stores: any object (by reference), a 22-character base64url
pseudonym (as its 16 bytes), or an int in [0, 2**64)."""
KIND_OBJECT: Final = 0
"""Any object, held by reference."""
KIND_PSEUDONYM: Final = 1
"""A 22-character base64url pseudonym (16 bytes, as `EpochKey.pseudonym` makes them)."""
KIND_U64: Final = 2
"""An int in [0, 2**64)."""
_KINDS: Final[dict[str, int]] = {
    "object": KIND_OBJECT,
    "pseudonym": KIND_PSEUDONYM,
    "u64": KIND_U64,
}
EVICT_FRACTION: Final = 8
"""When a bounded dict is full, 1/EVICT_FRACTION of its entries (the oldest) go at once."""
_MAX_CAPACITY: Final = 1 << 32
_PSEUDONYM_CHARS: Final = 22
_B64URL: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64URL_CHARS: Final = frozenset(_B64URL)
_PSEUDONYM_LAST: Final = frozenset(_B64URL[::16])
"""The last character carries the 16th byte's 2 last bits: its 4 low bits are zero."""
_U64_LIMIT: Final = 1 << 64


def drop_oldest(cache: dict[K, V]) -> None:
    """Drop the oldest eighth of `cache`'s entries (at least one), in insertion order, in one
    step (see the module's docstring: one at a time is not O(1))."""
    for key in list(islice(cache, max(1, len(cache) // EVICT_FRACTION))):
        del cache[key]


class MemoTable(Protocol[KC, V]):
    """What the hot paths use of a memo's table: a dict's `get` and item assignment."""

    def get(self, key: KC, /) -> V | None: ...

    def __setitem__(self, key: KC, value: V, /) -> None: ...

    def __contains__(self, key: object, /) -> bool: ...

    def __len__(self) -> int: ...

    def clear(self) -> None: ...


def _pseudonym(value: object) -> str:
    """`value` if it is a pseudonym as `EpochKey.pseudonym` makes them (base64url of 16
    bytes)."""
    if (
        isinstance(value, str)
        and len(value) == _PSEUDONYM_CHARS
        and _B64URL_CHARS.issuperset(value)
        and value[-1] in _PSEUDONYM_LAST
    ):
        return str(value)
    raise ValueError("a pseudonym table holds 22-character base64url pseudonyms only")


def _u64(value: object) -> int:
    if not isinstance(value, int):
        raise TypeError("a u64 table holds ints only")
    if value < 0:
        raise OverflowError("can't convert negative int to unsigned")
    if value >= _U64_LIMIT:
        raise OverflowError("int too big to convert")
    return int(value)


def _str_key(key: object) -> None:
    if not isinstance(key, str):
        raise TypeError(f"FingerprintTable keys are str, not {type(key).__name__}")


class FingerprintTable:
    """FingerprintTable(capacity, kind): a bounded str-keyed memo table of one kind of values.

    `capacity` (2 to 2**32) is rounded up to a power of two (`.capacity`); `kind` is one of
    the KIND_* constants, whose values are checked when stored. It holds the raw keys in a
    dict, so nothing may print or persist it. `get(key)` gives the value or None (it is the
    dict's own bound `get`, called per event: a key that is not a str is a miss, none can be
    stored); `table[key] = value` stores (None refused: it is what `get` answers for a miss),
    dropping the oldest eighth first when full (`drop_oldest`), so the entry stored last is
    always held; no deletion, no iteration; `table[missing]` raises KeyError without the key;
    `in`, `len`, `clear()`.
    """

    __slots__ = ("_capacity", "_check", "_entries", "_kind", "get")

    get: Callable[[str], Any]
    # Iteration would show the raw keys: refused.
    __iter__ = None

    def __init__(self, capacity: int, kind: int) -> None:
        capacity = operator.index(capacity)
        kind = operator.index(kind)
        checks: dict[int, Callable[[object], Any] | None] = {
            KIND_OBJECT: None,
            KIND_PSEUDONYM: _pseudonym,
            KIND_U64: _u64,
        }
        if kind not in checks:
            raise ValueError(f"unknown kind {kind}")
        if not 2 <= capacity <= _MAX_CAPACITY:
            raise ValueError("capacity must be in [2, 2**32]")
        self._capacity = 1 << (capacity - 1).bit_length()
        self._kind = kind
        self._check = checks[kind]
        self._entries: dict[str, Any] = {}
        self.get = self._entries.get

    @property
    def capacity(self) -> int:
        """Entries the table can hold (a power of two)."""
        return self._capacity

    @property
    def kind(self) -> int:
        """The kind of values (KIND_*)."""
        return self._kind

    def __repr__(self) -> str:
        # Never the entries: only their number.
        return f"FingerprintTable(kind={self._kind}, entries={len(self._entries)})"

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        _str_key(key)
        return key in self._entries

    def __getitem__(self, key: str) -> Any:
        _str_key(key)
        value = self._entries.get(key)
        if value is None:
            raise KeyError("not in the table")  # never the key: it may be an identifier
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        _str_key(key)
        if value is None:
            raise ValueError("None is what get() returns for a miss")
        check = self._check
        if check is not None:
            value = check(value)
        entries = self._entries
        if key not in entries and len(entries) >= self._capacity:
            drop_oldest(entries)
        entries[key] = value

    def __delitem__(self, key: str) -> None:
        _str_key(key)
        raise TypeError("FingerprintTable entries cannot be deleted")

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()


def fingerprint_table(max_size: int, values: ValueKind) -> FingerprintTable:
    """A new `FingerprintTable` holding at least `max_size` (>= 2) entries of `values`."""
    return FingerprintTable(max_size, _KINDS[values])


class Memo(Generic[K, V]):
    """`compute(key)` by key, at most `max_size` entries (0: compute every time, store nothing).

    `misses` counts the computations; `len(memo)` is the number of entries held. With
    `values` (str keys only), the table is a `FingerprintTable` of that kind, and `max_size`
    is rounded up to a power of two.
    """

    __slots__ = ("_compute", "_dict", "max_size", "misses", "table")

    def __init__(
        self, compute: Callable[[K], V], *, max_size: int, values: ValueKind | None = None
    ) -> None:
        if max_size < 0:
            raise ValueError("max_size must be >= 0")
        self.table: MemoTable[K, V]
        self._dict: dict[K, V] | None
        if values is not None and max_size:
            table = fingerprint_table(max_size, values)
            # Its keys are str: a memo that names `values` takes str keys only.
            self.table = cast("MemoTable[K, V]", table)
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
    def plain_table(self) -> dict[K, V]:
        """The table of a memo that names no kind of values: always a dict, whose `get` a
        caller may call directly (`miss` on None)."""
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
                # A fingerprint table evicts by itself.
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
