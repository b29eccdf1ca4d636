"""One raw message mixing good and poisonous events, on the real broker: the good events are
forwarded, each poisonous one is dead-lettered or dropped with its reason, the worker lives
on and its counters reconcile (PRIVACY.md guarantee 11; issue 18, class 1)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import orjson
import pytest

from stream.settings import Settings
from stream.topics import create_topics, topic_specs
from tests.support.hostile import good_event, hostile_batch
from tests.support.kafka import produce, read_topic
from tests.support.workers import WorkerFactory

pytestmark = pytest.mark.kafka


def metric(values: dict[str, float], name: str, reason: str | None = None) -> float:
    """One sample of the worker's /metrics (0 when absent)."""
    key = f'{name}{{reason="{reason}"}}' if reason is not None else name
    return values.get(key, 0.0)


def test_hostile_batch_costs_no_good_event(settings: Settings, workers: WorkerFactory) -> None:
    """A batch of good events (some with extreme valid values: a 6to4 address, a huge time
    on page, control characters, a zone offset, the IPv6 loopback) interleaved with poisonous items
    (times out of UTC's range, times with no key, malformed fields, non-objects): every good
    event is forwarded once, every poisonous item is dead-lettered with its reason and rule
    or dropped with its reason, a later message is still processed, and consumed =
    forwarded + dead-lettered + dropped on the worker's own counters."""
    create_topics(settings, topic_specs(settings))
    worker = workers.start(settings, "anonymize")
    worker.wait_ready()
    now = datetime.now(UTC).replace(microsecond=0)
    batch = hostile_batch(now)
    mixed, goods = batch.items, batch.goods
    after = good_event("after", now)

    meta, _ = produce(settings, settings.topic_raw, [orjson.dumps(mixed), orjson.dumps(after)])

    expected_paths = {event["page_url"] for event in [*goods, after]}
    forwarded = read_topic(
        settings,
        settings.topic_pseudonymized,
        until=lambda records: (
            expected_paths <= {e["page_url"] for r in records for e in orjson.loads(r.value)}
        ),
        timeout_s=90,
        settle_s=3.0,
        check=worker.ensure_alive,
    )
    paths = Counter(e["page_url"] for r in forwarded for e in orjson.loads(r.value))
    assert set(paths) == expected_paths and max(paths.values()) == 1

    dead_expected = batch.dead_letters()
    dead = read_topic(
        settings,
        settings.topic_deadletter,
        until=lambda records: len(records) >= len(dead_expected),
        timeout_s=60,
        settle_s=2.0,
        check=worker.ensure_alive,
    )
    found = {}
    for record in dead:
        body = orjson.loads(record.value)
        assert (body["source"]["partition"], body["source"]["offset"]) == (
            meta.partition,
            meta.offset,
        )
        found[body["source"]["index"]] = (body["reason"], body["rule"])
    assert found == dead_expected

    consumed = len(mixed) + 1
    values = worker.wait_metric("anonstream_events_consumed_total", at_least=consumed)
    assert metric(values, "anonstream_events_consumed_total") == consumed
    assert metric(values, "anonstream_events_forwarded_total") == len(goods) + 1
    dropped_expected = batch.drops()
    dead_by_reason = Counter(reason for reason, _ in dead_expected.values())
    for reason, count in dropped_expected.items():
        assert metric(values, "anonstream_events_dropped_total", reason) == count, reason
    for reason, count in dead_by_reason.items():
        assert metric(values, "anonstream_events_deadlettered_total", reason) == count, reason
    dropped = sum(v for k, v in values.items() if k.startswith("anonstream_events_dropped_total"))
    dead_total = sum(
        v for k, v in values.items() if k.startswith("anonstream_events_deadlettered_total")
    )
    assert dropped == sum(dropped_expected.values())
    assert consumed == len(goods) + 1 + dead_total + dropped
    assert worker.alive(), worker.output()[-3000:]
    log = worker.output()
    for event in [*goods, after]:
        assert event["cookie_id"] not in log, "no payload in the worker's log"
