"""The native helpers' twins: anonymizers/native/_fast.c (fast) and anonymizers/native/slow.py
(slow), as Apache Beam tests its coders: one contract suite run against both.

Every contract test takes the `twin` fixture, run as "fast" (the C extension; skipped where it
is not built) and "slow" (the pure-Python twin). Expected values come from the contract, never
from either twin: the standard library (ipaddress, datetime, base64), plain scans, and models
written here.

Fast-only, and marked so by their `fast` fixture: how the C module does it, which the slow twin
does not share. SipHash-2-4 (128-bit output) against the reference vectors; the table against a
model written here from its implementation (bucket = the fingerprint's first 64 bits modulo the
bucket count, two entries per bucket, the least recently used evicted), whose fingerprints come
from that checked SipHash, so each placement and eviction is predicted independently; strings of
other widths with the same bytes; stored tuples untracked by the collector; the guards of objects
made without __init__.
"""

from __future__ import annotations

import base64
import bisect
import gc
import ipaddress
import os
import random
import weakref
from array import array
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anonymizers.keys import EpochKey
from anonymizers.memo import Memo
from anonymizers.native import FAST, SLOW, native_enabled, twin, use_native

OBJECT, PSEUDONYM, U64 = 0, 1, 2
"""The kinds of values, as the contract numbers them."""
NOT_BUILT = "the C extension is not built (no C compiler)"


@pytest.fixture(params=["fast", "slow"], scope="module")
def twin_module(request: pytest.FixtureRequest) -> ModuleType:
    """Each twin in turn (module-scoped: the same module for every hypothesis example)."""
    if request.param == "slow":
        return SLOW
    if FAST is None:
        pytest.skip(NOT_BUILT)
    return FAST


@pytest.fixture(scope="module")
def fast() -> ModuleType:
    """The fast twin, for its implementation tests (skipped where it is not built)."""
    if FAST is None:
        pytest.skip(NOT_BUILT)
    return FAST


@pytest.fixture
def chosen(twin_module: ModuleType) -> Iterator[ModuleType]:
    """The twin under test, also chosen by `anonymizers.native` for objects built meanwhile
    (memos, indexes)."""
    was = native_enabled()
    use_native(twin_module is FAST)
    try:
        yield twin_module
    finally:
        use_native(was)


def _power_of_two_at_least(n: int) -> int:
    size = 1
    while size < n:
        size *= 2
    return size


# ------------------------------------------------------------------ the twins themselves


def _public(namespace: object) -> set[str]:
    return {name for name in dir(namespace) if not name.startswith("_")}


def test_twins_have_the_same_api() -> None:
    """The same names, classes and methods in both twins; the fast one adds only its SipHash
    test helper."""
    if FAST is None:
        pytest.skip(NOT_BUILT)
    assert _public(FAST) - {"siphash128"} == set(SLOW.__all__)
    for name in ("FingerprintTable", "EventClock", "Ipv4Ranges"):
        assert _public(getattr(FAST, name)) == _public(getattr(SLOW, name)), name
    for module in (FAST, SLOW):
        assert (module.KIND_OBJECT, module.KIND_PSEUDONYM, module.KIND_U64) == (0, 1, 2)


def test_twin_follows_the_switch() -> None:
    """twin() is the fast twin where built and switched on, else the slow one."""
    assert native_enabled() == (FAST is not None)
    assert twin() is (SLOW if FAST is None else FAST)
    use_native(False)
    try:
        assert twin() is SLOW and not native_enabled()
    finally:
        use_native(True)
    assert twin() is (SLOW if FAST is None else FAST)


# ------------------------------------------------------------------ fingerprint tables: contract

KEYS = ["", "a", "b", "ab", "\u6261", "\U0001f600", "81.2.69.1", "user-000001", "é", "x" * 300]


@settings(max_examples=200, deadline=None)
@given(
    capacity=st.sampled_from([2, 3, 4, 5, 8, 16]),
    steps=st.lists(
        st.tuples(st.booleans(), st.sampled_from(KEYS), st.integers(0, 2**64 - 1)), max_size=60
    ),
)
def test_table_keeps_its_contract_on_any_sequence(
    twin_module: ModuleType, capacity: int, steps: list[tuple[bool, str, int]]
) -> None:
    """Any sequence of look-ups and stores: capacity rounded up to a power of two, never more
    entries than that, the entry stored last always there, and a key found gives the value
    stored for it last (eviction order is each twin's own)."""
    table = twin_module.FingerprintTable(capacity, U64, os.urandom(16))
    assert table.capacity == _power_of_two_at_least(capacity) and table.kind == U64
    latest: dict[str, int] = {}
    for store, key, value in steps:
        if store:
            table[key] = latest[key] = value
            assert table.get(key) == value and key in table
        else:
            found = table.get(key)
            assert found is None or found == latest[key]
        assert len(table) <= table.capacity
    for key in KEYS:
        found = table.get(key)
        assert (key in table) == (found is not None)
        assert found is None or found == latest[key]


