"""The stages' Faust agents and web endpoints: read, call the stage logic, send.

No business logic here: decoding, consent, anonymisation and routing live in
`stream.stages.anonymize` and `anonymizers`; the key ring and consent table in their modules.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import faust

from anonymizers.pseudonym import identifier_pseudonym
from anonymizers.stats.config import AggregationSpec, ReleaseSpec
from stream.health.metrics import counter, counter_by, gauge, gauge_by, histogram
from stream.health.probes import OffsetProbe, ProgressWatch
from stream.health.web import checks, register_web
from stream.settings import Settings
from stream.stages.aggregate import AggregatePartition
from stream.stages.anonymize import SOURCE_HEADER, AnonymizeStage, source_header
from stream.stages.commit_loop import ManualCommitLoop
from stream.stages.release import ReleasePartition, metrics_of, published_keys
from stream.tables.consent import ConsentTable
from stream.tables.keyring import KafkaKeyRing
from stream.tasks import guarded

log = logging.getLogger(__name__)


def raw_topic(app: faust.App, name: str, *, partitions: int | None = None) -> Any:
    """A topic of opaque bytes (anonstream encodes and decodes JSON itself, with orjson)."""
    return app.topic(name, key_serializer="raw", value_serializer="raw", partitions=partitions)


@dataclass
class AnonymizeRuntime:
    """What an anonymize worker holds: the stage logic, its key ring and consent table."""

    stage: AnonymizeStage
    keyring: KafkaKeyRing
    consent: ConsentTable
    watch: ProgressWatch | None = None
    probe: OffsetProbe | None = None

    def may_process(self) -> bool:
        """The consent table is caught up and the current key is held (checked per event)."""
        return self.consent.ready() and self.keyring.ready()

    def problems(self) -> list[str]:
        """Liveness problems: a dead reader, a stalled consumer (see `stream.health.web`)."""
        return [
            *checks(
                (self.consent.alive(), "consent reader stopped"),
                (self.keyring.alive(), "key ring reader stopped"),
            ),
            *input_problems(self.watch, self.probe),
        ]

    def unready(self) -> list[str]:
        """Why /readyz fails: consent table or key not current, or a liveness problem."""
        return [
            *checks(
                (self.consent.ready(), "consent table not caught up"),
                (self.keyring.ready(), "no key for the current epoch"),
            ),
            *self.problems(),
        ]

    def ready(self) -> bool:
        """Ready only when the consent table and the key are current and nothing stalled."""
        return not self.unready()

    def alive(self) -> bool:
        """False once a reader died or the consumer stalled: the orchestrator restarts us."""
        return not self.problems()

    async def wait_ready(self, *, poll_s: float = 0.1) -> None:
        """Return once `may_process()`; wait for ever if a reader died (fail closed)."""
        while not self.may_process():
            await asyncio.sleep(poll_s)

    def metric_families(self) -> Iterator[Any]:
        c = self.stage.counters
        yield from worker_families("anonymize", ready=self.ready(), alive=self.alive())
        yield counter("anonstream_messages_consumed", "Raw messages consumed.", c.messages)
        yield counter(
            "anonstream_events_consumed", "Raw events consumed (batch items).", c.consumed
        )
        yield counter("anonstream_events_forwarded", "Anonymized events emitted.", c.forwarded)
        yield counter_by(
            "anonstream_events_deadlettered",
            "Invalid items dead-lettered.",
            "reason",
            dict(c.deadlettered),
        )
        yield counter_by(
            "anonstream_events_dropped", "Events dropped by policy.", "reason", dict(c.dropped)
        )
        yield from consent_families(self.consent, self.probe)
        yield from key_families(self.keyring)
        yield from input_families(self.watch, unit="message")


def register_anonymize(app: faust.App, *, settings: Settings, runtime: AnonymizeRuntime) -> Any:
    """events.raw -> anonymize -> events.pseudonymized (+ events.deadletter)."""
    source = raw_topic(app, settings.topic_raw)
    sink = raw_topic(app, settings.topic_pseudonymized, partitions=settings.partitions)
    deadletter = raw_topic(app, settings.topic_deadletter)
    stage = runtime.stage
    watch = runtime.watch = ProgressWatch(
        topic=settings.topic_raw,
        group_id=settings.group_id("anonymize"),
        stall_timeout_s=settings.stall_timeout_s,
        commit_follows_processing=True,
    )
    probe = runtime.probe = OffsetProbe(
        settings, watch, consent_positions=runtime.consent.positions
    )

    def assigned() -> set[int]:
        topic = settings.topic_raw
        return {tp.partition for tp in app.consumer.assignment() if tp.topic == topic}

    @app.task  # type: ignore[untyped-decorator]
    async def start_key_ring_and_consent() -> None:
        try:
            await runtime.keyring.start()
            await runtime.consent.start(wait=True)
            watch.start(assigned)
            log.info("anonymize worker ready: key ring and consent table current")
            await probe.run()
        finally:
            # Cancelled at shutdown: close the readers' clients (else asyncio reports them
            # unclosed), as the aggregate stage does.
            await runtime.consent.stop()
            await runtime.keyring.stop()

    @app.agent(source, name="anonymize")
    async def anonymize(stream: Any) -> None:
        async for event in stream.events():
            if not runtime.may_process():
                # Fail closed: no event before the consent table caught up and the key exists.
                await runtime.wait_ready()
            started = time.perf_counter()
            message = event.message
            routed = stage.process(
                event.value, topic=message.topic, partition=message.partition, offset=message.offset
            )
            # The source coordinates let the aggregate stage drop the duplicates a replay
            # after a crash of this stage would otherwise add (at-least-once upstream).
            headers = [(SOURCE_HEADER, source_header(message.partition, message.offset))]
            for partition, payload in routed.forward_payloads():
                await sink.send(value=payload, partition=partition, headers=headers)
            for record in routed.deadletter:
                await deadletter.send(value=record)
            watch.processed(message.partition, message.offset + 1, time.perf_counter() - started)

    register_web(app, runtime, stage="anonymize")
    return anonymize


class AggregateRuntime:
    """An aggregate worker: the manual-commit loop over events.pseudonymized, plus the key
    ring and consent reader it needs to apply erasures to open windows."""

    def __init__(
        self,
        settings: Settings,
        *,
        aggregation: AggregationSpec,
        release: ReleaseSpec,
        keyring: KafkaKeyRing,
        partials_partitions: int,
    ) -> None:
        self.settings = settings
        self.aggregation = aggregation
        self.release = release
        self.keyring = keyring
        self.consent = ConsentTable(settings, on_record=self._on_consent)
        self.counters: Counter[str] = Counter()
        self.partials_partitions = partials_partitions
        # Pseudonyms of recently erased subjects (erase or child records), per live epoch,
        # re-applied to partitions assigned later; value: when to forget them (unix s).
        self.erased: dict[str, float] = {}
        # What the workers of revoked partitions counted (Prometheus counters never go down).
        self.retired: Counter[str] = Counter()
        self.watch = ProgressWatch(
            topic=settings.topic_pseudonymized,
            group_id=settings.group_id("aggregate"),
            stall_timeout_s=settings.stall_timeout_s,
            commit_follows_processing=False,
        )
        self.probe = OffsetProbe(settings, self.watch, consent_positions=self.consent.positions)
        self.loop = ManualCommitLoop(
            settings,
            topic=settings.topic_pseudonymized,
            group_id=settings.group_id("aggregate"),
            make_worker=self._make_worker,
            on_batch=self.watch.processed_batch,
            on_retire=lambda worker: self.retired.update(worker.aggregator.counters),
        )
        self.started = False
        self.failed = False

    def _make_worker(self, partition: int, metadata: str | None) -> AggregatePartition:
        now = time.time()
        self.erased = {p: until for p, until in self.erased.items() if until > now}
        return AggregatePartition(
            partition=partition,
            aggregation=self.aggregation,
            release=self.release,
            partials_topic=self.settings.topic_partials,
            partials_partitions=self.partials_partitions,
            closed_through=metadata,
            erased=list(self.erased),
            counters=self.counters,
        )

    def _on_consent(self, record: dict[str, Any], timestamp_ms: int) -> None:
        """Erase or child record: remove the subject from every open window (issue: erasure)."""
        if record.get("action") not in ("erase", "child"):
            return
        rotation = self.keyring.rotation_seconds
        now = time.time()
        # Only windows of the current and previous epochs can still be open; older erasures
        # were applied when they came, and later events are dropped upstream.
        if timestamp_ms and timestamp_ms / 1000 < now - 2 * rotation:
            return
        subject_type, subject_id = str(record["subject_type"]), str(record["subject_id"])
        for epoch in self.keyring.log.epochs():
            key = self.keyring.key_for_epoch(epoch)
            if key is None:
                continue
            pseudonym = identifier_pseudonym(key, subject_type, subject_id)
            self.erased[pseudonym] = now + 2 * rotation
            for worker in self.loop.workers.values():
                self.counters["erased_entries"] += worker.erase(pseudonym)
        self.counters["erasures"] += 1

    def problems(self) -> list[str]:
        """Liveness problems: the loop or a reader died, the consumer stalled."""
        return [
            *checks(
                (not self.failed, "aggregate loop stopped"),
                (self.consent.alive(), "consent reader stopped"),
                (self.keyring.alive(), "key ring reader stopped"),
            ),
            *input_problems(self.watch, self.probe),
        ]

    def unready(self) -> list[str]:
        """Why /readyz fails: not started, consent table or key not current, or a problem."""
        return [
            *checks(
                (self.consent.ready(), "consent table not caught up"),
                (self.keyring.ready(), "no key for the current epoch"),
                (self.started, "not consuming yet"),
            ),
            *self.problems(),
        ]

    def ready(self) -> bool:
        return not self.unready()

    def alive(self) -> bool:
        return not self.problems()

    def metric_families(self) -> Iterator[Any]:
        yield from worker_families("aggregate", ready=self.ready(), alive=self.alive())
        yield counter("anonstream_aggregate_messages", "Messages aggregated.", self.loop.messages)
        yield counter_by(
            "anonstream_aggregate_events",
            "Aggregate stage event outcomes.",
            "outcome",
            dict(
                _counted(self.retired, (w.aggregator.counters for w in self.loop.workers.values()))
            ),
        )
        yield counter(
            "anonstream_partials_sent", "Partial and progress records sent.", self.loop.sent
        )
        yield counter_by(
            "anonstream_aggregate_stage", "Aggregate stage counters.", "what", dict(self.counters)
        )
        yield gauge(
            "anonstream_aggregate_state_bytes",
            "Bytes of open-window state.",
            sum(w.aggregator.state_bytes() for w in self.loop.workers.values()),
        )
        yield from consent_families(self.consent, self.probe)
        yield from key_families(self.keyring)
        yield from input_families(
            self.watch, unit="batch", commit_age_s=time.time() - self.loop.last_commit_at
        )


def _counted(retired: Counter[str], held: Iterable[Counter[str]]) -> Counter[str]:
    """What the workers of revoked partitions counted plus what those held count now."""
    total: Counter[str] = Counter(retired)
    for counters in held:
        total.update(counters)
    return total


def register_aggregate(app: faust.App, *, runtime: AggregateRuntime) -> None:
    """events.pseudonymized -> aggregate (per partition, per window) -> stats.partials."""

    @app.task  # type: ignore[untyped-decorator]
    async def aggregate() -> None:
        await runtime.keyring.start()
        await runtime.consent.start(wait=True)
        await runtime.loop.start()
        runtime.watch.start(lambda: set(runtime.loop.workers))
        runtime.started = True
        log.info("aggregate worker ready")

        def failed(exc: BaseException) -> None:
            runtime.failed = True

        try:
            await guarded(runtime.loop.run, on_error=failed)
        finally:
            await runtime.loop.stop()
            await runtime.consent.stop()
            await runtime.keyring.stop()

    @app.task  # type: ignore[untyped-decorator]
    async def probe_offsets() -> None:
        await runtime.probe.run()

    register_web(app, runtime, stage="aggregate")


class ReleaseRuntime:
    """A release worker: the manual-commit loop over stats.partials."""

    def __init__(
        self,
        settings: Settings,
        *,
        aggregation: AggregationSpec,
        release: ReleaseSpec,
        policy_version: str,
        sources: int,
        partials_partitions: int,
    ) -> None:
        self.settings = settings
        self.aggregation = aggregation
        self.release = release
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

    def published_horizon_s(self) -> float:
        """How far back stats.aggregates is read for keys already published: every window
        not yet decided ended at most a top window, the lateness and the idle timeout ago."""
        agg = self.aggregation
        return 2.0 * agg.windows[-1] + agg.allowed_lateness + agg.idle_timeout + 3600

    async def _make_worker(self, partition: int, metadata: str | None) -> ReleasePartition:
        metrics = metrics_of(
            partition, aggregation=self.aggregation, partitions=self.partials_partitions
        )
        with self.watch.recovering():
            published = await published_keys(
                self.settings, metrics=metrics, horizon_s=self.published_horizon_s()
            )
        self.counters["published_keys_read"] += len(published)
        return ReleasePartition(
            partition=partition,
            aggregation=self.aggregation,
            release=self.release,
            sources=self.sources,
            partials_partitions=self.partials_partitions,
            policy_version=self.policy_version,
            aggregates_topic=self.settings.topic_aggregates,
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
        engines = _counted(self.retired, (w.engine.counters for w in self.loop.workers.values()))
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

    web = register_web(app, runtime, stage="release")
    if runtime.settings.dashboard:
        from stream.local.dashboard import register_dashboard

        register_dashboard(app, settings=runtime.settings, own=web)


# ------------------------------------------------------------------ shared health and metrics
def input_problems(watch: ProgressWatch | None, probe: OffsetProbe | None) -> list[str]:
    """Liveness problems of a stage's input consumer and consent reader (`stream.health.probes`)."""
    out: list[str] = []
    why = watch.stalled() if watch is not None else None
    if why is not None:
        out.append(f"input consumer stalled: {why}")
    if probe is not None and not probe.consent_current():
        out.append("consent reader behind its topic")
    return out


