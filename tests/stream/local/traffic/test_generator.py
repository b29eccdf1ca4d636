"""TrafficGenerator: valid events, planted faults, determinism, shares and ground truth.

Expected values come from the pipeline's own decoder (`anonymizers.intake`), the JSON
schemas, the test geo database and independent recounts (tests/traffic/recount.py), never
from the generator's output.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema_rs
import maxminddb
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import schemas
from anonymizers.intake import REASONS, decode_message, validate_event
from stream.local.traffic import Message, TrafficGenerator
from tests.stream.local.traffic import detectors
from tests.stream.local.traffic.conftest import TEST_NETWORKS
from tests.stream.local.traffic.recount import MAX_BYTES, has_no_identifier, recount, subject_of

ITEMS = 60_000


@pytest.fixture(scope="module")
def run(geo_db: Path) -> tuple[TrafficGenerator, list[Message]]:
    """One seeded run of 60 000 items with the test geo database, and its messages."""
    start = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    generator = TrafficGenerator(seed=11, start=start, rate=500.0, geo_db=geo_db, people=5_000)
    return generator, list(generator.messages(max_items=ITEMS))


@pytest.fixture(scope="module")
def truth(run: tuple[TrafficGenerator, list[Message]]) -> dict[str, Any]:
    """The generator's ground truth of `run`."""
    return run[0].truth()


@pytest.fixture(scope="module")
def counted(run: tuple[TrafficGenerator, list[Message]]) -> Any:
    """`run` recounted from its (topic, key, value) triples alone."""
    return recount((m.topic_kind, m.key, m.value) for m in run[1])


def raw(messages: list[Message]) -> list[Message]:
    return [m for m in messages if m.topic_kind == "raw"]


def test_valid_items_pass_the_raw_schema(run: tuple[TrafficGenerator, list[Message]]) -> None:
    """Every item the generator calls valid passes anonymizers.intake.validate_event."""
    valid = [i for m in raw(run[1]) for i in m.items if i.reason is None]
    assert len(valid) > 0.95 * ITEMS
    assert [validate_event(orjson.loads(i.data)) for i in valid] == [None] * len(valid)


def test_malformed_items_get_exactly_the_planted_reason(
    run: tuple[TrafficGenerator, list[Message]],
) -> None:
    """Decoding each message yields, item by item, the dead-letter reasons the generator
    planted (and the JSON path of planted schema violations); valid items decode intact."""
    for message in raw(run[1]):
        decoded = decode_message(message.value, max_bytes=MAX_BYTES)
        planted = [(i.reason, i.path) for i in message.items if i.reason is not None]
        found = [
            (v.reason, v.path if v.reason == "schema_violation" else None) for v in decoded.invalid
        ]
        assert found == planted
        assert decoded.events == [i.document for i in message.items if i.reason is None]


def test_every_dead_letter_reason_occurs(counted: Any) -> None:
    """All five dead-letter reasons of the schema are exercised in one default run."""
    deadletter_reasons = schemas.load(schemas.DEADLETTER_RECORD_V1)["properties"]["reason"]["enum"]
    assert set(counted.reasons) == set(deadletter_reasons) == set(REASONS)


def test_malformed_items_inside_valid_batches(run: tuple[TrafficGenerator, list[Message]]) -> None:
    """Schema violations and non-objects also travel inside batches with valid events."""
    mixed: Counter[str] = Counter()
    for message in raw(run[1]):
        decoded = decode_message(message.value, max_bytes=MAX_BYTES)
        if decoded.batched and decoded.events:
            mixed.update(v.reason for v in decoded.invalid if v.index is not None)
    assert mixed["schema_violation"] > 0 and mixed["not_object"] > 0


def test_too_large_follows_max_message_bytes(geo_db: Path, start: datetime) -> None:
    """With a smaller limit, too_large messages exceed that limit, and only it."""
    generator = TrafficGenerator(
        seed=3, start=start, geo_db=geo_db, malformed_share=0.3, max_message_bytes=4_096
    )
    sizes = [
        len(m.value)
        for m in generator.messages(max_items=3_000)
        if any(i.reason == "too_large" for i in m.items)
    ]
    assert sizes and all(4_096 < size < 4_096 + 8_192 for size in sizes)


def test_seeded_runs_are_byte_identical(geo_db: Path, start: datetime) -> None:
    """Same seed and start: the same messages, byte for byte; another seed: other ones."""

    def triples(seed: int) -> list[tuple[str, bytes | None, bytes]]:
        generator = TrafficGenerator(seed=seed, start=start, geo_db=geo_db)
        return [(m.topic_kind, m.key, m.value) for m in generator.messages(max_items=5_000)]

    first = triples(5)
    assert triples(5) == first
    assert triples(6) != first