def test_many_keys_never_answer_for_another(twin_module: ModuleType) -> None:
    """100,000 keys through a 4,096-entry table: a key found always gives its own value."""
    table = twin_module.FingerprintTable(4096, U64, os.urandom(16))
    rng = random.Random(3)
    stored: dict[str, int] = {}
    for index in range(100_000):
        key = f"cookie-{rng.getrandbits(40):010x}-{index}"
        table[key] = stored[key] = index
        probe = rng.choice(list(stored)[-5000:]) if index % 10 == 0 else key
        found = table.get(probe)
        assert found is None or found == stored[probe]
    assert len(table) <= 4096
    # Most of the last 1,000 are still held (the fast twin's bucket holds its two most
    # recent; the slow twin drops its oldest eighth).
    recent = list(stored)[-1000:]
    assert sum(table.get(key) == stored[key] for key in recent) > 800


def test_pseudonyms_round_trip(twin_module: ModuleType) -> None:
    """Every pseudonym an EpochKey makes comes back identical (the fast twin stores its 16
    bytes)."""
    key = EpochKey.generate(7, memo_size=0)
    table = twin_module.FingerprintTable(8192, PSEUDONYM, os.urandom(16))
    made = {f"id-{index}": key.pseudonym(f"p:id-{index}") for index in range(2000)}
    for name, pseudonym in made.items():
        table[name] = pseudonym
        assert table.get(name) == pseudonym and len(pseudonym) == 22


@pytest.mark.parametrize(
    "value",
    [
        "short",
        "A" * 21,
        "A" * 23,
        "A" * 21 + "B",  # the last character carries 2 bits: "B" sets a padding bit
        "A" * 21 + "=",
        "+" * 21 + "A",  # base64, not base64url
        "é" * 21 + "A",
        b"A" * 22,
        22,
    ],
)
def test_pseudonym_tables_refuse_anything_else(twin_module: ModuleType, value: object) -> None:
    table = twin_module.FingerprintTable(8, PSEUDONYM, os.urandom(16))
    with pytest.raises((ValueError, TypeError)):
        table["k"] = value
    assert len(table) == 0 and table.get("k") is None


@pytest.mark.parametrize(
    "raw", [bytes(range(16)), bytes(16), b"\xff" * 16, bytes(range(1, 17)), bytes(range(2, 18))]
)
def test_pseudonyms_of_known_bytes_round_trip(twin_module: ModuleType, raw: bytes) -> None:
    """The base64url text of known 16 bytes (each of the four possible last characters
    among them) is held and given back as it was stored (the fast twin holds the bytes it
    decodes to)."""
    text = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    table = twin_module.FingerprintTable(8, PSEUDONYM, os.urandom(16))
    table["k"] = text
    assert table.get("k") == text


@pytest.mark.parametrize("value", [0, 1, 2**63, 2**64 - 1])
def test_u64_values_round_trip(twin_module: ModuleType, value: int) -> None:
    table = twin_module.FingerprintTable(8, U64, os.urandom(16))
    table["k"] = value
    assert table.get("k") == value and type(table.get("k")) is int


@pytest.mark.parametrize(
    ("value", "error"), [(-1, OverflowError), (2**64, OverflowError), ("1", TypeError)]
)
def test_u64_tables_refuse_other_values(
    twin_module: ModuleType, value: object, error: type[Exception]
) -> None:
    table = twin_module.FingerprintTable(8, U64, os.urandom(16))
    with pytest.raises(error):
        table["k"] = value
    assert len(table) == 0


class _Value:
    """A value the table can hold by reference, whose end a weak reference shows."""


