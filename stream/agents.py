"""The stages' Faust agents and web endpoints: read, call the stage logic, send.

No business logic here: decoding, consent, anonymisation and routing live in
`stream.anonymize` and `anonymizers`; the key ring and consent table in their modules.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import faust
from prometheus_client import generate_latest

from anonymizers.aggregation_config import AggregationConfig, ReleaseConfig
from anonymizers.pseudonym import identifier_pseudonym
from stream.aggregate import AggregatePartition
from stream.anonymize import SOURCE_HEADER, AnonymizeStage, source_header
from stream.consent_table import ConsentTable
from stream.consuming import ManualCommitLoop
from stream.keyring import KafkaKeyRing
from stream.metrics import CallbackCollector, counter, counter_by, gauge, new_registry
from stream.release import ReleasePartition, metrics_of, published_keys
from stream.settings import Settings
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

    def ready(self) -> bool:
        """Ready only when the consent table is caught up and the current key is held."""
        return self.consent.ready() and self.keyring.ready()

    def alive(self) -> bool:
        """False once the consent or key reader died: the orchestrator must restart us."""
        return self.consent.alive() and self.keyring.alive()

    async def wait_ready(self, *, poll_s: float = 0.1) -> None:
        """Return once `ready()`; wait for ever if a reader died (fail closed)."""
        while not self.ready():
            await asyncio.sleep(poll_s)

    def metric_families(self) -> Iterator[Any]:
        c = self.stage.counters
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
        yield gauge(
            "anonstream_consent_subjects", "Subjects in the consent table.", len(self.consent)
        )
        yield counter(
            "anonstream_consent_records_applied",
            "Consent records applied.",
            self.consent.records_applied,
        )
        yield counter(
            "anonstream_consent_records_invalid",
            "Consent records skipped.",
            self.consent.invalid_records,
        )
        epochs = self.keyring.log.epochs()
        yield gauge(
            "anonstream_key_epoch",
            "Latest epoch whose key is held (-1: none).",
            max(epochs, default=-1),
        )
        yield gauge(
            "anonstream_ready", "1 when the worker may process events.", float(self.ready())
        )


def register_web(
    app: faust.App,
    *,
    ready: Callable[[], bool],
    alive: Callable[[], bool],
    families: Callable[[], Iterator[Any]],
) -> None:
    """/healthz (alive), /readyz (ready to process) and /metrics (Prometheus)."""
    registry = new_registry()
    registry.register(CallbackCollector(families))
    started = time.time()

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        ok = alive()
        body = {"alive": ok, "uptime_s": round(time.time() - started, 1)}
        return web.json(body, status=200 if ok else 503)

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        ok = ready()
        return web.json({"ready": ok}, status=200 if ok else 503)

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(registry), content_type="text/plain; version=0.0.4")


def register_anonymize(app: faust.App, *, settings: Settings, runtime: AnonymizeRuntime) -> Any:
    """events.raw -> anonymize -> events.pseudonymized (+ events.deadletter)."""
    source = raw_topic(app, settings.topic_raw)
    sink = raw_topic(app, settings.topic_pseudonymized, partitions=settings.partitions)
    deadletter = raw_topic(app, settings.topic_deadletter)
    stage = runtime.stage

    @app.task  # type: ignore[untyped-decorator]
    async def start_key_ring_and_consent() -> None:
        await runtime.keyring.start()
        await runtime.consent.start(wait=True)
        log.info("anonymize worker ready: key ring and consent table current")

    @app.agent(source, name="anonymize")
    async def anonymize(stream: Any) -> None:
        async for event in stream.events():
            if not runtime.ready():
                # Fail closed: no event before the consent table caught up and the key exists.
                await runtime.wait_ready()
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

    register_web(app, ready=runtime.ready, alive=runtime.alive, families=runtime.metric_families)
    return anonymize


class AggregateRuntime:
    """An aggregate worker: the manual-commit loop over events.pseudonymized, plus the key
    ring and consent reader it needs to apply erasures to open windows."""

    def __init__(
        self,
        settings: Settings,
        *,
        aggregation: AggregationConfig,
        release: ReleaseConfig,
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
        self.loop = ManualCommitLoop(
            settings,
            topic=settings.topic_pseudonymized,
            group_id=settings.group_id("aggregate"),
            make_worker=self._make_worker,
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

    def ready(self) -> bool:
        return self.started and not self.failed and self.consent.ready() and self.keyring.ready()

    def alive(self) -> bool:
        return not self.failed and self.consent.alive() and self.keyring.alive()

    def metric_families(self) -> Iterator[Any]:
        yield counter("anonstream_aggregate_messages", "Messages aggregated.", self.loop.messages)
        yield counter_by(
            "anonstream_aggregate_events",
            "Aggregate stage event outcomes.",
            "outcome",
            _aggregator_counters(self.loop.workers.values()),
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
        yield gauge(
            "anonstream_commit_age_seconds",
            "Seconds since the last commit.",
            time.time() - self.loop.last_commit_at,
        )
        yield gauge(
            "anonstream_ready", "1 when the worker may process events.", float(self.ready())
        )


def _aggregator_counters(workers: Iterable[AggregatePartition]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for worker in workers:
        total.update(worker.aggregator.counters)
    return dict(total)


def register_aggregate(app: faust.App, *, runtime: AggregateRuntime) -> None:
    """events.pseudonymized -> aggregate (per partition, per window) -> stats.partials."""

    @app.task  # type: ignore[untyped-decorator]
    async def aggregate() -> None:
        await runtime.keyring.start()
        await runtime.consent.start(wait=True)
        await runtime.loop.start()
        runtime.started = True
        log.info("aggregate worker ready")

        def failed(exc: BaseException) -> None:
            runtime.failed = True

        try:
            await guarded(runtime.loop.run(), on_error=failed)
        finally:
            await runtime.loop.stop()
            await runtime.consent.stop()
            await runtime.keyring.stop()

    register_web(app, ready=runtime.ready, alive=runtime.alive, families=runtime.metric_families)


class ReleaseRuntime:
    """A release worker: the manual-commit loop over stats.partials."""

    def __init__(
        self,
        settings: Settings,
        *,
        aggregation: AggregationConfig,
        release: ReleaseConfig,
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
        self.loop = ManualCommitLoop(
            settings,
            topic=settings.topic_partials,
            group_id=settings.group_id("release"),
            make_worker=self._make_worker,
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

    def ready(self) -> bool:
        return self.started and not self.failed

    def alive(self) -> bool:
        return not self.failed

    def metric_families(self) -> Iterator[Any]:
        engines: Counter[str] = Counter()
        for worker in self.loop.workers.values():
            engines.update(worker.engine.counters)
        yield counter(
            "anonstream_partials_consumed", "Partial records consumed.", self.loop.messages
        )
        yield counter(
            "anonstream_aggregates_released", "Aggregate records published.", self.loop.sent
        )
        yield counter_by("anonstream_release", "Release engine counters.", "what", dict(engines))
        yield counter_by(
            "anonstream_release_stage", "Release stage counters.", "what", dict(self.counters)
        )
        yield gauge(
            "anonstream_commit_age_seconds",
            "Seconds since the last commit.",
            time.time() - self.loop.last_commit_at,
        )
        yield gauge(
            "anonstream_ready", "1 when the worker may process events.", float(self.ready())
        )


def register_release(app: faust.App, *, runtime: ReleaseRuntime) -> None:
    """stats.partials -> merge, k, suppression audit, noise -> stats.aggregates (once per key)."""

    def failed(exc: BaseException) -> None:
        runtime.failed = True

    @app.task  # type: ignore[untyped-decorator]
    async def release() -> None:
        await runtime.loop.start()
        runtime.started = True
        log.info("release worker ready")
        try:
            await guarded(runtime.loop.run(), on_error=failed)
        finally:
            await runtime.loop.stop()

    register_web(app, ready=runtime.ready, alive=runtime.alive, families=runtime.metric_families)
