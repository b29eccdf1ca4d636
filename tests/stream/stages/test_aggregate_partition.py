"""The aggregate stage's per-partition logic (`stream.stages.aggregate.AggregatePartition`)
without a broker: duplicates of an anonymize replay dropped, partials routed to their metric's
partition, progress to every partition behind a barrier, commit point and metadata."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from anonymizers.stats.config import AggregationSpec, MetricSpec, ReleaseSpec
from stream.stages.aggregate import AggregatePartition, metric_partition
from stream.stages.anonymize import SOURCE_HEADER, parse_source_header, source_header

METRICS = (
    MetricSpec("page_views", ("page_view",), ("page_url",), "count"),
    MetricSpec("visitors", ("page_view",), ("country",), "distinct_subjects"),
)
CONFIG = AggregationSpec(windows=(60,), allowed_lateness=0, idle_timeout=60, metrics=METRICS)
RELEASE = ReleaseSpec(k_min_subjects=2)


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


def message(offset: int, raw_offset: int, second: int, subjects: range) -> Record:
    events = [
        {
            "event_type": "page_view",
            "occurred_at": f"2024-05-01T12:{second // 60:02d}:{second % 60:02d}Z",
            "subject": f"s{s}",
            "page_url": "https://shop.example/a",
            "country": "FR",
        }
        for s in subjects
    ]
    return Record(0, offset, orjson.dumps(events), ((SOURCE_HEADER, source_header(3, raw_offset)),))


def stage() -> AggregatePartition:
    return AggregatePartition(
        partition=0,
        aggregation=CONFIG,
        release=RELEASE,
        partials_topic="partials",
        partials_partitions=4,
    )


def test_replayed_duplicates_count_once_and_outputs_are_routed() -> None:
    """A message whose raw source offset was already taken (an anonymize replay) is dropped;
    the closed minute's partials go to their metric's partition, its progress record to all
    four, the first behind a barrier; the commit carries the published watermark."""
    worker = stage()
    first = [message(0, 10, 5, range(3)), message(1, 11, 20, range(3, 5))]
    assert worker.handle(first)[0].value  # the first close step: progress only
    replay = [message(2, 11, 20, range(3, 5)), message(3, 12, 70, range(1))]
    out = worker.handle(replay)
    assert worker.counters["duplicate_messages"] == 1
    partials = [orjson.loads(o.value) for o in out if o.key and o.key.startswith(b"partial|")]
    assert {(p["metric"], p["subjects"], p.get("count")) for p in partials} == {
        ("page_views", 5, 5),
        ("visitors", 5, None),
    }
    for o in out:
        if o.key and o.key.startswith(b"partial|"):
            metric = orjson.loads(o.value)["metric"]
            assert o.partition == metric_partition(metric, 4)
    progress = [o for o in out if o.key and o.key.startswith(b"progress|")]
    assert [o.partition for o in progress] == [0, 1, 2, 3]
    assert [o.barrier for o in progress] == [True, False, False, False]
    assert worker.commit_point() == (3, "2024-05-01T12:01:10Z")


def test_batching_of_a_fetch_does_not_change_the_partials() -> None:
    """The records of a fetch are aggregated in one engine call: the same partials as one
    call per record."""
    records = [message(i, i, 7 * i, range(i % 4, i % 4 + 3)) for i in range(40)]
    together = stage().handle(records)
    one_by_one = stage()
    separately = [o for record in records for o in one_by_one.handle([record])]

    def partial_values(out: list) -> dict[bytes, bytes]:  # type: ignore[type-arg]
        return {o.key: o.value for o in out if o.key.startswith(b"partial|")}

    assert partial_values(together) == partial_values(separately)
    assert len(partial_values(together)) > 5


def fetch_message(offset: int, raw_offsets: list[int], second: int) -> Record:
    """A fetch-batched anonymize output message: one event per raw offset, subject s<offset>."""
    events = [
        {
            "event_type": "page_view",
            "occurred_at": f"2024-05-01T12:00:{second:02d}Z",
            "subject": f"s{raw}",
            "page_url": "https://shop.example/a",
            "country": "FR",
        }
        for raw in raw_offsets
    ]
    header = source_header(3, raw_offsets)
    return Record(0, offset, orjson.dumps(events), ((SOURCE_HEADER, header),))


def test_a_replay_batched_differently_adds_only_the_new_events() -> None:
    """An anonymize worker that crashed after sending raw offsets 10-12 replays 10-14 in one
    message: only 13 and 14 are new; the minute holds 5 events of 5 subjects, not 8."""
    worker = stage()
    worker.handle([fetch_message(0, [10, 11, 12], 5)])
    worker.handle([fetch_message(1, [10, 11, 12, 13, 14], 6)])
    assert worker.counters["duplicate_events"] == 3
    out = worker.handle([message(2, 15, 70, range(1))])  # the next minute closes the first
    partials = [orjson.loads(o.value) for o in out if o.key and o.key.startswith(b"partial|")]
    assert {(p["metric"], p["subjects"], p.get("count")) for p in partials} == {
        ("page_views", 5, 5),
        ("visitors", 5, None),
    }


def test_source_header_names_each_events_raw_offset() -> None:
    """The header lists every event's raw offset, runs of one offset written once."""
    assert source_header(2, [7, 7, 7, 9, 12, 12]) == b"2:7x3,9,12x2"
    assert source_header(2, 7) == b"2:7"
    assert parse_source_header(b"2:7x3,9,12x2") == (2, [7, 7, 7, 9, 12, 12])
    assert parse_source_header(b"2:7") == (2, [7])
    for bad in (b"2", b"x:1", b"2:", b"2:7x", b"2:a,3", b"2:1x2x3"):
        assert parse_source_header(bad) is None, bad