def test_object_values_live_as_long_as_their_entries(twin_module: ModuleType) -> None:
    """A value is released when its entry is replaced, evicted (whichever entry the twin
    evicts), cleared, or when the table goes; held while its entry is."""
    table = twin_module.FingerprintTable(2, OBJECT, os.urandom(16))
    values = [_Value() for _ in range(5)]
    refs = [weakref.ref(value) for value in values]
    table["a"], table["b"] = values[0], values[1]
    table["a"] = values[2]  # replaces values[0]
    table["c"] = values[3]  # evicts "a" or "b"
    assert len(table) == 2 and "c" in table and ("a" in table) != ("b" in table)
    del values[:4]
    gc.collect()
    held = ["a" in table, "b" in table, "c" in table]
    assert refs[0]() is None
    assert [ref() is not None for ref in refs[1:4]] == [held[1], held[0], held[2]]
    table.clear()
    assert all(ref() is None for ref in refs[:4]) and len(table) == 0
    table["d"] = values[0]
    del values[0], table
    gc.collect()
    assert refs[4]() is None


def test_misuse_is_refused(twin_module: ModuleType) -> None:
    seed = os.urandom(16)
    for args in [(1, OBJECT, seed), (8, 9, seed), (8, OBJECT, seed[:8]), (2**33, OBJECT, seed)]:
        with pytest.raises(ValueError):
            twin_module.FingerprintTable(*args)
    with pytest.raises(TypeError):
        twin_module.FingerprintTable(8, OBJECT, "a str seed, 16 ")
    table = twin_module.FingerprintTable(8, OBJECT, seed)
    for bad_key in (b"bytes", 1):
        with pytest.raises(TypeError):
            table[bad_key]
        with pytest.raises(TypeError):
            _ = bad_key in table
        with pytest.raises(TypeError):
            table.prefetch(bad_key)
    with pytest.raises(TypeError):
        table[1] = "x"
    with pytest.raises(ValueError):
        table["k"] = None  # None is what get() returns for a miss
    table["k"] = "v"
    table.prefetch("k")
    with pytest.raises(TypeError):
        del table["k"]
    assert table.get("k") == "v"
    with pytest.raises(KeyError) as caught:
        table["alice@example.com"]
    assert "alice" not in str(caught.value)
    with pytest.raises(TypeError):
        iter(table)  # no way to list the keys


def test_fast_get_refuses_keys_other_than_str(fast: ModuleType) -> None:
    """Fast twin: get() of a key that is not a str raises TypeError."""
    table = fast.FingerprintTable(8, OBJECT, os.urandom(16))
    with pytest.raises(TypeError):
        table.get(b"bytes")


def test_slow_get_is_its_dicts() -> None:
    """Slow twin: get() is its dict's own (the chain calls it per event), so a key that is
    not a str is a miss (none can be stored) where the fast twin raises TypeError."""
    table = SLOW.FingerprintTable(8, OBJECT, os.urandom(16))
    table["k"] = "v"
    assert type(table.get) is type({}.get)
    assert table.get(b"bytes") is None and table.get(1) is None and table.get("k") == "v"


def test_repr_shows_no_key(twin_module: ModuleType) -> None:
    table = twin_module.FingerprintTable(8, OBJECT, os.urandom(16))
    table["alice@example.com"] = "x"
    assert "alice" not in repr(table) and "entries=1" in repr(table)
    assert "alice" not in str(table)


# ------------------------------------------------------------------ through Memo


def test_memo_naming_its_values_uses_a_fingerprint_table(chosen: ModuleType) -> None:
    """A memo that names its values gets the chosen twin's table, whose capacity is max_size
    rounded up to a power of two; a memo without a kind is a plain dict with either."""
    memo: Memo[str, int] = Memo(len, max_size=1000, values="u64")
    assert isinstance(memo.table, chosen.FingerprintTable)
    assert memo.native == (chosen is FAST) and memo.max_size == 1024
    assert [memo["abc"], memo["abc"], memo["de"]] == [3, 3, 2] and memo.misses == 2
    with pytest.raises(TypeError):
        _ = memo.plain_table
    plain: Memo[str, int] = Memo(len, max_size=1000)
    assert not plain.native and plain.plain_table == {} and plain.max_size == 1000


# ------------------------------------------------------------------ the event clock: contract


def _minute(text: str, rotation: int = 86_400) -> tuple[str, int, str, int]:
    """put()'s arguments for the minute of a time text, by the standard library."""
    start = datetime.fromisoformat(text[:16] + ":00+00:00")
    base = int(start.timestamp())
    return text[:17], base, text[:10], base // rotation


