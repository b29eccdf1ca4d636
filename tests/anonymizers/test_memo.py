# ruff: noqa: E501  (long literal tables of test data)
"""The memos: bounded, never shown; and the memoised chain equals its units composed plainly.

`reference_outcome` below is the chain as the units define it, with no cache anywhere: fresh
uncached units, keys without memo, the full time parser, the geolocation database read for
every event. Hypothesis feeds the same event sequences (values drawn from small pools, so
values repeat and every memo and fast path is hit, plus malformed values) to one long-lived
`Pipeline` and to the reference: the outcomes must be equal, event by event.
"""

from __future__ import annotations

import base64
import gc
import random
import tempfile
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anonymizers import reasons
from anonymizers.allowlist import Allowlist
from anonymizers.chain import Pipeline
from anonymizers.consent import ConsentGate, ConsentState
from anonymizers.context import ContextAnonymizer
from anonymizers.event_time import EventTime
from anonymizers.fields import EVENT_TYPES, IDENTIFIER_FIELDS
from anonymizers.geo import GeoLookup
from anonymizers.ip import IpAnonymizer, parse_ip
from anonymizers.keys import EpochKey, StaticKeyProvider
from anonymizers.memo import (
    KIND_OBJECT,
    KIND_PSEUDONYM,
    KIND_U64,
    FingerprintTable,
    Memo,
    bounded_put,
)
from anonymizers.outcome import Anonymized, Dropped, Outcome
from anonymizers.policy import Policy, default_policy, parse_policy
from anonymizers.pseudonym import Pseudonymizer
from anonymizers.search_terms import SearchTermScrubber
from anonymizers.urls import ReferrerScrubber, UrlScrubber, host_of_scrubbed
from tests.anonymizers.conftest import EPOCH_MAY_1, KEY_A, KEY_B, build_mmdb

# ------------------------------------------------------------------ the Memo helper


def test_memo_computes_once_and_counts_misses() -> None:
    """A value seen before is not recomputed; misses count the computations."""
    calls: list[str] = []

    def compute(key: str) -> int:
        calls.append(key)
        return len(key)

    memo = Memo(compute, max_size=10)
    assert [memo["a"], memo["bb"], memo["a"], memo["bb"]] == [1, 2, 1, 2]
    assert calls == ["a", "bb"] and memo.misses == 2 and len(memo) == 2


@pytest.mark.parametrize("size", [1, 2, 8, 100])
def test_memo_is_bounded_and_evicts_oldest(size: int) -> None:
    """Never more than max_size entries; the newest entry always stays."""
    memo: Memo[int, int] = Memo(lambda k: k * 2, max_size=size)
    for key in range(10 * size + 3):
        assert memo[key] == key * 2
        assert len(memo) <= size and key in memo
    assert 0 not in memo


def test_memo_size_zero_stores_nothing() -> None:
    """max_size 0 computes every time and holds nothing."""
    memo: Memo[str, str] = Memo(str.upper, max_size=0)
    assert memo["x"] == memo["x"] == "X"
    assert len(memo) == 0 and memo.misses == 2


def test_memo_repr_never_shows_keys() -> None:
    """repr and str of a memo (keys may be raw identifiers) show sizes only."""
    memo: Memo[str, str] = Memo(str.upper, max_size=4)
    memo["alice@example.com"]
    for text in (repr(memo), str(memo), f"{memo}"):
        assert "alice" not in text and "ALICE" not in text


def test_bounded_put_is_bounded() -> None:
    """bounded_put keeps at most max_size entries, the newest included."""
    cache: dict[int, int] = {}
    for key in range(1000):
        bounded_put(cache, key, key, max_size=64)
        assert len(cache) <= 64 and cache[key] == key


def test_key_memo_goes_with_the_key() -> None:
    """memo_for gives the pseudonym of prefix + value; destroy() empties it for good."""
    key = EpochKey(1, KEY_A)
    memo = key.memo_for("p:")
    assert memo["v"] == EpochKey(1, KEY_A, memo_size=0).pseudonym("p:v")
    key.destroy()
    assert len(memo) == 0
    with pytest.raises(Exception, match="destroyed"):
        memo["v"]
    with pytest.raises(Exception, match="destroyed"):
        key.memo_for("p:")


