"""The anonymize stage: events.raw -> anonymize -> events.pseudonymized (+ events.deadletter).

`AnonymizeStage` is the per-message work, independent of Faust so it can be tested alone:
one raw message in; out: anonymized events grouped by destination partition of
`events.pseudonymized`, dead-letter records, and counts. Each event consumed ends in
exactly one of forwarded, dead-lettered (by reason) or dropped by policy (by reason).

`AnonymizeRuntime` is what a worker holds (the stage, its key ring and consent table, its
health), and `register_anonymize` the Faust agent that reads a message, calls the stage and
sends what it returns. Decoding, consent and anonymisation live in `anonymizers`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import faust
import orjson

from anonymizers import reasons
from anonymizers.consent import child_records
from anonymizers.intake import TOO_LARGE, Invalid, decode_message
from stream.app import raw_topic
from stream.health.metrics import (
    consent_families,
    counter,
    counter_by,
    input_families,
    key_families,
    worker_families,
)
from stream.health.probes import OffsetProbe, ProgressWatch, input_problems
from stream.health.web import checks, register_web
from stream.kafka import default_partitions, key_partition
from stream.settings import Settings
from stream.tables.consent import ConsentTable
from stream.tables.keyring import KafkaKeyRing

log = logging.getLogger(__name__)

# A too_large message is kept only in part in the dead-letter topic: enough to identify the
# sender, small enough to fit any broker's message size limit.
DEADLETTER_ORIGINAL_MAX_BYTES = 64 * 1024


class Outcome(Protocol):
    """What the anonymizer pipeline returns for one event (see anonymizers.chain)."""


class EventPipeline(Protocol):
    """The anonymizer chain, consent gate included: raw validated event in, outcome out."""

    def __call__(self, event: Mapping[str, Any]) -> Any: ...

    def process_batch(self, events: list[dict[str, Any]]) -> list[Any]:
        """The outcomes of a message's events, in order (hoists per-batch work)."""
        ...


@dataclass
class StageCounters:
    """Running totals of one worker: every consumed event is counted in exactly one bucket."""

    messages: int = 0
    consumed: int = 0
    forwarded: int = 0
    deadlettered: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    children_reported: int = 0
    """`child` consent records sent for events flagged age_under_16."""

    def reconciles(self) -> bool:
        """consumed = forwarded + dead-lettered + dropped by policy."""
        return self.consumed == (
            self.forwarded + sum(self.deadlettered.values()) + sum(self.dropped.values())
        )


@dataclass
class Routed:
    """The sends one raw message produces."""

    forward: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    deadletter: list[bytes] = field(default_factory=list)
    consent: list[tuple[bytes, bytes]] = field(default_factory=list)
    """(key, value) of `child` consent records for events flagged age_under_16."""

    def forward_payloads(self) -> list[tuple[int, bytes]]:
        """(partition, JSON array of anonymized events) pairs, one message per partition."""
        return [(partition, orjson.dumps(events)) for partition, events in self.forward.items()]


PARTITION_CACHE_SIZE = 100_000
"""Subjects whose destination partition the stage remembers (cleared when full)."""
CHILDREN_SEEN_SIZE = 100_000
"""Consent keys of children the stage remembers having sent (cleared when full): a child's
burst of events sends one record per identifier, not one per event."""
SOURCE_HEADER = "anonstream-src"
"""Header of every events.pseudonymized message: `<raw partition>:<raw offset>` it came from."""


def source_header(partition: int, offset: int) -> bytes:
    """Value of the `anonstream-src` header."""
    return f"{partition}:{offset}".encode()


def parse_source_header(value: bytes) -> tuple[int, int] | None:
    """(raw partition, raw offset) of an `anonstream-src` header, None if malformed."""
    partition, sep, offset = value.decode(errors="replace").partition(":")
    if not sep or not partition.isdigit() or not offset.isdigit():
        return None
    return int(partition), int(offset)


def partition_for(subject: str, partitions: int) -> int:
    """The partition Kafka's default (murmur2) partitioner gives a message keyed `subject`."""
    return key_partition(subject.encode(), partitions)