@pytest.mark.parametrize(
    "raw",
    [
        "2024-05-01T10:59:07Z",
        "2024-05-01T10:59:07.1Z",
        "2024-05-01T10:59:07.123456789Z",
        "1000-01-01T00:00:59.5Z",
        "1969-12-31T23:59:30Z",
        "9999-12-31T23:59:00Z",
        "2024-02-29T00:00:00Z",
    ],
)
@pytest.mark.parametrize("rotation", [60, 90, 86_400])
def test_clock_reads_the_usual_form_in_a_known_minute(
    twin_module: ModuleType, raw: str, rotation: int
) -> None:
    clock = twin_module.EventClock(16_384, rotation)
    assert clock.read(raw) is None
    minute = _minute(raw, rotation)
    clock.put(*minute)
    second = int(raw[17:19])
    expected_epoch = (minute[1] + second) // rotation
    epoch, text, day = clock.read(raw)
    assert (epoch, text, day) == (expected_epoch, raw[:19] + "Z", raw[:10])
    if len(raw) == 20:
        assert text is raw


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "2024-05-01T10:59:60Z",
        "2024-05-01T10:59:07",
        "2024-05-01T10:59:07z",
        "2024-05-01t10:59:07Z",
        "2024-05-01 10:59:07Z",
        "2024-05-01T10:59:07.Z",
        "2024-05-01T10:59:07.1234567890Z",
        "2024-05-01T10:59:07+00:00",
        "2024-05-01T10:59:7Z",
        "2024/05/01T10:59:07Z",
        "2024-05-01T10:59:0\u0667Z",
        "2024-05-01T10:59:07.1\u0667Z",
        "\u0662024-05-01T10:59:07Z",
        " 2024-05-01T10:59:07Z",
        "2024-05-01T10:59:07Z ",
        "2024-05-01T10:58:07Z",  # the minute before: not known
        "2024-05-02T10:59:07Z",  # the next day: not known
        b"2024-05-01T10:59:07Z",
        None,
        20240501,
    ],
)
def test_clock_leaves_anything_else_to_the_full_parser(
    twin_module: ModuleType, raw: object
) -> None:
    clock = twin_module.EventClock(16_384, 86_400)
    clock.put(*_minute("2024-05-01T10:59:00Z"))
    assert clock.read(raw) is None


def test_clock_keeps_consecutive_minutes_and_reuses_slots(twin_module: ModuleType) -> None:
    """Minutes up to its capacity apart never share a slot; one capacity apart they do (the
    later one wins, the earlier one is then unknown again); clear() forgets all."""
    clock = twin_module.EventClock(1_000, 60)
    assert clock.capacity == 1_024
    first = datetime(2024, 5, 1, tzinfo=UTC)
    texts = [
        (first + timedelta(minutes=n)).strftime("%Y-%m-%dT%H:%M:") + "30Z" for n in range(1_025)
    ]
    for text in texts[:1_024]:
        clock.put(*_minute(text, 60))
    assert len(clock) == 1_024
    assert all(clock.read(text) is not None for text in texts[:1_024])
    clock.put(*_minute(texts[1_024], 60))
    assert clock.read(texts[0]) is None and clock.read(texts[1_024]) is not None
    assert len(clock) == 1_024
    clock.put(*_minute(texts[1_024], 60))  # the same minute again: still one entry
    assert len(clock) == 1_024
    clock.clear()
    assert len(clock) == 0 and all(clock.read(text) is None for text in texts)


@pytest.mark.parametrize(
    "arguments",
    [
        ("2024-05-01T10:59:", 1_714_561_140 + 60, "2024-05-01", 0),  # the next minute's base
        ("2024-05-01T10:59:", 1_714_561_141, "2024-05-01", 0),  # not a minute's first second
        ("2024-05-01T10:59", 1_714_561_140, "2024-05-01", 0),
        ("2024-05-01T10:60:", 1_714_561_200, "2024-05-01", 0),
        ("0999-05-01T10:59:", 1_714_561_140, "0999-05-01", 0),
        # Its own base, but three-digit years are not the clock's.
        ("0999-05-01T10:59:", int(datetime(999, 5, 1, 10, 59, tzinfo=UTC).timestamp()), "", 0),
        ("2024-05-01T10:59:00Z", 1_714_561_140, "2024-05-01", 0),
    ],
)
def test_clock_refuses_a_minute_its_base_does_not_name(
    twin_module: ModuleType, arguments: tuple[Any, ...]
) -> None:
    clock = twin_module.EventClock(16, 60)
    with pytest.raises(ValueError):
        clock.put(*arguments)
    assert len(clock) == 0