def test_unseeded_runs_differ_and_report_their_seed(start: datetime) -> None:
    """Without a seed each run differs; the seed it drew reproduces it."""
    first = TrafficGenerator(start=start)
    second = TrafficGenerator(start=start)
    values = [m.value for m in first.messages(max_items=500)]
    assert values != [m.value for m in second.messages(max_items=500)]
    replay = TrafficGenerator(seed=first.truth()["generator"]["seed"], start=start)
    assert [m.value for m in replay.messages(max_items=500)] == values


def test_item_count_is_exact(geo_db: Path, start: datetime) -> None:
    """messages(max_items=N) stops after exactly N items (valid + malformed)."""
    for n in (1, 49, 1_234):
        generator = TrafficGenerator(seed=n, start=start, geo_db=geo_db)
        messages = list(generator.messages(max_items=n))
        counted = recount((m.topic_kind, m.key, m.value) for m in messages)
        assert counted.items == n


def test_event_ids_are_unique(counted: Any) -> None:
    """No two events share an event_id."""
    ids = [e["event_id"] for e in counted.events]
    assert len(set(ids)) == len(ids)


def test_truth_equals_recount(truth: dict[str, Any], counted: Any) -> None:
    """Every count of the summary equals the recount from the emitted messages."""
    events = counted.events
    assert truth["messages"] == {"raw": counted.raw_messages, "consent": counted.consent_messages}
    assert truth["items"] == counted.items == ITEMS
    assert truth["events"] == len(events)
    assert truth["events_by_type"] == dict(Counter(e["event_type"] for e in events))
    assert truth["malformed_by_reason"] == {r: counted.reasons[r] for r in REASONS}
    assert truth["events_without_identifiers"] == sum(map(has_no_identifier, events))
    assert truth["consent_records_by_action"] == dict(
        Counter(r["action"] for _, r in counted.records)
    ) | {
        a: 0
        for a in ("opt_out", "opt_in", "erase", "child")
        if a not in {r["action"] for _, r in counted.records}
    }
    assert truth["events_after_consent_record"] == {
        s: counted.after[s] for s in ("child", "erase", "opt_out")
    }
    assert truth["events_with_gpc"] == sum(e.get("gpc") is True for e in events)
    assert truth["events_with_dnt"] == sum(e.get("dnt") is True for e in events)
    assert truth["events_age_under_16"] == sum(e.get("age_under_16") is True for e in events)
    assert truth["events_consent_analytics_false"] == sum(
        e.get("consent", {}).get("analytics") is False for e in events
    )
    assert truth["distinct_subjects"] == len({subject_of(e) for e in events} - {None})
    assert truth["first_occurred_at"] == min(e["occurred_at"] for e in events)
    assert truth["last_occurred_at"] == max(e["occurred_at"] for e in events)
    arrays = {str(size): n for size, n in sorted(counted.array_sizes.items())}
    assert truth["batches"]["array_sizes"] == arrays
    arrays_sent = sum(counted.array_sizes.values())
    assert truth["batches"]["single_messages"] == counted.raw_messages - arrays_sent
    assert truth["batches"]["array_messages"] == arrays_sent


def test_truth_countries_match_the_geo_database(
    geo_db: Path, truth: dict[str, Any], counted: Any
) -> None:
    """Every event's IP lies in a network of the database; events per country looked up
    there equal the summary's events_by_country."""
    countries: Counter[str] = Counter()
    with maxminddb.open_database(str(geo_db)) as reader:
        for event in counted.events:
            address = ipaddress.ip_address(event["ip"])
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                address = address.ipv4_mapped
            countries[_country(reader.get(address))] += 1
    assert truth["events_by_country"] == dict(sorted(countries.items()))
    assert countries.most_common(1)[0][0] == "FR"
    assert set(countries) == set(TEST_NETWORKS) - {"JP"}  # JP is not a preferred country


def _country(record: Any) -> str:
    assert isinstance(record, dict), record
    return str(record["country"]["iso_code"])


def test_shares_within_tolerance(counted: Any) -> None:
    """Default shares: ~1% malformed items, ~10% events without identifier, batches 1..50
    (30% single objects, arrays of mean ~25.5), ~0.2% late events."""
    malformed = sum(counted.reasons.values()) / counted.items
    assert 0.007 <= malformed <= 0.013
    no_id = sum(map(has_no_identifier, counted.events)) / len(counted.events)
    assert 0.07 <= no_id <= 0.13
    sizes = counted.array_sizes
    batches = {size: n for size, n in sizes.items() if size > 0}  # 0: the empty-batch fault
    assert set(batches) == set(range(1, 51))
    mean = sum(size * n for size, n in batches.items()) / sum(batches.values())
    assert 24.0 <= mean <= 27.0  # uniform 1..50: 25.5
    single = counted.single_objects / (counted.single_objects + sum(batches.values()))
    assert 0.26 <= single <= 0.34