# ------------------------------------------------------------------ the reference chain


def _reference_keys() -> StaticKeyProvider:
    provider = StaticKeyProvider({}, rotation_seconds=86400)
    provider._keys = {
        EPOCH_MAY_1: EpochKey(EPOCH_MAY_1, KEY_A, memo_size=0),
        EPOCH_MAY_1 + 1: EpochKey(EPOCH_MAY_1 + 1, KEY_B, memo_size=0),
    }
    return provider


def _static_keys() -> StaticKeyProvider:
    return StaticKeyProvider({EPOCH_MAY_1: KEY_A, EPOCH_MAY_1 + 1: KEY_B}, rotation_seconds=86400)


def reference_outcome(
    policy: Policy, db: Path, consent: ConsentState, event: Mapping[str, Any]
) -> Outcome:
    """The chain's outcome computed with no cache at all (the units composed plainly)."""
    reason = ConsentGate(policy.consent, consent).decide(event)
    if reason is not None:
        return Dropped(reason)
    event_type = event.get("event_type")
    if not isinstance(event_type, str) or event_type not in EVENT_TYPES:
        return Dropped(reasons.INVALID_EVENT)
    if not isinstance(event.get("occurred_at"), str):
        return Dropped(reasons.INVALID_EVENT)
    epoch, occurred_at, day = EventTime(86400).parse(event["occurred_at"])
    if not day:  # unusable time
        return Dropped(reasons.INVALID_EVENT)
    key = _reference_keys().key_for_epoch(epoch)
    if key is None:
        return Dropped(reasons.NO_KEY)
    allowlist = Allowlist(policy.output)
    wanted = allowlist.names
    raw_ip = event.get("ip")
    ip = parse_ip(raw_ip) if isinstance(raw_ip, str) else None
    pseudonyms = Pseudonymizer(policy.identifiers, kept=wanted)
    subject = pseudonyms.subject(event, key, ip=ip, day=day)
    if subject is None:
        return Dropped(reasons.NO_SUBJECT)
    candidate: dict[str, Any] = {
        "event_type": event_type,
        "occurred_at": occurred_at,
        "epoch": epoch,
        "subject": subject.pseudonym,
    }
    if wanted & {"country", "region", "city", "ip_prefix"}:
        geo = GeoLookup(str(db), cache_size=0, index=False)
        candidate.update(IpAnonymizer(policy.geo, geo).outcome(ip)._asdict())
    candidate.update(pseudonyms.identifiers(event, key))
    urls = UrlScrubber(policy.urls, cache_size=0)
    page_url = urls.scrub(event.get("page_url"))
    candidate["page_url"] = page_url
    candidate["link_url"] = urls.scrub(event.get("link_url"))
    if "referrer_url" in event:
        referrer = ReferrerScrubber(policy.urls, cache_size=0).outcome(
            event["referrer_url"], page_host=host_of_scrubbed(page_url)
        )
        candidate["referrer_host"] = referrer.host
        candidate["referrer_internal"] = referrer.internal
    if "search_terms" in event:
        candidate["search_terms"] = (
            SearchTermScrubber(policy.search_terms).scrub(event["search_terms"]).terms
        )
    candidate.update(ContextAnonymizer(policy.context, cache_size=0).outcome(event)._asdict())
    identifiers = [v for name in IDENTIFIER_FIELDS if isinstance(v := event.get(name), str)]
    if isinstance(raw_ip, str):
        identifiers.append(raw_ip.strip())
        if ip is not None and ip.text != identifiers[-1]:
            identifiers.append(ip.text)
    out, _ = allowlist.build(candidate, identifiers=identifiers)
    return Anonymized(out, subject.pseudonym, epoch)