def test_clock_refuses_bad_arguments(twin_module: ModuleType) -> None:
    for capacity, rotation in ((0, 60), (2**21, 60), (16, 0)):
        with pytest.raises(ValueError):
            twin_module.EventClock(capacity, rotation)
    clock = twin_module.EventClock(16, 60)
    assert clock.capacity == 16 and twin_module.EventClock(1, 60).capacity == 1
    for arguments in (
        ("2024-05-01T10:59:", 1_714_561_140, "2024-05-01", "19844"),
        ("2024-05-01T10:59:", 1_714_561_140.0, "2024-05-01", 19844),
        ("2024-05-01T10:59:", 1_714_561_140, b"2024-05-01", 19844),
        (b"2024-05-01T10:59:", 1_714_561_140, "2024-05-01", 19844),
    ):
        with pytest.raises(TypeError):
            clock.put(*arguments)
    assert len(clock) == 0


# ------------------------------------------------------------------ IPv4: contract


def _quad_value(text: str) -> int:
    """ipv4_value's answer by the standard library (strict decimal quads since 3.9.5)."""
    if not set(text) <= set("0123456789."):
        return -1
    try:
        return int(ipaddress.IPv4Address(text))
    except ValueError:
        return -2


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.text(alphabet="0123456789.", max_size=20),
        st.tuples(*[st.integers(0, 300)] * 4).map(lambda q: ".".join(map(str, q))),
        st.text(alphabet="0123456789.:abcdef x\u0661\u00b2", max_size=16),
    )
)
def test_ipv4_value_agrees_with_the_standard_library(twin_module: ModuleType, text: str) -> None:
    assert twin_module.ipv4_value(text) == _quad_value(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0.0.0", 0),
        ("255.255.255.255", 2**32 - 1),
        ("81.2.69.160", 0x510245A0),
        ("00.1.2.3", -2),
        ("1.2.3.04", -2),
        ("1.2.3.4.", -2),
        ("1..3.4", -2),
        ("1234.1.1.1", -2),
        ("", -2),
        ("1.2.3.4 ", -1),
        ("\u00b9.2.3.4", -1),  # superscript one: a digit to str.isdigit, not to us
        ("\u0661.2.3.4", -1),  # Arabic-Indic one (a two-byte-wide str)
    ],
)
def test_ipv4_value_table(twin_module: ModuleType, text: str, expected: int) -> None:
    assert twin_module.ipv4_value(text) == expected


def test_ipv4_value_takes_a_str(twin_module: ModuleType) -> None:
    with pytest.raises(TypeError):
        twin_module.ipv4_value(b"1.2.3.4")


def _ranges(
    module: ModuleType, starts: list[int], pointers: list[int], blocks: list[int] | None = None
) -> Any:
    if blocks is None:
        edges = [block << 16 for block in range(65_537)]
        blocks = [bisect.bisect_left(starts, edge) for edge in edges]
    return module.Ipv4Ranges(array("I", starts), array("I", pointers), array("I", blocks))


def test_ipv4_ranges_find_the_network_holding_an_address(twin_module: ModuleType) -> None:
    """Against a plain scan of a random sorted list of network starts."""
    rng = random.Random(4)
    starts = sorted({0, *(rng.randrange(2**32) for _ in range(2_000))})
    pointers = [rng.randrange(2**32) for _ in starts]
    ranges = _ranges(twin_module, starts, pointers)
    probes = [rng.randrange(2**32) for _ in range(3_000)]
    probes += [s for s in starts[:200]] + [max(0, s - 1) for s in starts[:200]] + [2**32 - 1]
    for address in probes:
        holder = max(i for i, start in enumerate(starts) if start <= address)
        assert ranges.find(address) == pointers[holder]