@pytest.mark.parametrize(("no_id_share", "malformed_share"), [(0.05, 0.0), (0.2, 0.05)])
def test_shares_follow_parameters(
    geo_db: Path, start: datetime, no_id_share: float, malformed_share: float
) -> None:
    """The no-id and malformed shares follow their parameters (not a built-in constant)."""
    generator = TrafficGenerator(
        seed=8, start=start, geo_db=geo_db, no_id_share=no_id_share, malformed_share=malformed_share
    )
    counted = recount((m.topic_kind, m.key, m.value) for m in generator.messages(max_items=30_000))
    no_id = sum(map(has_no_identifier, counted.events)) / len(counted.events)
    assert abs(no_id - no_id_share) <= 0.03
    assert abs(sum(counted.reasons.values()) / counted.items - malformed_share) <= 0.005


def test_consent_records_follow_the_schema(counted: Any) -> None:
    """Consent records validate against consent-record.v1 and are keyed "type:id"."""
    validator = jsonschema_rs.validator_for(
        schemas.load(schemas.CONSENT_RECORD_V1), validate_formats=True
    )
    assert counted.records
    for key, record in counted.records:
        validator.validate(record)
        assert key == f"{record['subject_type']}:{record['subject_id']}".encode()


def test_consent_enforcement_is_observable(geo_db: Path, start: datetime) -> None:
    """People keep browsing after opting out, being erased or flagged as children; some
    opt back in after an opt-out of the same key."""
    generator = TrafficGenerator(seed=4, start=start, geo_db=geo_db, optout_share=0.2)
    counted = recount((m.topic_kind, m.key, m.value) for m in generator.messages(max_items=20_000))
    assert all(counted.after[state] > 0 for state in ("opt_out", "erase", "child"))
    history: dict[bytes | None, list[str]] = {}
    for key, record in counted.records:
        history.setdefault(key, []).append(record["action"])
    opt_ins = [actions for actions in history.values() if "opt_in" in actions]
    assert opt_ins
    assert all(a[a.index("opt_in") - 1] == "opt_out" for a in opt_ins if a.index("opt_in") > 0)
    assert all(a[0] != "opt_in" for a in history.values())


def test_signals_and_identifiers_are_present(counted: Any) -> None:
    """Web and app identifiers, gpc/dnt/under-16 flags and refused analytics all occur."""
    events = counted.events
    for name in ("user_id", "cookie_id", "device_id", "ad_id", "mac", "imei"):
        assert any(name in e for e in events), name
    assert 0 < sum(e.get("gpc") is True for e in events) < 0.2 * len(events)
    assert 0 < sum(e.get("dnt") is True for e in events) < 0.3 * len(events)
    assert 0 < sum(e.get("age_under_16") is True for e in events) < 0.1 * len(events)
    refused = sum(e.get("consent", {}).get("analytics") is False for e in events)
    assert 0 < refused < 0.3 * len(events)
    languages = Counter(e["browser_language"] for e in events)
    assert languages.most_common(1)[0][0] == "fr-FR"
    assert {"nl-BE", "de-CH", "fr-CA"} <= set(languages)


