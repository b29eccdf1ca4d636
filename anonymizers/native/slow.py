"""anonymizers.native.slow: the pure-Python twin of the C extension `anonymizers.native._fast`.

Apache Beam's coders' pattern: one fast module beside its pure twin, the same API, one test
suite run against both (tests/anonymizers/native/test_native.py). `anonymizers.native.twin()`
chooses: the C module where it is built and switched on, else this one. Callers use whichever
it gives them alike; only speed and memory differ, and the few points below.

- `FingerprintTable`: the same bounded str-keyed memo table, with the same value checks and
  errors per kind, but it holds the raw keys in a dict: only the fast twin stores keyed
  fingerprints instead of keys. When full it drops the oldest eighth of its entries at once
  (`drop_oldest`, the plain dicts' eviction), where the fast twin evicts the least recently
  used entry of a 2-entry bucket: either way never more than `capacity` entries, and the
  entry stored last is always there. Its `get` is its dict's own bound `get` (the chain
  calls it per event): a key that is not a str is then a miss, where the fast twin raises
  TypeError (no such key can be stored in either).
- `EventClock`: the same minutes in the same slots (minute count since 1970 modulo the
  capacity), kept in a dict keyed by the minute's text.
- `ipv4_value`, `Ipv4Ranges`: the same answers and refusals; the search is `bisect` over
  the arrays (held through memoryviews, not copied).

There is no SipHash here: the slow table needs no fingerprint, and the project writes no
cryptography by hand (`siphash128` is the fast twin's test helper).
"""

from __future__ import annotations

import bisect
import operator
from collections.abc import Callable
from datetime import date
from itertools import islice
from typing import Any, Final, TypeVar

__all__ = [
    "KIND_OBJECT",
    "KIND_PSEUDONYM",
    "KIND_U64",
    "EventClock",
    "FingerprintTable",
    "Ipv4Ranges",
    "ipv4_value",
]
"""The twins' API (`drop_oldest` is the plain dicts' eviction, shared with anonymizers.memo)."""

K = TypeVar("K")
V = TypeVar("V")