def test_ipv4_ranges_refuse_bad_arrays_and_addresses(twin_module: ModuleType) -> None:
    with pytest.raises(ValueError, match="start at"):
        _ranges(twin_module, [5, 9], [1, 2])
    with pytest.raises(ValueError, match="sorted"):
        twin_module.Ipv4Ranges(
            array("I", [0, 9, 5]), array("I", [1, 2, 3]), array("I", [0] * 65_537)
        )
    with pytest.raises(ValueError, match="same"):
        _ranges(twin_module, [0, 9], [1])
    with pytest.raises(ValueError, match="65,537"):
        _ranges(twin_module, [0], [1], [0, 1])
    with pytest.raises(ValueError, match="blocks"):
        _ranges(twin_module, [0], [1], [2] * 65_537)
    with pytest.raises(TypeError, match="32-bit"):
        twin_module.Ipv4Ranges(array("Q", [0]), array("I", [1]), array("I", [0] * 65_537))
    with pytest.raises(TypeError):
        twin_module.Ipv4Ranges([0], array("I", [1]), array("I", [0] * 65_537))
    ranges = _ranges(twin_module, [0], [7])
    assert ranges.find(0) == ranges.find(2**32 - 1) == 7
    with pytest.raises(ValueError):
        ranges.find(2**32)
    with pytest.raises(OverflowError):
        ranges.find(-1)
    with pytest.raises(TypeError):
        ranges.find("1")


def test_ipv4_ranges_hold_the_arrays_they_search(twin_module: ModuleType) -> None:
    """The arrays are held, not copied: they cannot be resized while searched, and a refused
    array is let go at once."""
    held = array("I", [0])
    pointers = array("I", [3])
    ranges = twin_module.Ipv4Ranges(held, pointers, array("I", [1] * 65_537))
    assert ranges.find(2**31) == 3
    with pytest.raises(BufferError):
        held.append(1)
    bad = array("I", [0, 9, 5])
    with pytest.raises(ValueError):
        twin_module.Ipv4Ranges(bad, array("I", [1, 2, 3]), array("I", [0] * 65_537))
    bad.append(1)  # not held after the refusal


# ------------------------------------------------------------------ fast twin only: SipHash

# vectors_sip128 of the reference implementation (github.com/veorq/SipHash, vectors.h): key
# 00..0f, message 00..(n-1) for n = 0..63.
SIP128 = """
a3817f04ba25a8e66df67214c7550293 da87c1d86b99af44347659119b22fc45 8177228da4a45dc7fca38bdef60affe4
9c70b60c5267a94e5f33b6b02985ed51 f88164c12d9c8faf7d0f6e7c7bcd5579 1368875980776f8854527a07690e9627
14eeca338b208613485ea0308fd7a15e a1f1ebbed8dbc153c0b84aa61ff08239 3b62a9ba6258f5610f83e264f31497b4
264499060ad9baabc47f8b02bb6d71ed 00110dc378146956c95447d3f3d0fbba 0151c568386b6677a2b4dc6f81e5dc18
d626b266905ef35882634df68532c125 9869e247e9c08b10d029934fc4b952f7 31fcefac66d7de9c7ec7485fe4494902
5493e99933b0a8117e08ec0f97cfc3d9 6ee2a4ca67b054bbfd3315bf85230577 473d06e8738db89854c066c47ae47740
a426e5e423bf4885294da481feaef723 78017731cf65fab074d5208952512eb1 9e25fc833f2290733e9344a5e83839eb
568e495abe525a218a2214cd3e071d12 4a29b54552d16b9a469c10528eff0aae c9d184ddd5a9f5e0cf8ce29a9abf691c
2db479ae78bd50d8882a8a178a6132ad 8ece5f042d5e447b5051b9eacb8d8f6f 9c0b53b4b3c307e87eaee08678141f66
abf248af69a6eae4bfd3eb2f129eeb94 0664da1668574b88b935f3027358aef4 aa4b9dc4bf337de90cd4fd3c467c6ab7
ea5c7f471faf6bde2b1ad7d4686d2287 2939b0183223fafc1723de4f52c43d35 7c3956ca5eeafc3e363e9d556546eb68
77c6077146f01c32b6b69d5f4ea9ffcf 37a6986cb8847edf0925f0f1309b54de a705f0e69da9a8f907241a2e923c8cc8
3dc47d1f29c448461e9e76ed904f6711 0d62bf01e6fc0e1a0d3c4751c5d3692b 8c03468bca7c669ee4fd5e084bbee7b5
528a5bb93baf2c9c4473cce5d0d22bd9 df6a301e95c95dad97ae0cc8c6913bd8 801189902c857f39e73591285e70b6db
e617346ac9c231bb3650ae34ccca0c5b 27d93437efb721aa401821dcec5adf89 89237d9ded9c5e78d8b1c9b166cc7342
4a6d8091bf5e7d651189fa94a250b14c 0e33f96055e7ae893ffc0e3dcf492902 e61c432b720b19d18ec8d84bdc63151b
f7e5aef549f782cf379055a608269b16 438d030fd0b7a54fa837f2ad201a6403 a590d3ee4fbf04e3247e0d27f286423f
5fe2c1a172fe93c4b15cd37caef9f538 2c97325cbd06b36eb2133dd08b3a017c 92c814227a6bca949ff0659f002ad39e
dce850110bd8328cfbd50841d6911d87 67f14984c7da791248e32bb5922583da 1938f2cf72d54ee97e94166fa91d2a36
74481e9646ed49fe0f6224301604698e 57fca5de98a9d6d8006438d0583d8a1d 9fecde1cefdc1cbed4763674d9575359
e3040c00eb28f15366ca73cbd872e740 7697009a6a831dfecca91c5993670f7a 5853542321f567a005d547a4f04759bd
5150d1772f50834a503e069a973fbd7c
""".split()  # noqa: SIM905 (a table of data, as the reference prints it)