def test_time_on_page_is_heavy_tailed(counted: Any) -> None:
    """Times on page: median tens of seconds, some zero, some absurd (>= 10^9 ms)."""
    times = sorted(e["time_on_page_ms"] for e in counted.events if "time_on_page_ms" in e)
    median = times[len(times) // 2]
    assert 5_000 < median < 120_000
    assert times[0] == 0 and times[-1] >= 10**9


def test_timestamps_advance_at_the_rate(
    run: tuple[TrafficGenerator, list[Message]], counted: Any
) -> None:
    """Events start at `start` (late ones excepted) and span items / rate seconds."""
    generator = run[0]
    start = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    stamps = [datetime.fromisoformat(e["occurred_at"]) for e in counted.events]
    assert all(s.tzinfo is not None and s.utcoffset() == timedelta(0) for s in stamps)
    assert all(
        e["occurred_at"].endswith("Z") and len(e["occurred_at"]) == 24 for e in counted.events
    )
    late = [s for s in stamps if s < start]
    assert 0 < len(late) < 0.005 * len(stamps)
    end = start + timedelta(seconds=ITEMS / generator.rate)
    assert end - timedelta(seconds=2) <= max(stamps) <= end + timedelta(seconds=1)


def test_realtime_timestamps_follow_the_clock(geo_db: Path) -> None:
    """In realtime mode events are stamped with the wall clock (minus a small jitter)."""
    before = datetime.now(UTC)
    generator = TrafficGenerator(seed=2, realtime=True, geo_db=geo_db, late_share=0.0)
    stamps = [
        datetime.fromisoformat(i.document["occurred_at"])
        for m in generator.messages(max_items=500)
        for i in m.items
        if m.topic_kind == "raw" and i.reason is None and i.document is not None
    ]
    after = datetime.now(UTC)
    assert all(before - timedelta(seconds=1) <= s <= after for s in stamps)


def test_pages_and_products_follow_zipf(counted: Any) -> None:
    """Product pages are Zipf-popular: the top product gets far more views than the median."""
    views = Counter(
        e["page_url"].split("?")[0].split("#")[0]
        for e in counted.events
        if e["event_type"] == "page_view" and "/produit/" in e["page_url"]
    )
    ranked = [n for _, n in views.most_common()]
    assert len(ranked) > 200
    assert ranked[0] > 10 * ranked[len(ranked) // 2]
    assert all(url.startswith("https://www.bijoux-example.fr/produit/") for url in views)


def test_search_terms_carry_exactly_the_tagged_pii(
    run: tuple[TrafficGenerator, list[Message]],
) -> None:
    """Search terms hold an e-mail, phone, card (Luhn), IBAN (mod 97), IP or digit run
    exactly when the generator tagged them so; every kind occurs."""
    seen: Counter[str] = Counter()
    for message in raw(run[1]):
        for item in message.items:
            event = item.document
            if item.reason is not None or event is None or "search_terms" not in event:
                continue
            tagged = {t.split(":")[1] for t in item.tags if t.startswith("search_terms:")}
            assert detectors.pii_kinds(event["search_terms"]) == tagged, event["search_terms"]
            seen.update(tagged)
    assert set(seen) == set(detectors.KINDS)


def test_url_tags_are_truthful(run: tuple[TrafficGenerator, list[Message]]) -> None:
    """Each PII tag of a URL field names something really in it; e-mail tags are complete."""
    for message in raw(run[1]):
        for item in message.items:
            event = item.document
            if item.reason is not None or event is None:
                continue
            for name in ("page_url", "referrer_url", "link_url"):
                tagged = {t.split(":")[1] for t in item.tags if t.startswith(f"{name}:")}
                found = detectors.url_kinds(event.get(name, ""))
                assert tagged <= found, (name, event.get(name), tagged)
                assert ("email" in found) == ("email" in tagged), event.get(name)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(min_value=0, max_value=2**40),
    malformed_share=st.floats(min_value=0.0, max_value=1.0),
    no_id_share=st.floats(min_value=0.0, max_value=1.0),
    optout_share=st.floats(min_value=0.0, max_value=1.0),
    items=st.integers(min_value=1, max_value=400),
)
def test_any_parameters_decode_as_planted(
    seed: int, malformed_share: float, no_id_share: float, optout_share: float, items: int
) -> None:
    """For any seed and shares, the truth equals a recount of the messages."""
    generator = TrafficGenerator(
        seed=seed,
        start=datetime(2025, 1, 1, tzinfo=UTC),
        malformed_share=malformed_share,
        no_id_share=no_id_share,
        optout_share=optout_share,
        people=50,
    )
    messages = list(generator.messages(max_items=items))
    counted = recount((m.topic_kind, m.key, m.value) for m in messages)
    truth = generator.truth()
    assert counted.items == truth["items"] == items
    assert dict(counted.reasons) == {r: n for r, n in truth["malformed_by_reason"].items() if n}
    assert len(counted.events) == truth["events"]
    assert counted.consent_messages == truth["messages"]["consent"]
    assert {s: counted.after[s] for s in ("child", "erase", "opt_out")} == truth[
        "events_after_consent_record"
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 0}, "rate must be > 0"),
        ({"no_id_share": 1.5}, "no_id_share must be a share"),
        ({"people": 0}, "people must be >= 1"),
        ({"start": datetime(2025, 1, 1)}, "start must carry a time zone"),
    ],
    ids=["rate", "share", "people", "naive-start"],
)
def test_invalid_parameters_are_named(kwargs: dict[str, Any], message: str) -> None:
    """A bad parameter raises ValueError naming it and the value given."""
    with pytest.raises(ValueError, match=message):
        TrafficGenerator(**kwargs)