class AnonymizeStage:
    """Decode, validate, gate, anonymize and route the events of one raw message."""

    def __init__(
        self,
        *,
        pipeline: EventPipeline,
        partitions: int,
        max_message_bytes: int,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._partitions = partitions
        self._max_message_bytes = max_message_bytes
        self._clock = clock or (lambda: datetime.now(UTC))
        self._partition_cache: dict[str, int] = {}
        self._children_sent: set[bytes] = set()
        self.counters = StageCounters()

    def process(self, value: bytes | None, *, topic: str, partition: int, offset: int) -> Routed:
        """Handle one raw message read at `topic`/`partition`/`offset`."""
        routed = Routed()
        decoded = decode_message(value, max_bytes=self._max_message_bytes)
        counters = self.counters
        counters.messages += 1
        counters.consumed += decoded.consumed
        for invalid in decoded.invalid:
            counters.deadlettered[invalid.reason] += 1
            routed.deadletter.append(
                self.deadletter_record(invalid, topic=topic, partition=partition, offset=offset)
            )
        passed = []
        outcomes = self._pipeline.process_batch(decoded.events)
        for event, outcome in zip(decoded.events, outcomes, strict=True):
            reason = getattr(outcome, "reason", None)
            if reason is None:
                passed.append(outcome)
                continue
            counters.dropped[reason] += 1
            if reason == reasons.UNDER_16:
                routed.consent.extend(self._child_records(event))
        targets = self._partitions_of([outcome.subject for outcome in passed])
        for outcome, target in zip(passed, targets, strict=True):
            routed.forward.setdefault(target, []).append(outcome.event)
        counters.forwarded += len(passed)
        return routed

    def _child_records(self, event: Mapping[str, Any]) -> list[tuple[bytes, bytes]]:
        """The `child` consent records of an event flagged age_under_16 not sent yet."""
        at = self._clock().isoformat(timespec="milliseconds").replace("+00:00", "Z")
        out = []
        for record in child_records(event, at):
            key = f"{record['subject_type']}:{record['subject_id']}".encode()
            if key in self._children_sent:
                continue
            if len(self._children_sent) >= CHILDREN_SEEN_SIZE:
                self._children_sent.clear()
            self._children_sent.add(key)
            out.append((key, orjson.dumps(record)))
        self.counters.children_reported += len(out)
        return out

    def _partitions_of(self, subjects: list[str]) -> list[int]:
        """The destination partition of each subject; the subjects not seen before are hashed
        together, in one call."""
        cache = self._partition_cache
        new = [subject for subject in dict.fromkeys(subjects) if subject not in cache]
        if new:
            if len(cache) + len(new) > PARTITION_CACHE_SIZE:
                cache.clear()
            found = default_partitions([s.encode() for s in new], self._partitions)
            cache.update(zip(new, found, strict=True))
        return [cache[subject] for subject in subjects]

    def deadletter_record(
        self, invalid: Invalid, *, topic: str, partition: int, offset: int
    ) -> bytes:
        """The dead-letter record (schemas/deadletter-record.v1.json) of one invalid item."""
        original = invalid.original
        truncated = invalid.reason == TOO_LARGE and len(original) > DEADLETTER_ORIGINAL_MAX_BYTES
        record = {
            "schema": "deadletter.v1",
            "reason": invalid.reason,
            "detail": invalid.detail,
            "path": invalid.path,
            "rule": invalid.rule,
            "source": {
                "topic": topic,
                "partition": partition,
                "offset": offset,
                "index": invalid.index,
            },
            "original_b64": base64.b64encode(
                original[:DEADLETTER_ORIGINAL_MAX_BYTES] if truncated else original
            ).decode(),
            "original_size": len(original),
            "original_truncated": truncated,
            "dead_lettered_at": self._clock().isoformat().replace("+00:00", "Z"),
        }
        return orjson.dumps(record)


# ------------------------------------------------------------------------------- runtime
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
        yield counter(
            "anonstream_children_reported",
            "child consent records sent for events flagged age_under_16.",
            c.children_reported,
        )
        lag = self.probe.consent_lag() if self.probe is not None else None
        yield from consent_families(self.consent, lag=lag)
        yield from key_families(
            epochs=self.keyring.log.epochs(),
            current=self.keyring.ready(),
            refused=self.keyring.log.refused,
        )
        yield from input_families(self.watch, unit="message")


def register_anonymize(app: faust.App, *, settings: Settings, runtime: AnonymizeRuntime) -> Any:
    """events.raw -> anonymize -> events.pseudonymized (+ events.deadletter)."""
    source = raw_topic(app, settings.topic_raw)
    sink = raw_topic(app, settings.topic_pseudonymized, partitions=settings.partitions)
    deadletter = raw_topic(app, settings.topic_deadletter)
    consent = raw_topic(app, settings.topic_consent)
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
            # A child's identifiers, keyed as the CMP's records (the same partition): every
            # anonymize worker's consent table then drops their later events, and the
            # aggregate stage removes them from open windows (PRIVACY.md, children).
            for key, value in routed.consent:
                await consent.send(key=key, value=value)
            watch.processed(message.partition, message.offset + 1, time.perf_counter() - started)

    register_web(app, runtime, stage="anonymize")
    return anonymize