# Small pools so that values repeat within an example (memo hits), with malformed values.
_IDS = ["alice-0001", "bob", "user-000123", "ÜLRICH-élève", "", "x" * 600, 42, None]
_IPS = [
    "81.2.69.160",
    "81.2.69.7",
    " 81.2.69.160 ",
    "::ffff:81.2.69.160",
    "203.0.113.5",
    "203.0.113.200",
    "100.64.1.1",
    "100.80.1.1",
    "8.8.8.8",
    "2a02:a000::1",
    "2001:db8:2:1ff::1",
    "2001:db8:2:200::1",
    "010.1.1.1",
    "81.2.69.160:80",
    "",
    7,
    None,
]
_TIMES = [
    "2024-05-01T10:00:05Z",
    "2024-05-01T10:00:05.123Z",
    "2024-05-01T10:00:59.123456789Z",
    "2024-05-01T10:00:05.1234567891Z",
    "2024-05-01T10:00:60Z",
    "2024-05-01T10:00:5xZ",
    "2024-05-01T10:00:05.Z",
    "2024-05-01t10:00:05z",
    "2024-05-01T12:00:05+02:00",
    "2024-05-01T10:00:05",
    "2024-05-01T10:00:\u06655Z",
    "2024-05-01T10:00:05Z ",
    "2024-05-02T00:00:00Z",
    "2031-01-01T00:00:00Z",
    "",
    None,
    5,
]
_URLS = [
    "https://shop.example/p/1?utm_source=nl&sid=9#x",
    "https://shop.example/u/alice-0001/x",
    "https://shop.example/?uid=USER-000123&utm_source=81.2.69.160",
    "https://shop.example/%61lice-0001",
    "http://81.2.69.160/",
    "ftp://shop.example/",
    "https://www.google.com/?q=a",
    "not a url",
    "",
    None,
    3,
]
_UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
    "Googlebot/2.1",
    "",
    None,
    1,
]
_GOOD_TIMES = [*_TIMES[:3], "2024-05-01T12:00:05+02:00"]
_TERMS = [
    "red shoes",
    "alice-0001 shoes",
    "call 06 12 34 56 78",
    "  \uff33\uff48\uff4f\uff45\uff53 ",
    "",
    None,
    ["x"],
]
_OPTIONAL: dict[str, list[Any]] = {
    "ip": _IPS,
    "user_agent": _UAS,
    "browser_language": ["fr-FR,fr;q=0.9", "en", "zz-999", "", None, 4],
    "page_url": _URLS,
    "link_url": _URLS,
    "referrer_url": _URLS,
    "search_terms": _TERMS,
    "time_on_page_ms": [5, -3, 10**9, 1.5, float("nan"), True, "7", None],
    "unknown": ["leak"],
}
# Fields that drop the event or override the user agent: present only now and then.
_RARE: dict[str, list[Any]] = {
    "browser": ["Firefox 121", "", None],
    "os": ["Android 14", None],
    "hardware": ["iPhone15,2", None],
    "consent": [{"analytics": True}, {"analytics": False}, {}, "yes", None],
    "gpc": [True, False],
    "dnt": [True, False],
    "age_under_16": [True, False, None],
}


def random_event(rng: random.Random) -> dict[str, Any]:
    """One raw event: mostly well-formed, with repeated values and the odd malformed one."""
    event: dict[str, Any] = {
        "event_id": "e",
        "event_type": rng.choice(EVENT_TYPES)
        if rng.random() < 0.9
        else rng.choice(["purchase", None, ["page_view"]]),
        "occurred_at": rng.choice(_GOOD_TIMES) if rng.random() < 0.85 else rng.choice(_TIMES),
    }
    for name in rng.sample(IDENTIFIER_FIELDS, rng.choice([0, 1, 1, 1, 2, 3])):
        event[name] = rng.choice(_IDS)
    for name, values in _OPTIONAL.items():
        if rng.random() < 0.6:
            event[name] = rng.choice(values)
    for name, values in _RARE.items():
        if rng.random() < 0.05:
            event[name] = rng.choice(values)
    return event


