"""The stages' Faust agents and web endpoints: read, call the stage logic, send.

No business logic here: decoding, consent, anonymisation and routing live in
`stream.anonymize` and `anonymizers`; the key ring and consent table in their modules.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import faust
from prometheus_client import generate_latest

from stream.anonymize import SOURCE_HEADER, AnonymizeStage, source_header
from stream.consent_table import ConsentTable
from stream.keyring import KafkaKeyRing
from stream.metrics import CallbackCollector, counter, counter_by, gauge, new_registry
from stream.settings import Settings

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