def worker_families(stage: str, *, ready: bool, alive: bool) -> Iterator[Any]:
    yield gauge("anonstream_worker_info", "The worker's stage.", 1.0, {"stage": stage})
    yield gauge("anonstream_ready", "1 when /readyz answers 200.", float(ready))
    yield gauge("anonstream_alive", "1 when /healthz answers 200.", float(alive))


def consent_families(consent: ConsentTable, probe: OffsetProbe | None) -> Iterator[Any]:
    yield gauge("anonstream_consent_subjects", "Subjects in the consent table.", len(consent))
    yield counter(
        "anonstream_consent_records_applied", "Consent records applied.", consent.records_applied
    )
    yield counter(
        "anonstream_consent_records_invalid", "Consent records skipped.", consent.invalid_records
    )
    lag = probe.consent_lag() if probe is not None else None
    yield gauge(
        "anonstream_consent_lag",
        "Consent records on the topic not yet applied (-1: unknown).",
        -1 if lag is None else lag,
    )


def key_families(keyring: KafkaKeyRing) -> Iterator[Any]:
    yield gauge(
        "anonstream_key_epoch",
        "Latest epoch whose key is held (-1: none).",
        max(keyring.log.epochs(), default=-1),
    )
    yield gauge(
        "anonstream_key_current",
        "1 when the key of the current epoch is held.",
        float(keyring.ready()),
    )