KIND_OBJECT: Final = 0
"""Any object, held by reference."""
KIND_PSEUDONYM: Final = 1
"""A 22-character base64url pseudonym (16 bytes, as `EpochKey.pseudonym` makes them)."""
KIND_U64: Final = 2
"""An int in [0, 2**64)."""

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
    """Drop the oldest eighth of `cache`'s entries (at least one), in insertion order.

    In one step: evicting one entry at a time with `pop(next(iter(d)))` looks O(1) but is not
    (CPython skips the deleted slots at the front of the entry table on every `iter`: ~40 µs
    per insertion in a full 65,536-entry dict). The one eviction helper of `anonymizers`
    (`anonymizers.memo` uses it too; it lives here because this module cannot import that one,
    which imports `anonymizers.native`).
    """
    for key in list(islice(cache, max(1, len(cache) // EVICT_FRACTION))):
        del cache[key]


# ------------------------------------------------------------------ fingerprint tables


def _pseudonym(value: object) -> str:
    """`value` if it is a pseudonym as the fast twin stores it (base64url of 16 bytes)."""
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
    """FingerprintTable(capacity, kind, seed): a bounded str-keyed memo table.

    `capacity` (2 to 2**32) is rounded up to a power of two (`.capacity`); `kind` is one of
    the KIND_* constants; `seed` (16 bytes) is checked and unused: this twin holds the raw
    keys in a dict (only the fast twin stores fingerprints instead of keys), so nothing may
    print or persist it. `get(key)` gives the value or None; `table[key] = value` stores
    (None refused: it is what `get` answers for a miss); no deletion; `table[missing]` raises
    KeyError without the key; `in`, `len`, `clear()`; `prefetch(key)` does nothing.
    """

    __slots__ = ("_capacity", "_check", "_entries", "_kind", "get")

    get: Callable[[str], Any]
    # Iteration would show the raw keys: refused (the fast twin has no iterator either).
    __iter__ = None

    def __init__(self, capacity: int, kind: int, seed: bytes) -> None:
        capacity = operator.index(capacity)
        kind = operator.index(kind)
        with memoryview(seed) as view:
            if view.nbytes != 16:
                raise ValueError("seed must be 16 bytes")
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

    def prefetch(self, key: str) -> None:
        """Nothing to fetch ahead in a dict (the fast twin's hint to the CPU)."""
        _str_key(key)

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()


# ------------------------------------------------------------------ the event clock

_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_LONG_LONG: Final = 1 << 63
_MAX_CLOCK: Final = 1 << 20
_SECOND_TENS: Final = frozenset("012345")
_DIGITS: Final = frozenset("0123456789")


def _minute_text(base: int) -> str | None:
    """The text "YYYY-MM-DDTHH:MM:" of the minute starting at `base` (seconds since 1970,
    UTC); None unless `base` is a minute's first second in a four-digit year."""
    if base % 60:
        return None
    days, seconds = divmod(base, 86_400)
    try:
        day = date.fromordinal(_EPOCH_ORDINAL + days)
    except (ValueError, OverflowError):
        return None
    if day.year < 1000:
        return None
    hour, minute = divmod(seconds // 60, 60)
    return f"{day.year}-{day.month:02d}-{day.day:02d}T{hour:02d}:{minute:02d}:"


class EventClock:
    """EventClock(capacity, rotation): the event time's fast path.

    It holds minutes the full parser validated (`put`), at most `capacity` (1 to 2**20,
    rounded up to a power of two) in slots by minute count since 1970: consecutive minutes
    never share one, a minute `capacity` later replaces the earlier. `read(raw)` answers
    (epoch, "YYYY-MM-DDTHH:MM:SSZ", "YYYY-MM-DD") for "YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z" (ASCII,
    second 00-59) in a known minute, else None. The epoch is the minute's when `rotation`
    (seconds, >= 1) is a multiple of 60, else (first second + seconds) // rotation.
    """

    __slots__ = ("_minute_epochs", "_minutes", "_rotation", "_slots")

    def __init__(self, capacity: int, rotation: int) -> None:
        capacity = operator.index(capacity)
        rotation = operator.index(rotation)
        if not 1 <= capacity <= _MAX_CLOCK or rotation < 1:
            raise ValueError("capacity is 1 to 2**20 minutes, rotation >= 1 s")
        self._rotation = rotation
        self._minute_epochs = rotation % 60 == 0
        # Minute text -> (first second, day text, epoch); and the text held by each slot.
        self._minutes: dict[str, tuple[int, str, int]] = {}
        self._slots: list[str | None] = [None] * (1 << (capacity - 1).bit_length())

    @property
    def capacity(self) -> int:
        """Minutes the clock can hold (a power of two)."""
        return len(self._slots)

    def __len__(self) -> int:
        return len(self._minutes)

    def read(self, raw: object) -> tuple[int, str, str] | None:
        """(epoch, text to the second, day) of the usual form in a known minute, else None."""
        if not isinstance(raw, str):
            return None
        known = self._minutes.get(raw[:17])
        if known is None:
            return None
        # The first 17 characters are a minute put before; then seconds 00-59, "Z" or a
        # fraction of 1-9 ASCII digits and "Z".
        size = len(raw)
        if (
            (size != 20 and not 22 <= size <= 30)
            or raw[-1] != "Z"
            or raw[17] not in _SECOND_TENS
            or raw[18] not in _DIGITS
            or (size > 20 and (raw[19] != "." or not _DIGITS.issuperset(raw[20:-1])))
        ):
            return None
        base, day, epoch = known
        if not self._minute_epochs:
            epoch = (base + int(raw[17:19])) // self._rotation
        return epoch, raw if size == 20 else raw[:19] + "Z", day

    def put(self, minute: str, base: int, day: str, epoch: int, /) -> None:
        """A minute the full parser validated: its text "YYYY-MM-DDTHH:MM:", its first second
        since 1970 (UTC), its day "YYYY-MM-DD" and its epoch. ValueError unless the text and
        `base` name the same minute (of a four-digit year)."""
        if not isinstance(minute, str) or not isinstance(day, str):
            raise TypeError("put() takes (str, int, str, int)")
        base = operator.index(base)
        if not isinstance(epoch, int):
            raise TypeError("put() takes (str, int, str, int)")
        if not -_LONG_LONG <= base < _LONG_LONG:
            raise OverflowError("base does not fit in 64 bits")
        text = _minute_text(base)
        if text is None or minute != text:
            raise ValueError("put() takes a minute's text and its first second")
        slot = (base // 60) & (len(self._slots) - 1)
        held = self._slots[slot]
        if held is not None:
            del self._minutes[held]
        self._slots[slot] = text
        self._minutes[text] = (base, day, epoch)

    def clear(self) -> None:
        """Forget every minute."""
        self._minutes.clear()
        self._slots = [None] * len(self._slots)


# ------------------------------------------------------------------ IPv4 addresses

_IPV4_CHARS: Final = frozenset("0123456789.")
_NOT_IPV4: Final = -1
_MALFORMED: Final = -2
_MAX_IPV4: Final = (1 << 32) - 1
_RANGE_BLOCKS: Final = 1 << 16


def ipv4_value(text: str) -> int:
    """The value of `text` as a dotted quad: four decimal octets 0-255 of one to three ASCII
    digits, no leading zero (010 is octal to some parsers, decimal to others), separated by
    single dots. -1 when `text` holds a character other than an ASCII digit or a dot (not
    IPv4); -2 when it holds only those but is no such quad (malformed)."""
    if not isinstance(text, str):
        raise TypeError("ipv4_value() takes a str")
    if not _IPV4_CHARS.issuperset(text):
        return _NOT_IPV4
    parts = text.split(".")
    if len(parts) != 4:
        return _MALFORMED
    value = 0
    for part in parts:
        size = len(part)
        if size == 0 or size > 3 or (size > 1 and part[0] == "0"):
            return _MALFORMED
        octet = int(part)
        if octet > 255:
            return _MALFORMED
        value = value << 8 | octet
    return value


def _u32_view(source: Any, name: str) -> memoryview:
    view = memoryview(source)  # TypeError for an object without a buffer
    if view.itemsize != 4 or view.ndim != 1 or view.format not in ("I", "L"):
        view.release()
        raise TypeError(f"{name} must hold unsigned 32-bit values")
    return view


def _ranges_problem(starts: memoryview, pointers: memoryview, blocks: memoryview) -> str | None:
    count = len(starts)
    if count == 0 or len(pointers) != count:
        return "starts and pointers must have the same, non-zero length"
    if starts[0] != 0:
        return "the first network must start at 0.0.0.0"
    if len(blocks) != _RANGE_BLOCKS + 1:
        return "blocks must have 65,537 entries"
    # sorted() of a sorted list is one linear pass in C.
    first = starts.tolist()
    if first != sorted(first):
        return "starts must be sorted"
    edges = blocks.tolist()
    if edges != sorted(edges) or edges[-1] > count:
        return "blocks must be sorted positions within starts"
    return None


class Ipv4Ranges:
    """Ipv4Ranges(starts, pointers, blocks): the flat IPv4 index's search
    (`anonymizers.geo.index.Ipv4Index`) over three buffers of unsigned 32-bit values, held,
    not copied: `starts` the sorted first addresses of the networks (starts[0] == 0),
    `pointers` their records, `blocks` (65,537 entries) the range of `starts` positions per
    /16. `find(address)` is the pointer of the last network starting at or before it."""

    __slots__ = ("_blocks", "_pointers", "_starts")

    def __init__(self, starts: Any, pointers: Any, blocks: Any) -> None:
        views: list[memoryview] = []
        try:
            views.append(_u32_view(starts, "starts"))
            views.append(_u32_view(pointers, "pointers"))
            views.append(_u32_view(blocks, "blocks"))
            problem = _ranges_problem(*views)
            if problem is not None:
                raise ValueError(problem)
        except BaseException:
            for view in views:
                view.release()
            raise
        self._starts, self._pointers, self._blocks = views

    def find(self, address: int, /) -> int:
        """The record pointer of the network holding the IPv4 address (an int)."""
        if not 0 <= address <= _MAX_IPV4:
            if address < 0 or address >= _U64_LIMIT:
                raise OverflowError("an IPv4 address is 0 to 2**32 - 1")
            raise ValueError("an IPv4 address is 0 to 2**32 - 1")
        block = address >> 16
        blocks = self._blocks
        # bisect_right within the /16's networks: the one before its answer holds the address
        # (in this block, or running into it from before: starts[0] is 0).
        found = bisect.bisect_right(self._starts, address, blocks[block], blocks[block + 1])
        return self._pointers[found - 1]
