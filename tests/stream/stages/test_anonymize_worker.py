"""The anonymize worker on the real broker: validation, dead-letter, nothing lost or doubled."""

from __future__ import annotations

import base64
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from stream.settings import Settings
from stream.topics import create_topics, topic_specs
from tests.support.http import get, metric_values
from tests.support.kafka import produce, read_topic
from tests.support.workers import WorkerFactory, wait_for

pytestmark = pytest.mark.kafka


def valid_event(index: int, now: datetime) -> dict[str, Any]:
    """A valid raw event whose page path identifies it downstream."""
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "page_view",
        "occurred_at": (now + timedelta(milliseconds=index)).isoformat().replace("+00:00", "Z"),
        "cookie_id": f"cookie-{index % 97}",
        "ip": f"192.0.2.{index % 250 + 1}",
        "page_url": f"https://shop.example/produit/bague-{index}?gclid=zzz#top",
        "consent": {"analytics": True},
    }


def invalid_items(now: datetime, max_bytes: int) -> list[tuple[bytes, str]]:
    """(message bytes, the reason it must be dead-lettered with), one or more per reason."""
    good = valid_event(0, now)
    too_large = orjson.dumps({**good, "padding": "x" * (max_bytes + 10)})
    return [
        (b'\xff\xfe{"event_id": 1}', "not_utf8"),
        (b'{"event_id": "a", ', "not_json"),
        (b"<html>", "not_json"),
        (b"42", "not_object"),
        (b'"a string"', "not_object"),
        (b"[]", "not_object"),
        (too_large, "too_large"),
        (orjson.dumps({k: v for k, v in good.items() if k != "event_id"}), "schema_violation"),
        (orjson.dumps({**good, "event_type": "purchase"}), "schema_violation"),
        (orjson.dumps({**good, "occurred_at": "yesterday"}), "schema_violation"),
        (orjson.dumps({**good, "occurred_at": "2026-11-25T10:00:00"}), "schema_violation"),
        (orjson.dumps({**good, "consent": {"analytics": "yes"}}), "schema_violation"),
        (orjson.dumps({**good, "time_on_page_ms": -5}), "schema_violation"),
    ]


def test_valid_events_forwarded_once_invalid_dead_lettered(
    settings: Settings, workers: WorkerFactory
) -> None:
    """1,000 valid events (half in 50-event batches) plus invalid input of every reason code:
    every valid event arrives downstream exactly once, every invalid item is dead-lettered
    with its reason and source, and consumed = forwarded + dead-lettered.
    """
    create_topics(settings, topic_specs(settings))
    worker = workers.start(settings, "anonymize")
    now = datetime.now(UTC).replace(microsecond=0)
    events = [valid_event(i, now) for i in range(1000)]

    # Half the events alone, half in ten 50-event batches; one batch also carries bad items.
    messages: list[bytes] = [orjson.dumps(e) for e in events[:500]]
    batches = [events[500 + 50 * b : 550 + 50 * b] for b in range(10)]
    mixed_batch = [*batches[0][:25], 7, {"event_type": "page_view"}, *batches[0][25:]]
    messages.append(orjson.dumps(mixed_batch))
    messages.extend(orjson.dumps(batch) for batch in batches[1:])
    invalid = invalid_items(now, settings.max_message_bytes)
    messages.extend(value for value, _ in invalid)

    metadata = produce(settings, settings.topic_raw, messages)
    expected_dead: dict[tuple[int, int, int | None], str] = {}
    batch_meta = metadata[500]
    expected_dead[(batch_meta.partition, batch_meta.offset, 25)] = "not_object"
    expected_dead[(batch_meta.partition, batch_meta.offset, 26)] = "schema_violation"
    for meta, (_, reason) in zip(metadata[-len(invalid) :], invalid, strict=True):
        expected_dead[(meta.partition, meta.offset, None)] = reason

    forwarded = read_topic(
        settings,
        settings.topic_pseudonymized,
        until=lambda records: sum(len(orjson.loads(r.value)) for r in records) >= 1000,
        timeout_s=120,
        settle_s=3.0,
        check=worker.ensure_alive,
    )
    paths = Counter(
        event["page_url"] for record in forwarded for event in orjson.loads(record.value)
    )
    expected_paths = {f"https://shop.example/produit/bague-{i}" for i in range(1000)}
    assert set(paths) == expected_paths, "every valid event downstream, query and fragment gone"
    assert max(paths.values()) == 1, "no event forwarded twice"
    raw_offsets = {(m.partition, m.offset) for m in metadata}
    for record in forwarded:
        (source,) = [value for name, value in record.headers if name == "anonstream-src"]
        raw_partition, _, runs = source.decode().partition(":")
        named = []  # "<offset>" or "<offset>x<events>", one run per raw message
        for run in runs.split(","):
            offset, _, times = run.partition("x")
            named.extend([int(offset)] * int(times or 1))
        assert len(named) == len(orjson.loads(record.value)), "one raw offset per event"
        for offset in named:
            assert (int(raw_partition), offset) in raw_offsets, "source header names the input"

    dead = read_topic(
        settings,
        settings.topic_deadletter,
        until=lambda records: len(records) >= len(expected_dead),
        timeout_s=60,
        settle_s=2.0,
        check=worker.ensure_alive,
    )
    found: dict[tuple[int, int, int | None], str] = {}
    for record in dead:
        body = orjson.loads(record.value)
        source = body["source"]
        assert source["topic"] == settings.topic_raw
        found[(source["partition"], source["offset"], source["index"])] = body["reason"]
        assert base64.b64decode(body["original_b64"]), "original bytes kept"
        if body["reason"] == "schema_violation":
            assert body["path"].startswith("$") and body["rule"]
    assert found == expected_dead

    # The worker's own counters reconcile with what was sent.
    items_sent = 1000 + 2 + len(invalid)
    _, text = wait_for(
        lambda: (lambda r: r if r[0] == 200 else None)(
            get(f"http://127.0.0.1:{worker.web_port}/metrics")
        ),
        timeout_s=30,
        what="/metrics",
    )
    values = metric_values(text)
    consumed = values["anonstream_events_consumed_total"]
    dead_total = sum(
        v for k, v in values.items() if k.startswith("anonstream_events_deadlettered_total")
    )
    dropped_total = sum(
        v for k, v in values.items() if k.startswith("anonstream_events_dropped_total")
    )
    assert consumed == items_sent
    assert values["anonstream_events_forwarded_total"] == 1000
    assert dead_total == len(expected_dead)
    assert dropped_total == 0
    assert worker.alive(), worker.output()[-3000:]