_POLICIES = {
    "default": default_policy(),
    "everything": parse_policy(
        {
            "schema_version": 1,
            "geo": {"granularity": "city", "keep_ip_prefix": True},
            "identifiers": {
                "user_id": "pseudonymize",
                "cookie_id": "pseudonymize",
                "mac": "pseudonymize",
            },
            "urls": {"internal_hosts": ["www.google.com"]},
            "context": {"language_region": True},
            "search_terms": {"on_pii": "drop"},
            "consent": {"honour_dnt": True},
            "output": {
                "fields": [
                    "event_type",
                    "occurred_at",
                    "epoch",
                    "subject",
                    "country",
                    "region",
                    "city",
                    "ip_prefix",
                    "page_url",
                    "referrer_host",
                    "referrer_internal",
                    "link_url",
                    "search_terms",
                    "browser",
                    "browser_major",
                    "os",
                    "os_major",
                    "language",
                    "hardware",
                    "time_on_page_ms",
                    "user_id",
                    "cookie_id",
                    "mac",
                ]
            },
        }
    ),
    "minimal": parse_policy(
        {
            "schema_version": 1,
            "geo": {"granularity": "none"},
            "identifiers": {"cookieless_visitor": False},
            "output": {
                "fields": ["event_type", "occurred_at", "epoch", "subject", "referrer_internal"]
            },
            "aggregation": {
                "metrics": [
                    {
                        "name": "events",
                        "event_types": ["page_view"],
                        "dimensions": ["referrer_internal"],
                    }
                ]
            },
        }
    ),
}
_DB = build_mmdb(Path(tempfile.mkdtemp()) / "memo.mmdb")


@pytest.mark.parametrize("policy_name", sorted(_POLICIES))
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(seed=st.integers(0, 2**32 - 1))
def test_memoised_chain_equals_plain_units(policy_name: str, seed: int) -> None:
    """Event by event, the memoised chain's outcome equals the uncached units' (every
    policy)."""
    rng = random.Random(seed)
    events = [random_event(rng) for _ in range(80)]
    policy = _POLICIES[policy_name]
    consent = ConsentState()
    consent.apply({"subject_type": "cookie_id", "subject_id": "bob", "action": "opt_out"})
    consent.apply({"subject_type": "user_id", "subject_id": "user-000123", "action": "erase"})
    pipeline = Pipeline.from_policy(
        policy, keys=_static_keys(), geo=GeoLookup(str(_DB)), consent=consent
    )
    expected = [reference_outcome(policy, _DB, consent, event) for event in events]
    # Twice through the same pipeline: the second pass is all memo hits.
    assert [pipeline(event) for event in events] == expected
    assert pipeline.process_batch(events) == expected


# ------------------------------------------------------------------ the event time fast path
_SECOND_TEXTS = [f"{n:02d}" for n in range(100)] + ["", "5", "5x", "\u06655", "005", "6O"]
_FRACTIONS = ["", ".", ".1", ".123", ".123456789", ".1234567890", ".12a", ".\u0665", "..1", ".1.2"]
_ZONES = ["Z", "z", "", "ZZ", "+02:00", "-04:30", " ", "Z "]


@pytest.mark.parametrize("rotation", [60, 90, 3600, 86_400])
def test_event_time_fast_path_reads_as_the_full_parser(rotation: int) -> None:
    """Once a minute is known to the fast path, every text in that minute, valid or not
    (each seconds text 00-99 and odd ones, with each fraction and zone), reads exactly as a
    fresh full parser reads it; epochs not aligned on the minute (90 s) included."""
    times = EventTime(rotation)
    minute = "2024-05-01T10:59:"
    times.read(f"{minute}00Z")  # the full parser fills the minute's fast-path entry
    for second in _SECOND_TEXTS:
        for fraction in _FRACTIONS:
            for zone in _ZONES:
                raw = f"{minute}{second}{fraction}{zone}"
                assert times.read(raw) == EventTime(rotation).parse(raw), raw


@settings(max_examples=300, deadline=None)
@given(tail=st.text("0123456789.Zz:+- \u0665", max_size=16))
def test_event_time_fast_path_on_any_tail(tail: str) -> None:
    """The same for any text after a known minute."""
    times = EventTime(90)
    times.read("2024-05-01T10:59:00Z")
    raw = f"2024-05-01T10:59:{tail}"
    assert times.read(raw) == EventTime(90).parse(raw)


