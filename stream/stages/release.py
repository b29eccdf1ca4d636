"""The release stage's per-partition work: stats.partials -> stats.aggregates, once per key.

Each partition of `stats.partials` carries every partial of its metrics
(`stream.stages.aggregate.metric_partition`) and every progress record. One `ReleasePartition` per
assigned partition wraps a pure `anonymizers.stats.release.ReleaseEngine` for those metrics.

Release once, after any crash: before its first record, the partition reads back the keys
its metrics already have on `stats.aggregates` (records published since a horizon that
covers every undecided window) and marks them published; the engine recomputes the same
decisions on replay (they depend on exact values only) and draws noise and returns records
only for keys never published. Commit point: the engine's safe offset on this partition,
with its `checkpoint()` (every window ending before it is decided) as commit metadata,
passed back as `resume_floor` on restart.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from anonymizers.stats.config import AggregationConfig, ReleaseConfig
from anonymizers.stats.release import ReleaseEngine
from stream import kafka
from stream.settings import Settings
from stream.stages.aggregate import metric_partition
from stream.stages.commit_loop import Outgoing


def metrics_of(partition: int, *, aggregation: AggregationConfig, partitions: int) -> list[str]:
    """Names of the metrics whose partials go to `stats.partials` partition `partition`."""
    return [
        m.name for m in aggregation.metrics if metric_partition(m.name, partitions) == partition
    ]


class ReleasePartition:
    """Stage logic of one partition of stats.partials (see module doc)."""

    def __init__(
        self,
        *,
        partition: int,
        aggregation: AggregationConfig,
        release: ReleaseConfig,
        sources: int,
        partials_partitions: int,
        policy_version: str,
        aggregates_topic: str,
        resume_floor: str | None = None,
        published: Iterable[str] = (),
        counters: Counter[str] | None = None,
    ) -> None:
        self.partition = partition
        self.metrics = metrics_of(
            partition, aggregation=aggregation, partitions=partials_partitions
        )
        self.engine = ReleaseEngine(
            aggregation,
            release,
            partitions=sources,
            policy_version=policy_version,
            metrics=self.metrics,
            resume_floor=resume_floor,
        )
        self.engine.mark_published(published)
        self._topic = aggregates_topic
        self.counters = counters if counters is not None else Counter()

    def handle(self, records: Sequence[Any]) -> list[Outgoing]:
        for record in records:
            try:
                value = orjson.loads(record.value)
            except (orjson.JSONDecodeError, TypeError):
                self.counters["malformed_partials"] += 1
                continue
            if not isinstance(value, dict):
                self.counters["malformed_partials"] += 1
                continue
            self.engine.add(value, source=record.partition, offset=record.offset)
        return self._released()

    def tick(self, now_s: float) -> list[Outgoing]:
        return self._released()

    def commit_point(self) -> tuple[int, str] | None:
        offset = self.engine.safe_offsets().get(self.partition)
        if offset is None:
            return None
        return offset, self.engine.checkpoint() or ""

    def _released(self) -> list[Outgoing]:
        out = []
        for record in self.engine.release_ready():
            out.append(Outgoing(self._topic, record.key.encode(), orjson.dumps(record.value)))
        self.counters["released"] += len(out)
        return out


async def published_keys(
    settings: Settings, *, metrics: Iterable[str], horizon_s: float
) -> set[str]:
    """Keys of `metrics` on stats.aggregates published in the last `horizon_s` seconds."""
    from aiokafka import TopicPartition

    wanted = set(metrics)
    topic = settings.topic_aggregates
    consumer = kafka.async_consumer(settings)
    await consumer.start()
    keys: set[str] = set()
    try:
        tps = [TopicPartition(topic, p) for p in await kafka.topic_partitions(settings, topic)]
        consumer.assign(tps)
        since_ms = int((time.time() - horizon_s) * 1000)
        starts = await consumer.offsets_for_times(dict.fromkeys(tps, since_ms))
        ends = await consumer.end_offsets(tps)
        remaining = {}
        for tp in tps:
            start = starts.get(tp)
            if start is None:  # nothing that recent
                continue
            consumer.seek(tp, start.offset)
            if start.offset < ends[tp]:
                remaining[tp] = ends[tp]
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=500)
            for records in batches.values():
                for record in records:
                    if record.value is None or record.key is None:
                        continue
                    metric = orjson.loads(record.value).get("metric")
                    if metric in wanted:
                        keys.add(record.key.decode())
            for tp, end in list(remaining.items()):
                if await consumer.position(tp) >= end:
                    del remaining[tp]
    finally:
        await consumer.stop()
    return keys
