"""`anonstream deadletter inspect|replay` on the real broker: counts by reason, masked
examples, and a replay after a fix whose counts reconcile (each record replayed once)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from stream.settings import Settings
from stream.topics import create_topics, topic_specs
from tests.support.cli import run_cli
from tests.support.kafka import produce, read_all
from tests.support.workers import WorkerFactory

pytestmark = pytest.mark.kafka

CONSUMED = "anonstream_events_consumed_total"
REPLAYED = "anonstream_events_replayed_total"
FORWARDED = "anonstream_events_forwarded_total"
TOO_LARGE = 'anonstream_events_deadlettered_total{reason="too_large"}'
SMALL_LIMIT = 2048  # the "bug": collectors now send events larger than this
SECRETS = ("alice@example.com", "SECRET-COOKIE-123", "P" * 50, "203.0.113.77")


def event(index: int, now: datetime, **extra: Any) -> dict[str, Any]:
    """A valid raw event (extra fields beyond the schema are dropped, not refused)."""
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "page_view",
        "occurred_at": (now + timedelta(milliseconds=index)).isoformat().replace("+00:00", "Z"),
        "cookie_id": f"cookie-{index}",
        "page_url": f"https://shop.example/p/{index}",
        "consent": {"analytics": True},
        **extra,
    }


def counts(output: str) -> dict[str, int]:
    """The `reason count` table of `deadletter inspect`."""
    table: dict[str, int] = {}
    for line in output.split("\n\n")[0].splitlines()[1:]:
        name, value = line.split()
        table[name] = int(value)
    return table


def test_inspect_counts_by_reason_and_masks_every_value(
    settings: Settings, workers: WorkerFactory
) -> None:
    """Counts per reason equal what was sent; examples show structure, never a value;
    --reason filters."""
    settings = settings.model_copy(update={"max_message_bytes": SMALL_LIMIT})
    create_topics(settings, topic_specs(settings))
    worker = workers.start(settings, "anonymize")
    now = datetime.now(UTC)
    big = [orjson.dumps(event(i, now, padding="P" * 3000)) for i in range(4)]
    broken = [b'{"email": "alice@example.com", ' for _ in range(2)]
    violation = [
        orjson.dumps(event(9, now, cookie_id="SECRET-COOKIE-123", ip="203.0.113.77")).replace(
            b'"page_view"', b'"purchase"'
        )
    ]
    produce(settings, settings.topic_raw, [*big, *broken, *violation])
    worker.wait_metric(CONSUMED, at_least=7)

    result = run_cli(settings, "deadletter", "inspect", "--examples", "5")
    assert result.exit_code == 0, result.output
    assert counts(result.output) == {
        "too_large": 4,
        "not_json": 2,
        "schema_violation": 1,
        "total": 7,
    }
    for secret in SECRETS:
        assert secret not in result.output
    assert '"cookie_id":"<string, 17 chars>"' in result.output
    assert '"<other field 1>":"<string, 3000 chars>"' in result.output
    assert "<31 bytes, not JSON>" in result.output

    only = run_cli(settings, "deadletter", "inspect", "--reason", "not_json")
    assert only.exit_code == 0, only.output
    assert counts(only.output) == {"not_json": 2, "total": 2}
    later = run_cli(settings, "deadletter", "inspect", "--since", "2099-01-01T00:00:00Z")
    assert counts(later.output) == {"total": 0}


def test_replay_after_a_fix_reconciles_and_replays_each_record_once(
    settings: Settings, workers: WorkerFactory
) -> None:
    """Messages over the size limit are dead-lettered; after the limit is raised, replay
    sends each back once (a second run sends nothing), every event is forwarded exactly
    once, and events from collectors = consumed - replayed = forwarded + still dead."""
    settings = settings.model_copy(update={"max_message_bytes": SMALL_LIMIT})
    create_topics(settings, topic_specs(settings))
    now = datetime.now(UTC)
    small = [orjson.dumps(event(i, now)) for i in range(20)]
    big = [orjson.dumps(event(100 + i, now, padding="P" * 3000)) for i in range(5)]
    junk = [b"<html>", b"<html>"]
    sent = len(small) + len(big) + len(junk)
    before = workers.start(settings, "anonymize")
    produce(settings, settings.topic_raw, [*small, *big, *junk])
    first = before.wait_metric(CONSUMED, at_least=sent)
    assert first[FORWARDED] == len(small) and first[TOO_LARGE] == len(big)

    dry = run_cli(settings, "deadletter", "replay", "--reason", "too_large", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert f"would replay {len(big)} too_large" in dry.output
    assert len(read_all(settings, settings.topic_raw, idle_s=1.0)) == sent, "dry run sent"

    before.stop()
    fixed = settings.model_copy(update={"max_message_bytes": 262_144})
    after = workers.start(fixed, "anonymize")
    replay = run_cli(fixed, "deadletter", "replay", "--reason", "too_large", "--since", "1h")
    assert replay.exit_code == 0, replay.output
    assert f"replayed {len(big)} too_large" in replay.output
    again = run_cli(fixed, "deadletter", "replay", "--reason", "too_large")
    assert "replayed 0 too_large" in again.output
    assert f"already replayed {len(big)}" in again.output
    second = after.wait_metric(CONSUMED, at_least=len(big))

    raw = read_all(settings, settings.topic_raw, idle_s=1.0)
    replayed = [r for r in raw if any(k == "anonstream-replay" for k, _ in r.headers)]
    assert sorted(r.value for r in replayed) == sorted(big)
    forwarded = read_all(settings, settings.topic_pseudonymized, idle_s=1.0)
    events_out = sum(len(orjson.loads(r.value)) for r in forwarded)
    assert events_out == len(small) + len(big), "every event forwarded exactly once"
    consumed = first[CONSUMED] + second[CONSUMED]
    dead = first[TOO_LARGE] + first.get(
        'anonstream_events_deadlettered_total{reason="not_json"}', 0
    )
    assert consumed - len(replayed) == sent
    # The stage counts the replayed items itself: collectors' items = consumed - replayed.
    counted = first.get(REPLAYED, 0.0) + second.get(REPLAYED, 0.0)
    assert counted == len(replayed) and consumed - counted == sent
    assert first[FORWARDED] + second[FORWARDED] + (dead - len(replayed)) == sent