_KNOWN_MINUTES = [
    "2024-05-01T10:59:00Z",
    "2024-02-29T23:59:00Z",
    "1999-12-31T00:00:00Z",
    "9999-12-31T23:59:00Z",
    "0999-01-01T00:00:00Z",  # a three-digit year in strftime: not on the fast path
    "1000-01-01T00:00:00Z",
]


@settings(max_examples=500, deadline=None)
@given(
    base=st.sampled_from(_KNOWN_MINUTES),
    edits=st.lists(
        st.tuples(st.integers(0, 29), st.sampled_from("0123456789-T:.Zzt +\u0665/")), max_size=3
    ),
    fraction=st.sampled_from(["", ".5", ".123456789", ".1234567890"]),
)
def test_event_time_any_text_near_known_minutes(
    base: str, edits: list[tuple[int, str]], fraction: str
) -> None:
    """Texts one to three characters away from minutes the fast path knows (the date and time
    digits and separators included, where the clock looks) read exactly as a fresh full
    parser reads them."""
    times = EventTime(90)
    for known in _KNOWN_MINUTES:
        times.read(known)
    chars = list(base[:-1] + fraction + "Z")
    for position, char in edits:
        if position < len(chars):
            chars[position] = char
    raw = "".join(chars)
    assert times.read(raw) == EventTime(90).parse(raw), raw


@pytest.mark.parametrize(
    "raw",
    [
        "2024-02-30T10:00:00Z",
        "2023-02-29T10:00:00Z",
        "2024-13-01T10:00:00Z",
        "2024-05-01T24:00:00Z",
        "2024-05-01T10:60:00Z",
        "2024-05-01T10:59:60Z",
        "0000-01-01T00:00:00Z",
        "2024-05-01T10:59:00.Z",
    ],
)
def test_event_time_refuses_impossible_times(raw: str) -> None:
    """Impossible dates and times are unusable, on the fast path's first sight and after
    their neighbours are known."""
    times = EventTime(86_400)
    assert times.read(raw) == (0, "", "")
    for known in _KNOWN_MINUTES:
        times.read(known)
    assert times.read(raw) == (0, "", "")


# ------------------------------------------------------------------ FingerprintTable: contract


def _power_of_two_at_least(n: int) -> int:
    size = 1
    while size < n:
        size *= 2
    return size


KEYS = ["", "a", "b", "ab", "\u6261", "\U0001f600", "81.2.69.1", "user-000001", "é", "x" * 300]


@settings(max_examples=200, deadline=None)
@given(
    capacity=st.sampled_from([2, 3, 4, 5, 8, 16]),
    steps=st.lists(
        st.tuples(st.booleans(), st.sampled_from(KEYS), st.integers(0, 2**64 - 1)), max_size=60
    ),
)
def test_table_keeps_its_contract_on_any_sequence(
    capacity: int, steps: list[tuple[bool, str, int]]
) -> None:
    """Any sequence of look-ups and stores: capacity rounded up to a power of two, never more
    entries than that, the entry stored last always there, and a key found gives the value
    stored for it last."""
    table = FingerprintTable(capacity, KIND_U64)
    assert table.capacity == _power_of_two_at_least(capacity) and table.kind == KIND_U64
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


def test_many_keys_never_answer_for_another() -> None:
    """100,000 keys through a 4,096-entry table: a key found always gives its own value."""
    table = FingerprintTable(4096, KIND_U64)
    rng = random.Random(3)
    stored: dict[str, int] = {}
    for index in range(100_000):
        key = f"cookie-{rng.getrandbits(40):010x}-{index}"
        table[key] = stored[key] = index
        probe = rng.choice(list(stored)[-5000:]) if index % 10 == 0 else key
        found = table.get(probe)
        assert found is None or found == stored[probe]
    assert len(table) <= 4096
    # Most of the last 1,000 are still held (a full table drops its oldest eighth).
    recent = list(stored)[-1000:]
    assert sum(table.get(key) == stored[key] for key in recent) > 800