def test_siphash_matches_the_reference_vectors(fast: ModuleType) -> None:
    """All 64 vectors of the reference implementation (message lengths 0 to 63)."""
    assert len(SIP128) == 64
    key = bytes(range(16))
    for length, expected in enumerate(SIP128):
        assert fast.siphash128(bytes(range(length)), key).hex() == expected, length


# ------------------------------------------------------------------ fast twin only: its buckets


def _str_bytes(text: str) -> tuple[int, bytes]:
    """CPython's storage of `text`: its kind (bytes per character) and its bytes."""
    widest = max((ord(c) for c in text), default=0)
    if widest < 256:
        return 1, text.encode("latin-1")
    if widest < 65536:
        return 2, text.encode("utf-16-le")
    return 4, text.encode("utf-32-le")


def fingerprint(fast: ModuleType, seed: bytes, text: str) -> tuple[int, int]:
    """The fast table's fingerprint of `text` as its implementation states it:
    SipHash-2-4-128 of the stored bytes, under the seed with the kind xored into its second
    half; low bit set."""
    kind, data = _str_bytes(text)
    second = int.from_bytes(seed[8:], "little") ^ kind
    digest = fast.siphash128(data, seed[:8] + second.to_bytes(8, "little"))
    hi, lo = int.from_bytes(digest[:8], "little"), int.from_bytes(digest[8:], "little")
    return hi, lo | 1


class Model:
    """Two entries per bucket, the most recently used (read or stored) first; a new key
    evicts the bucket's other one."""

    def __init__(self, fast: ModuleType, capacity: int, seed: bytes) -> None:
        buckets = 1
        while buckets * 2 < capacity:
            buckets *= 2
        self.buckets: list[list[tuple[tuple[int, int], Any]]] = [[] for _ in range(buckets)]
        self.fast = fast
        self.seed = seed

    def _find(self, key: str) -> tuple[list[tuple[tuple[int, int], Any]], tuple[int, int]]:
        fp = fingerprint(self.fast, self.seed, key)
        return self.buckets[fp[0] % len(self.buckets)], fp

    def get(self, key: str) -> Any:
        bucket, fp = self._find(key)
        for index, (held, value) in enumerate(bucket):
            if held == fp:
                bucket.insert(0, bucket.pop(index))
                return value
        return None

    def put(self, key: str, value: Any) -> None:
        bucket, fp = self._find(key)
        for index, (held, _) in enumerate(bucket):
            if held == fp:
                bucket.pop(index)
                bucket.insert(0, (fp, value))
                return
        bucket.insert(0, (fp, value))
        del bucket[2:]

    def __len__(self) -> int:
        return sum(len(bucket) for bucket in self.buckets)


@settings(max_examples=200, deadline=None)
@given(
    capacity=st.sampled_from([2, 3, 4, 8, 16]),
    steps=st.lists(
        st.tuples(st.booleans(), st.sampled_from(KEYS), st.integers(0, 2**64 - 1)), max_size=60
    ),
)
def test_table_behaves_as_its_model(
    fast: ModuleType, capacity: int, steps: list[tuple[bool, str, int]]
) -> None:
    """Fast twin: any sequence of look-ups and stores gives the same answers and entry count
    as the model of its buckets."""
    seed = os.urandom(16)
    table = fast.FingerprintTable(capacity, U64, seed)
    model = Model(fast, capacity, seed)
    for store, key, value in steps:
        if store:
            table[key] = value
            model.put(key, value)
        else:
            assert table.get(key) == model.get(key)
        assert len(table) == len(model) <= table.capacity
    for key in KEYS:
        assert (key in table) == (model.get(key) is not None)


