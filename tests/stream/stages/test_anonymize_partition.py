"""The anonymize stage's per-partition logic (`stream.stages.anonymize.AnonymizePartition`)
without a broker: one chain call per fetch, one message per destination partition (split
under the size limit), every event's raw offset in the source header, counts reconciled."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from anonymizers.chain import Pipeline
from anonymizers.geo import GeoLookup
from anonymizers.geo.bundled import default_database_path
from anonymizers.keys import StaticKeyProvider
from anonymizers.policy import default_policy
from stream.kafka import key_partition
from stream.stages.anonymize import (
    SOURCE_HEADER,
    AnonymizePartition,
    AnonymizeStage,
    AnonymizeTopics,
    parse_source_header,
)

TOPICS = AnonymizeTopics(source="raw", sink="pseudo", deadletter="dead", consent="consent")
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
DAY = 86400


@dataclass(frozen=True)
class Record:
    offset: int
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


class CountingPipeline:
    """The real chain, counting how often the stage calls it."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.calls = 0

    def __call__(self, event: Any) -> Any:
        return self.pipeline(event)

    def process_batch(self, events: list[dict[str, Any]]) -> list[Any]:
        self.calls += 1
        return self.pipeline.process_batch(events)


def chain() -> CountingPipeline:
    path = default_database_path()
    epoch = int(NOW.timestamp()) // DAY
    keys = StaticKeyProvider({epoch: bytes(range(32))}, rotation_seconds=DAY)
    geo = GeoLookup(str(path)) if path is not None else None
    return CountingPipeline(Pipeline.from_policy(default_policy(), keys=keys, geo=geo))


def event(index: int) -> dict[str, Any]:
    """A valid page view of cookie `c<index % 40>`, its index in the page path."""
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "page_view",
        "occurred_at": (NOW + timedelta(seconds=index)).isoformat().replace("+00:00", "Z"),
        "cookie_id": f"cookie-{index % 40}",
        "ip": f"192.0.2.{index % 250 + 1}",
        "page_url": f"https://shop.example/produit/bague-{index}",
        "consent": {"analytics": True},
    }


def run(records: list[Record], *, max_bytes: int = 1024 * 1024) -> tuple[Any, ...]:
    pipeline = chain()
    stage = AnonymizeStage(pipeline=pipeline, partitions=6, max_message_bytes=max_bytes)
    worker = AnonymizePartition(partition=2, stage=stage, topics=TOPICS, max_bytes=max_bytes)
    return worker, stage, pipeline, worker.handle(records)


def test_one_chain_call_and_one_message_per_destination_partition() -> None:
    """300 single-event messages and two 50-event arrays in one fetch: one chain call, at most
    one message per destination partition, every event once, its raw offset in the header."""
    records = [Record(offset, orjson.dumps(event(offset))) for offset in range(300)]
    batches = [[event(300 + 50 * b + i) for i in range(50)] for b in range(2)]
    records += [Record(300 + b, orjson.dumps(batch)) for b, batch in enumerate(batches)]
    worker, stage, pipeline, out = run(records)
    assert pipeline.calls == 1
    sent = [o for o in out if o.topic == "pseudo"]
    assert len({o.partition for o in sent}) == len(sent) <= 6
    index_of = {}
    for message in sent:
        events = orjson.loads(message.value)
        (header,) = [value for name, value in message.headers if name == SOURCE_HEADER]
        raw_partition, offsets = parse_source_header(header) or (None, [])
        assert raw_partition == 2 and len(offsets) == len(events)
        for anonymized, raw_offset in zip(events, offsets, strict=True):
            index = int(anonymized["page_url"].rsplit("-", 1)[1])
            expected_offset = index if index < 300 else 300 + (index - 300) // 50
            assert raw_offset == expected_offset, "the header names the event's own message"
            assert message.partition == key_partition(anonymized["subject"].encode(), 6)
            index_of[index] = raw_offset
    assert sorted(index_of) == list(range(400)), "every event forwarded exactly once"
    assert stage.counters.reconciles() and stage.counters.forwarded == 400
    assert worker.commit_point() == (302, "")


def test_large_outputs_are_split_under_the_limit() -> None:
    """A fetch whose events exceed the message limit for one partition is split in messages
    at most that large, events and their offsets in order."""
    records = [Record(offset, orjson.dumps(event(offset))) for offset in range(400)]
    _, _, _, out = run(records, max_bytes=8 * 1024)
    sent = [o for o in out if o.topic == "pseudo"]
    assert all(len(o.value) <= 8 * 1024 for o in sent)
    assert len(sent) > 6, "split beyond one message per partition"
    total = 0
    for message in sent:
        events = orjson.loads(message.value)
        (header,) = [value for name, value in message.headers if name == SOURCE_HEADER]
        _, offsets = parse_source_header(header) or (None, [])
        assert offsets == sorted(offsets) and len(offsets) == len(events)
        total += len(events)
    assert total == 400


def test_invalid_items_are_dead_lettered_beside_good_ones() -> None:
    """A fetch mixing good messages with invalid ones: the good events forwarded, each invalid
    item dead-lettered with its offset; consumed = forwarded + dead-lettered + dropped."""
    records = [
        Record(0, orjson.dumps(event(0))),
        Record(1, b"{not json"),
        Record(2, orjson.dumps([event(2), 7, event(3)])),
        Record(3, orjson.dumps(event(4))),
    ]
    _, stage, _, out = run(records)
    dead = [orjson.loads(o.value) for o in out if o.topic == "dead"]
    assert sorted((d["source"]["offset"], d["reason"]) for d in dead) == [
        (1, "not_json"),
        (2, "not_object"),
    ]
    forwarded = sum(len(orjson.loads(o.value)) for o in out if o.topic == "pseudo")
    assert forwarded == 4
    assert stage.counters.consumed == 6 and stage.counters.reconciles()


def test_a_split_never_cuts_one_raw_messages_events() -> None:
    """Split under the limit, the events of one 50-event raw message stay in one output
    message per partition, so the aggregate stage never takes a part for a replay."""
    records = [
        Record(offset, orjson.dumps([event(50 * offset + i) for i in range(50)]))
        for offset in range(12)
    ]
    _, _, _, out = run(records, max_bytes=16 * 1024)
    sent = [o for o in out if o.topic == "pseudo"]
    assert len(sent) > 6, "split beyond one message per partition"
    seen: dict[int, set[int]] = {}
    for message in sent:
        (header,) = [value for name, value in message.headers if name == SOURCE_HEADER]
        _, offsets = parse_source_header(header) or (None, [])
        for offset in set(offsets):
            assert offset not in seen.setdefault(message.partition, set()), (
                "one raw message's events split across two messages to one partition"
            )
        seen[message.partition].update(offsets)


def test_replayed_messages_are_counted_apart() -> None:
    """Items of messages carrying `anonstream-replay` are counted as replayed (collectors'
    items = consumed - replayed); the others are not."""
    replay = (("anonstream-replay", b"events.deadletter:0:7"),)
    records = [
        Record(0, orjson.dumps(event(0)), ()),
        Record(1, orjson.dumps([event(1), event(2)]), replay),
        Record(2, b"{not json", replay),
        Record(3, orjson.dumps(event(3)), ()),
    ]
    _, stage, _, _ = run(records)
    assert stage.counters.consumed == 5
    assert stage.counters.replayed == 3