def test_pseudonyms_round_trip() -> None:
    """Every pseudonym an EpochKey makes comes back identical."""
    key = EpochKey.generate(7, memo_size=0)
    table = FingerprintTable(8192, KIND_PSEUDONYM)
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
def test_pseudonym_tables_refuse_anything_else(value: object) -> None:
    table = FingerprintTable(8, KIND_PSEUDONYM)
    with pytest.raises((ValueError, TypeError)):
        table["k"] = value
    assert len(table) == 0 and table.get("k") is None


@pytest.mark.parametrize(
    "raw", [bytes(range(16)), bytes(16), b"\xff" * 16, bytes(range(1, 17)), bytes(range(2, 18))]
)
def test_pseudonyms_of_known_bytes_round_trip(raw: bytes) -> None:
    """The base64url text of known 16 bytes (each of the four possible last characters
    among them) is held and given back as it was stored."""
    text = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    table = FingerprintTable(8, KIND_PSEUDONYM)
    table["k"] = text
    assert table.get("k") == text


@pytest.mark.parametrize("value", [0, 1, 2**63, 2**64 - 1])
def test_u64_values_round_trip(value: int) -> None:
    table = FingerprintTable(8, KIND_U64)
    table["k"] = value
    assert table.get("k") == value and type(table.get("k")) is int


@pytest.mark.parametrize(
    ("value", "error"), [(-1, OverflowError), (2**64, OverflowError), ("1", TypeError)]
)
def test_u64_tables_refuse_other_values(value: object, error: type[Exception]) -> None:
    table = FingerprintTable(8, KIND_U64)
    with pytest.raises(error):
        table["k"] = value
    assert len(table) == 0


class _Value:
    """A value the table can hold by reference, whose end a weak reference shows."""


def test_object_values_live_as_long_as_their_entries() -> None:
    """A value is released when its entry is replaced, evicted, cleared, or when the table
    goes; held while its entry is."""
    table = FingerprintTable(2, KIND_OBJECT)
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


def test_misuse_is_refused() -> None:
    for args in [(1, KIND_OBJECT), (8, 9), (2**33, KIND_OBJECT)]:
        with pytest.raises(ValueError):
            FingerprintTable(*args)
    table = FingerprintTable(8, KIND_OBJECT)
    for bad_key in (b"bytes", 1):
        with pytest.raises(TypeError):
            table[bad_key]
        with pytest.raises(TypeError):
            _ = bad_key in table
    with pytest.raises(TypeError):
        table[1] = "x"
    with pytest.raises(ValueError):
        table["k"] = None  # None is what get() returns for a miss
    table["k"] = "v"
    with pytest.raises(TypeError):
        del table["k"]
    assert table.get("k") == "v"
    with pytest.raises(KeyError) as caught:
        table["alice@example.com"]
    assert "alice" not in str(caught.value)
    with pytest.raises(TypeError):
        iter(table)  # no way to list the keys


def test_table_get_is_its_dicts() -> None:
    """get() is its dict's own (the chain calls it per event), so a key that is not a str is
    a miss (none can be stored)."""
    table = FingerprintTable(8, KIND_OBJECT)
    table["k"] = "v"
    assert type(table.get) is type({}.get)
    assert table.get(b"bytes") is None and table.get(1) is None and table.get("k") == "v"


def test_repr_shows_no_key() -> None:
    table = FingerprintTable(8, KIND_OBJECT)
    table["alice@example.com"] = "x"
    assert "alice" not in repr(table) and "entries=1" in repr(table)
    assert "alice" not in str(table)


def test_memo_naming_its_values_uses_a_fingerprint_table() -> None:
    """A memo that names its values gets a `FingerprintTable`, whose capacity is max_size
    rounded up to a power of two; a memo without a kind is a plain dict."""
    memo: Memo[str, int] = Memo(len, max_size=1000, values="u64")
    assert isinstance(memo.table, FingerprintTable) and memo.max_size == 1024
    assert [memo["abc"], memo["abc"], memo["de"]] == [3, 3, 2] and memo.misses == 2
    with pytest.raises(TypeError):
        _ = memo.plain_table
    plain: Memo[str, int] = Memo(len, max_size=1000)
    assert plain.plain_table == {} and plain.max_size == 1000
