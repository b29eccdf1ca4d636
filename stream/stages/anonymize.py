"""The anonymize stage's per-message work, independent of Faust so it can be tested alone.

One raw message in; out: anonymized events grouped by destination partition of
`events.pseudonymized`, dead-letter records, and counts. Each event consumed ends in
exactly one of forwarded, dead-lettered (by reason) or dropped by policy (by reason).
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from anonymizers.intake import TOO_LARGE, Invalid, decode_message
from stream.kafka import key_partition

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

    def forward_payloads(self) -> list[tuple[int, bytes]]:
        """(partition, JSON array of anonymized events) pairs, one message per partition."""
        return [(partition, orjson.dumps(events)) for partition, events in self.forward.items()]


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
        for outcome in self._pipeline.process_batch(decoded.events):
            reason = getattr(outcome, "reason", None)
            if reason is not None:
                counters.dropped[reason] += 1
                continue
            target = self._partition(outcome.subject)
            routed.forward.setdefault(target, []).append(outcome.event)
            counters.forwarded += 1
        return routed

    def _partition(self, subject: str) -> int:
        cached = self._partition_cache.get(subject)
        if cached is None:
            if len(self._partition_cache) > 100_000:
                self._partition_cache.clear()
            cached = self._partition_cache[subject] = partition_for(subject, self._partitions)
        return cached

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
