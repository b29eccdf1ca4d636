"""The release stage: stats.partials -> stats.aggregates, once per key.

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

`ReleaseRuntime` is what a worker holds (the manual-commit loop and its health);
`register_release` starts it.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import faust
import orjson

from anonymizers.stats.config import AggregationSpec, ReleaseSpec
from anonymizers.stats.release import ReleaseEngine
from stream import kafka
from stream.health.metrics import counted, counter, counter_by, input_families, worker_families
from stream.health.probes import OffsetProbe, ProgressWatch, input_problems
from stream.health.web import checks, register_web
from stream.settings import Settings
from stream.stages.aggregate import metric_partition
from stream.stages.commit_loop import ManualCommitLoop, Outgoing
from stream.tasks import guarded

log = logging.getLogger(__name__)


def metrics_of(partition: int, *, metric_names: Iterable[str], partitions: int) -> list[str]:
    """Names of the metrics whose partials go to `stats.partials` partition `partition`."""
    return [name for name in metric_names if metric_partition(name, partitions) == partition]


class ReleasePartition:
    """Stage logic of one partition of stats.partials (see module doc).

    `metric_names`: every metric of the policy, in order; this partition releases those
    `metrics_of` it. The configs are the engine's, passed through unread.
    """

    def __init__(
        self,
        *,
        partition: int,
        aggregation: AggregationSpec,
        release: ReleaseSpec,
        metric_names: Sequence[str],
        sources: int,
        partials_partitions: int,
        policy_version: str,
        aggregates_topic: str,
        ledger_topic: str,
        resume_floor: str | None = None,
        published: Iterable[str] = (),
        counters: Counter[str] | None = None,
    ) -> None:
        self.partition = partition
        self.metrics = metrics_of(
            partition, metric_names=metric_names, partitions=partials_partitions
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
        self._ledger_topic = ledger_topic
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
        # The ledger's entries are absolute: a replay after a crash writes the same ones.
        for entry in self.engine.ledger_records():
            out.append(Outgoing(self._ledger_topic, entry.key.encode(), orjson.dumps(entry.value)))
            self.counters["ledger_entries"] += 1
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


# ------------------------------------------------------------------------------- runtime
class ReleaseRuntime:
    """A release worker: the manual-commit loop over stats.partials.

    `metric_names`: every metric of the policy, in order. `published_horizon_s`: how far back
    stats.aggregates is read for keys already published (every window not yet decided
    ended at most that long ago; see `stream.worker`).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        aggregation: AggregationSpec,
        release: ReleaseSpec,
        metric_names: Sequence[str],
        published_horizon_s: float,
        policy_version: str,
        sources: int,
        partials_partitions: int,
    ) -> None:
        self.settings = settings
        self.aggregation = aggregation
        self.release = release
        self.metric_names = list(metric_names)
        self.published_horizon_s = published_horizon_s
        self.policy_version = policy_version
        self.sources = sources
        self.partials_partitions = partials_partitions
        self.counters: Counter[str] = Counter()
        # What the engines of revoked partitions counted (Prometheus counters never go down).
        self.retired: Counter[str] = Counter()
        self.watch = ProgressWatch(
            topic=settings.topic_partials,
            group_id=settings.group_id("release"),
            stall_timeout_s=settings.stall_timeout_s,
            commit_follows_processing=False,
        )
        self.probe = OffsetProbe(settings, self.watch)
        self.loop = ManualCommitLoop(
            settings,
            topic=settings.topic_partials,
            group_id=settings.group_id("release"),
            make_worker=self._make_worker,
            on_batch=self.watch.processed_batch,
            on_retire=lambda worker: self.retired.update(worker.engine.counters),
        )
        self.started = False
        self.failed = False

    async def _make_worker(self, partition: int, metadata: str | None) -> ReleasePartition:
        metrics = metrics_of(
            partition, metric_names=self.metric_names, partitions=self.partials_partitions
        )
        with self.watch.recovering():
            published = await published_keys(
                self.settings, metrics=metrics, horizon_s=self.published_horizon_s
            )
        self.counters["published_keys_read"] += len(published)
        return ReleasePartition(
            partition=partition,
            aggregation=self.aggregation,
            release=self.release,
            metric_names=self.metric_names,
            sources=self.sources,
            partials_partitions=self.partials_partitions,
            policy_version=self.policy_version,
            aggregates_topic=self.settings.topic_aggregates,
            ledger_topic=self.settings.topic_ledger,
            resume_floor=metadata,
            published=published,
            counters=self.counters,
        )

    def problems(self) -> list[str]:
        """Liveness problems: the loop died, the consumer stalled."""
        return [
            *checks((not self.failed, "release loop stopped")),
            *input_problems(self.watch, self.probe),
        ]

    def unready(self) -> list[str]:
        return [*checks((self.started, "not consuming yet")), *self.problems()]

    def ready(self) -> bool:
        return not self.unready()

    def alive(self) -> bool:
        return not self.problems()

    def metric_families(self) -> Iterator[Any]:
        engines = counted(self.retired, (w.engine.counters for w in self.loop.workers.values()))
        yield from worker_families("release", ready=self.ready(), alive=self.alive())
        yield counter(
            "anonstream_partials_consumed", "Partial records consumed.", self.loop.messages
        )
        yield counter(
            "anonstream_aggregates_released", "Aggregate records published.", self.loop.sent
        )
        yield counter(
            "anonstream_cells_released",
            "Cells released (k reached and no suppressed value derivable).",
            engines["cells_released"],
        )
        yield counter_by(
            "anonstream_cells_suppressed",
            "Cells held back: below k, or complementary (to protect a suppressed cell).",
            "reason",
            {
                "below_k": engines["cells_suppressed"],
                "complementary": engines["cells_complementary"],
            },
        )
        yield counter(
            "anonstream_windows_decided", "Metric windows decided.", engines["windows_decided"]
        )
        yield counter_by("anonstream_release", "Release engine counters.", "what", dict(engines))
        yield counter_by(
            "anonstream_release_stage", "Release stage counters.", "what", dict(self.counters)
        )
        yield from input_families(
            self.watch, unit="batch", commit_age_s=time.time() - self.loop.last_commit_at
        )


def register_release(app: faust.App, *, runtime: ReleaseRuntime) -> None:
    """stats.partials -> merge, k, suppression audit, noise -> stats.aggregates (once per key)."""

    def failed(exc: BaseException) -> None:
        runtime.failed = True

    @app.task  # type: ignore[untyped-decorator]
    async def release() -> None:
        await runtime.loop.start()
        runtime.watch.start(lambda: set(runtime.loop.workers))
        runtime.started = True
        log.info("release worker ready")
        try:
            await guarded(runtime.loop.run, on_error=failed)
        finally:
            await runtime.loop.stop()

    @app.task  # type: ignore[untyped-decorator]
    async def probe_offsets() -> None:
        await runtime.probe.run()

    register_web(app, runtime, stage="release")