def test_two_entries_per_bucket_least_recently_used_goes(fast: ModuleType) -> None:
    """Fast twin: with one bucket, a third key evicts the one used least recently."""
    table = fast.FingerprintTable(2, OBJECT, os.urandom(16))
    table["a"], table["b"] = ("A",), ("B",)
    assert table.get("a") == ("A",)  # "a" is now the more recent
    table["c"] = ("C",)
    assert table.get("b") is None and table.get("a") == ("A",) and table.get("c") == ("C",)
    assert len(table) == 2 and table.capacity == 2


def test_object_values_are_released_on_replace_evict_clear_and_delete(fast: ModuleType) -> None:
    """Fast twin: it counts its values' references by hand; each goes exactly when its entry
    does (the least recently used one evicted)."""
    table = fast.FingerprintTable(2, OBJECT, os.urandom(16))
    values = [_Value() for _ in range(5)]
    refs = [weakref.ref(value) for value in values]
    table["a"], table["b"] = values[0], values[1]
    table["a"] = values[2]  # replaces values[0]
    table["c"] = values[3]  # evicts "b" (least recently used)
    del values[:4]
    gc.collect()
    assert [ref() is None for ref in refs[:4]] == [True, True, False, False]
    table.clear()
    assert refs[2]() is None and refs[3]() is None and len(table) == 0
    table["d"] = values[0]
    del values[0], table
    assert refs[4]() is None


def test_strings_with_the_same_bytes_in_other_widths_are_other_keys(fast: ModuleType) -> None:
    """Fast twin: "ab" (1 byte per character) and "\u6261" (2 bytes: 61 62) are stored
    apart."""
    table = fast.FingerprintTable(1024, U64, os.urandom(16))
    table["ab"] = 1
    assert table.get("\u6261") is None
    table["\u6261"] = 2
    assert (table.get("ab"), table.get("\u6261")) == (1, 2)


def test_stored_tuples_of_atoms_leave_the_collector(fast: ModuleType) -> None:
    """Fast twin: an object table untracks a stored tuple (and its tuples) holding only
    strings, numbers and such tuples, as CPython's collector would at its next pass; a tuple
    that holds a container it tracks stays tracked, and so does that container."""
    table = fast.FingerprintTable(64, OBJECT, os.urandom(16))
    fields = tuple((name, f"value-{name}") for name in ("country", "region"))
    needles = (f"81.2.69.{len(fields)}",)
    entry = (f"81.2.69.{len(needles)}", fields, needles, True)
    assert gc.is_tracked(entry) and gc.is_tracked(fields)
    table["81.2.69.1"] = entry
    assert not gc.is_tracked(entry) and not gc.is_tracked(fields) and not gc.is_tracked(needles)
    assert table.get("81.2.69.1") == entry
    held: list[str] = []
    mixed = (f"x{len(held)}", (held,))
    table["other"] = mixed
    assert gc.is_tracked(mixed) and gc.is_tracked(mixed[1]) and gc.is_tracked(held)
    held.append("y")
    assert table.get("other")[1][0] == ["y"]
    gc.collect()
    assert table.get("81.2.69.1") == entry and table.get("other") is mixed


# ------------------------------------------------------------------ fast twin only: the rest


def test_objects_made_without_init_are_refused(fast: ModuleType) -> None:
    """Fast twin: a clock or ranges object made by __new__ alone (no arrays yet) refuses
    use instead of reading memory it has not got."""
    with pytest.raises(ValueError, match="not initialised"):
        fast.EventClock.__new__(fast.EventClock).read("2024-05-01T10:59:00Z")
    with pytest.raises(ValueError, match="not initialised"):
        fast.Ipv4Ranges.__new__(fast.Ipv4Ranges).find(1)


def test_event_time_puts_validated_minutes_in_the_clock(chosen: ModuleType) -> None:
    """The chain's event time puts the minutes its full parser validated (four-digit years
    only) in the chosen twin's clock, so the fast path is taken."""
    from anonymizers.event_time import EventTime

    times = EventTime(86_400)
    assert times.native == (chosen is FAST)
    for raw in ("2024-05-01T10:59:00Z", "0999-01-01T00:00:00Z", "2024-02-29T23:59:30.5Z"):
        times.read(raw)
    assert len(times._clock) == 2
    assert times._clock.read("2024-02-29T23:59:01Z") == times.parse("2024-02-29T23:59:01Z")