def input_families(
    watch: ProgressWatch | None, *, unit: str, commit_age_s: float | None = None
) -> Iterator[Any]:
    """Latency, lag, progress and commit age of the stage's input consumer."""
    if watch is None:
        return
    yield histogram(
        "anonstream_processing_seconds",
        f"Processing time per input {unit} (decode to sent and, for batches, committed).",
        watch.latency,
    )
    lag = watch.lag()
    yield gauge_by(
        "anonstream_consumer_lag",
        f"Messages of {watch.topic} not yet processed, per assigned partition.",
        "partition",
        {str(p): float(n) for p, n in (lag or {}).items()},
    )
    yield gauge(
        "anonstream_consumer_lag_known", "1 when the lag figures are fresh.", float(lag is not None)
    )
    yield gauge(
        "anonstream_seconds_since_progress",
        "Seconds since the last processed message or batch.",
        watch.idle_s(),
    )
    yield gauge(
        "anonstream_commit_age_seconds",
        "anonymize: seconds the committed offsets stayed behind the processed ones; "
        "aggregate and release: seconds since the last commit (their commit point waits "
        "for open windows by design).",
        watch.commit_age_s() if commit_age_s is None else commit_age_s,
    )
    yield counter(
        "anonstream_offset_probe_errors", "Failed broker offset probes.", watch.probe_errors
    )
