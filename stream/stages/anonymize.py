"""The anonymize stage: events.raw -> anonymize -> events.pseudonymized (+ events.deadletter).

`AnonymizeStage` is the work of one fetch, independent of Kafka so it can be tested alone:
the raw messages of one partition in; out: anonymized events grouped by destination
partition of `events.pseudonymized` (one message per destination partition per fetch),
dead-letter records, and counts. The events of every message of the fetch go through the
chain in one `process_batch` call. Each event consumed ends in exactly one of forwarded,
dead-lettered (by reason) or dropped by policy (by reason).

`AnonymizePartition` is the stage logic of one assigned partition for the manual-commit loop
(`stream.stages.commit_loop`, as the aggregate and release stages): consume with `getmany`,
process, send, and commit once the broker acknowledged. A Faust agent would cost about
250 µs of CPU per message and one send per message (issue: worker throughput); Faust keeps
the worker's lifecycle and web endpoints. `AnonymizeRuntime` is what a worker holds (the
stage, its key ring and consent table, the loop, its health). Decoding, consent and
anonymisation live in `anonymizers`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import faust
import orjson

from anonymizers import reasons
from anonymizers.consent import child_records
from anonymizers.intake import TOO_LARGE, Invalid, decode_message
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
from stream.stages.commit_loop import ManualCommitLoop, Outgoing
from stream.tables.consent import ConsentTable
from stream.tables.keyring import KafkaKeyRing
from stream.tasks import guarded

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
    replayed: int = 0
    """Items consumed from messages `anonstream deadletter replay` sent back (header
    `anonstream-replay`): items from collectors = consumed - replayed."""

    def reconciles(self) -> bool:
        """consumed = forwarded + dead-lettered + dropped by policy."""
        return self.consumed == (
            self.forwarded + sum(self.deadlettered.values()) + sum(self.dropped.values())
        )


@dataclass
class Routed:
    """The sends one fetch (one or more raw messages of one partition) produces."""

    forward: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    forward_offsets: dict[int, list[int]] = field(default_factory=dict)
    """Per destination partition, the raw offset of each forwarded event (same order)."""
    deadletter: list[bytes] = field(default_factory=list)
    consent: list[tuple[bytes, bytes]] = field(default_factory=list)
    """(key, value) of `child` consent records for events flagged age_under_16."""

    def forward_payloads(
        self, *, max_bytes: int = 1024 * 1024
    ) -> list[tuple[int, bytes, list[int]]]:
        """(partition, JSON array of anonymized events, their raw offsets): one message per
        destination partition, split in halves until each is at most `max_bytes`."""
        out: list[tuple[int, bytes, list[int]]] = []
        for partition, events in self.forward.items():
            offsets = self.forward_offsets[partition]
            out.extend(
                (partition, payload, part)
                for payload, part in _chunks(events, offsets, max_bytes=max_bytes)
            )
        return out


def _chunks(
    events: list[dict[str, Any]], offsets: list[int], *, max_bytes: int
) -> Iterator[tuple[bytes, list[int]]]:
    """`events` encoded as JSON arrays of at most `max_bytes`, halving at a boundary between
    raw offsets: the events of one raw message never span two messages to one partition (the
    aggregate stage would take the second part for a replay), and one raw message's events
    fit (it was within the input size limit)."""
    payload = orjson.dumps(events)
    cut = _boundary_near_middle(offsets)
    if len(payload) <= max_bytes or cut is None:
        yield payload, offsets
        return
    yield from _chunks(events[:cut], offsets[:cut], max_bytes=max_bytes)
    yield from _chunks(events[cut:], offsets[cut:], max_bytes=max_bytes)


def _boundary_near_middle(offsets: list[int]) -> int | None:
    """The index nearest the middle where the raw offset changes; None if it never does."""
    middle = len(offsets) // 2
    for distance in range(len(offsets)):
        for index in (middle - distance, middle + distance):
            if 0 < index < len(offsets) and offsets[index - 1] != offsets[index]:
                return index
    return None


PARTITION_CACHE_SIZE = 100_000
"""Subjects whose destination partition the stage remembers (cleared when full)."""
CHILDREN_SEEN_SIZE = 100_000
"""Consent keys of children the stage remembers having sent (cleared when full): a child's
burst of events sends one record per identifier, not one per event."""
REPLAY_HEADER = "anonstream-replay"
"""Header of a message `anonstream deadletter replay` sent back to events.raw:
`<dead-letter topic>:<partition>:<offset>` of the record it came from."""
SOURCE_HEADER = "anonstream-src"
"""Header of every events.pseudonymized message: `<raw partition>:<raw offsets>`, the raw
offset each of its events came from, in order (`o` alone, `oxN` for N events of offset `o`,
comma-separated). The aggregate stage drops the events a replay repeats (see there)."""


def source_header(partition: int, offsets: int | Sequence[int]) -> bytes:
    """Value of the `anonstream-src` header of a message whose events came from `offsets`
    (one offset: every event of the message came from it)."""
    if isinstance(offsets, int):
        return f"{partition}:{offsets}".encode()
    runs: list[str] = []
    previous, count = -1, 0
    for offset in offsets:
        if offset == previous:
            count += 1
            continue
        if count:
            runs.append(f"{previous}x{count}" if count > 1 else str(previous))
        previous, count = offset, 1
    if count:
        runs.append(f"{previous}x{count}" if count > 1 else str(previous))
    return f"{partition}:{','.join(runs)}".encode()


def parse_source_header(value: bytes) -> tuple[int, list[int]] | None:
    """(raw partition, raw offset of each event) of an `anonstream-src` header; one offset
    for the whole message when the header names one; None if malformed."""
    partition, sep, rest = value.decode(errors="replace").partition(":")
    if not sep or not partition.isdigit() or not rest:
        return None
    offsets: list[int] = []
    for run in rest.split(","):
        offset, times, count = run.partition("x")
        if not offset.isdigit() or (times and not count.isdigit()):
            return None
        offsets.extend([int(offset)] * (int(count) if times else 1))
    return int(partition), offsets


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
        return self.process_fetch([(value, offset)], topic=topic, partition=partition)

    def process_fetch(
        self,
        messages: Sequence[tuple[bytes | None, int]],
        *,
        topic: str,
        partition: int,
        replayed: Collection[int] = (),
    ) -> Routed:
        """Handle the raw messages `(value, offset)` of one fetch of `topic`/`partition`, in
        offset order: their events go through the chain in one call. `replayed`: offsets of
        messages sent back by `anonstream deadletter replay` (counted apart)."""
        routed = Routed()
        counters = self.counters
        events: list[dict[str, Any]] = []
        event_offsets: list[int] = []
        max_bytes = self._max_message_bytes
        for value, offset in messages:
            decoded = decode_message(value, max_bytes=max_bytes)
            counters.messages += 1
            counters.consumed += decoded.consumed
            if offset in replayed:
                counters.replayed += decoded.consumed
            for invalid in decoded.invalid:
                counters.deadlettered[invalid.reason] += 1
                routed.deadletter.append(
                    self.deadletter_record(invalid, topic=topic, partition=partition, offset=offset)
                )
            if decoded.events:
                events.extend(decoded.events)
                event_offsets.extend([offset] * len(decoded.events))
        if not events:
            return routed
        passed = []
        passed_offsets = []
        outcomes = self._pipeline.process_batch(events)
        for event, outcome, offset in zip(events, outcomes, event_offsets, strict=True):
            reason = getattr(outcome, "reason", None)
            if reason is None:
                passed.append(outcome)
                passed_offsets.append(offset)
                continue
            counters.dropped[reason] += 1
            if reason == reasons.UNDER_16:
                routed.consent.extend(self._child_records(event))
        targets = self._partitions_of([outcome.subject for outcome in passed])
        forward, forward_offsets = routed.forward, routed.forward_offsets
        for outcome, target, offset in zip(passed, targets, passed_offsets, strict=True):
            if target in forward:
                forward[target].append(outcome.event)
                forward_offsets[target].append(offset)
            else:
                forward[target] = [outcome.event]
                forward_offsets[target] = [offset]
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


# ----------------------------------------------------------------------- partition worker
@dataclass(frozen=True)
class AnonymizeTopics:
    """Where an anonymize worker sends: its output, dead letters and child consent records."""

    source: str
    sink: str
    deadletter: str
    consent: str


class AnonymizePartition:
    """Stage logic of one assigned partition of events.raw (a `PartitionWorker`): each fetch
    through the shared stage in one call; nothing kept, so the commit point is the offset
    after the last message handled."""

    def __init__(
        self, *, partition: int, stage: AnonymizeStage, topics: AnonymizeTopics, max_bytes: int
    ) -> None:
        self.partition = partition
        self._stage = stage
        self._topics = topics
        self._max_bytes = max_bytes
        self._next_offset: int | None = None

    def handle(self, records: Sequence[Any]) -> list[Outgoing]:
        """Anonymize the messages of `records` (consumer records of this partition, in offset
        order) and return what to send."""
        topics = self._topics
        routed = self._stage.process_fetch(
            [(record.value, record.offset) for record in records],
            topic=topics.source,
            partition=self.partition,
            replayed={
                record.offset
                for record in records
                if record.headers and any(name == REPLAY_HEADER for name, _ in record.headers)
            },
        )
        self._next_offset = records[-1].offset + 1
        out = [
            Outgoing(
                topics.sink,
                None,
                payload,
                partition=target,
                headers=((SOURCE_HEADER, source_header(self.partition, offsets)),),
            )
            for target, payload, offsets in routed.forward_payloads(max_bytes=self._max_bytes)
        ]
        out.extend(Outgoing(topics.deadletter, None, record) for record in routed.deadletter)
        # A child's identifiers, keyed as the CMP's records (the same partition): every
        # anonymize worker's consent table then drops their later events, and the aggregate
        # stage removes them from open windows (PRIVACY.md, children).
        out.extend(Outgoing(topics.consent, key, value) for key, value in routed.consent)
        return out

    def tick(self, now_s: float) -> list[Outgoing]:
        """Nothing is time-driven here."""
        return []

    def commit_point(self) -> tuple[int, str] | None:
        return None if self._next_offset is None else (self._next_offset, "")


# ------------------------------------------------------------------------------- runtime
FETCH_MAX_RECORDS = 1000
"""Raw messages per fetch: one chain call and one output message per destination partition
for up to this many (fewer when the consumer has fewer buffered)."""


class AnonymizeRuntime:
    """What an anonymize worker holds: the stage, its key ring and consent table, the
    manual-commit loop over events.raw, its health."""

    def __init__(
        self,
        *,
        stage: AnonymizeStage,
        keyring: KafkaKeyRing,
        consent: ConsentTable,
        settings: Settings | None = None,
    ) -> None:
        self.stage = stage
        self.keyring = keyring
        self.consent = consent
        self.watch: ProgressWatch | None = None
        self.probe: OffsetProbe | None = None
        self.loop: ManualCommitLoop | None = None
        self.started = False
        self.failed = False
        if settings is not None:
            self._build_loop(settings)

    def _build_loop(self, settings: Settings) -> None:
        topics = AnonymizeTopics(
            source=settings.topic_raw,
            sink=settings.topic_pseudonymized,
            deadletter=settings.topic_deadletter,
            consent=settings.topic_consent,
        )
        watch = self.watch = ProgressWatch(
            topic=settings.topic_raw,
            group_id=settings.group_id("anonymize"),
            stall_timeout_s=settings.stall_timeout_s,
            commit_follows_processing=True,
        )
        self.probe = OffsetProbe(settings, watch, consent_positions=self.consent.positions)
        self.loop = ManualCommitLoop(
            settings,
            topic=settings.topic_raw,
            group_id=settings.group_id("anonymize"),
            make_worker=lambda partition, _metadata: AnonymizePartition(
                partition=partition,
                stage=self.stage,
                topics=topics,
                max_bytes=settings.max_message_bytes,
            ),
            max_records=FETCH_MAX_RECORDS,
            on_batch=watch.processed_batch,
            before_batch=self.wait_ready,
        )

    def may_process(self) -> bool:
        """The consent table is caught up and the current key is held (checked per fetch)."""
        return self.consent.ready() and self.keyring.ready()

    def problems(self) -> list[str]:
        """Liveness problems: a dead reader or loop, a stalled consumer."""
        return [
            *checks(
                (not self.failed, "anonymize loop stopped"),
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
            "anonstream_events_replayed",
            "Items consumed from messages anonstream deadletter replay sent back "
            "(items from collectors = consumed - replayed).",
            c.replayed,
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
        # Commit age: how long the group's committed offsets stayed behind the processed ones
        # (the watch's probe), not the time since the last commit (an idle worker commits
        # nothing new and is not stuck).
        yield from input_families(self.watch, unit="fetch")


def register_anonymize(app: faust.App, *, runtime: AnonymizeRuntime) -> None:
    """events.raw -> anonymize -> events.pseudonymized (+ events.deadletter, child records):
    the manual-commit loop as the app's task, started once the key ring and the consent
    table are current (fail closed: no event before)."""
    loop = runtime.loop
    if loop is None:
        raise ValueError("AnonymizeRuntime built without settings has no loop to register")

    @app.task  # type: ignore[untyped-decorator]
    async def anonymize() -> None:
        try:
            await runtime.keyring.start()
            await runtime.consent.start(wait=True)
            await runtime.wait_ready()
            await loop.start()
            assert runtime.watch is not None
            runtime.watch.start(lambda: set(loop.workers))
            runtime.started = True
            log.info("anonymize worker ready: key ring and consent table current")

            def failed(exc: BaseException) -> None:
                runtime.failed = True

            await guarded(loop.run, on_error=failed)
        finally:
            # Cancelled at shutdown: commit what was acknowledged, close the readers' clients
            # (else asyncio reports them unclosed), as the aggregate stage does.
            await loop.stop()
            await runtime.consent.stop()
            await runtime.keyring.stop()

    @app.task  # type: ignore[untyped-decorator]
    async def probe_offsets() -> None:
        if runtime.probe is not None:
            await runtime.probe.run()

    register_web(app, runtime, stage="anonymize")
