"""The stages' Faust agents: read, call the stage logic, send. No business logic here."""

from __future__ import annotations

from typing import Any

import faust

from stream.anonymize import AnonymizeStage
from stream.settings import Settings


def raw_topic(app: faust.App, name: str, *, partitions: int | None = None) -> Any:
    """A topic of opaque bytes (anonstream encodes and decodes JSON itself, with orjson)."""
    return app.topic(name, key_serializer="raw", value_serializer="raw", partitions=partitions)


def register_anonymize(app: faust.App, *, settings: Settings, stage: AnonymizeStage) -> Any:
    """events.raw -> anonymize -> events.pseudonymized (+ events.deadletter)."""
    source = raw_topic(app, settings.topic_raw)
    sink = raw_topic(app, settings.topic_pseudonymized, partitions=settings.partitions)
    deadletter = raw_topic(app, settings.topic_deadletter)

    @app.agent(source, name="anonymize")
    async def anonymize(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            routed = stage.process(
                event.value, topic=message.topic, partition=message.partition, offset=message.offset
            )
            for partition, payload in routed.forward_payloads():
                await sink.send(value=payload, partition=partition)
            for record in routed.deadletter:
                await deadletter.send(value=record)

    return anonymize
