"""The consent table: `privacy.consent` read whole by every worker into a `ConsentState`.

Every anonymize worker reads every partition of the compacted consent topic from the
beginning (no consumer group), so each sees the whole table, like a Faust GlobalTable but
without a changelog or state store: the compacted topic is the log, and the in-memory state
holds only keyed 64-bit digests under a secret made per process (`anonymizers.consent`),
never a raw identifier. The table is rebuilt at every start.

Fail closed: `caught_up` is set only once the reader reached the end offsets the topic had
when the worker started; the anonymize agent waits for it before its first event. After
that the reader follows the topic, so an opt-out applies to every event processed after it
was consumed (typically within a fraction of a second).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka.errors import KafkaError

from anonymizers.consent import ConsentState
from anonymizers.exceptions import ConsentRecordError
from stream import kafka
from stream.settings import Settings
from stream.tasks import guarded

log = logging.getLogger(__name__)


class ConsentTable:
    """A `ConsentState` kept current from the consent topic (see module doc)."""

    def __init__(
        self,
        settings: Settings,
        *,
        state: ConsentState | None = None,
        on_record: Callable[[dict[str, Any], int], None] | None = None,
    ) -> None:
        self._settings = settings
        self._topic = settings.topic_consent
        self.state = state if state is not None else ConsentState()
        self.caught_up = asyncio.Event()
        self.records_applied = 0
        self.invalid_records = 0
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None
        self._positions: dict[Any, int] = {}
        self._progress = asyncio.Condition()
        self.error: BaseException | None = None
        self.on_record = on_record
        """Called with each valid record and its Kafka timestamp (ms), e.g. for erasures."""

    def __len__(self) -> int:
        """Subjects with an opt-out, erasure or child record."""
        return len(self.state)

    def ready(self) -> bool:
        """Caught up, and the reader is still running (fail closed when it died)."""
        return self.caught_up.is_set() and self.error is None

    def alive(self) -> bool:
        """False once the reader stopped on an unexpected error (the worker must restart)."""
        return self.error is None

    def positions(self) -> dict[int, int]:
        """Next offset the reader will apply, per partition (for `stream.health.probes`)."""
        return {tp.partition: offset for tp, offset in self._positions.items()}

    async def start(self, *, wait: bool = True) -> None:
        """Assign every partition from the beginning; with `wait`, return once caught up."""
        from aiokafka import TopicPartition

        consumer = kafka.async_consumer(
            self._settings,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
            max_poll_records=10_000,
        )
        await consumer.start()
        self._consumer = consumer
        partitions = await kafka.topic_partitions(self._settings, self._topic)
        tps = [TopicPartition(self._topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        targets = await consumer.end_offsets(tps)
        self._positions = dict.fromkeys(tps, 0)
        self._task = asyncio.create_task(
            guarded(self._read_forever, on_error=self._failed), name="consent-reader"
        )
        waiter = asyncio.create_task(self._catch_up(targets), name="consent-catch-up")
        if wait:
            await waiter

    async def _catch_up(self, targets: dict[Any, int]) -> None:
        async with self._progress:
            await self._progress.wait_for(
                lambda: all(self._positions.get(tp, 0) >= end for tp, end in targets.items())
            )
        self.caught_up.set()
        log.info("consent table caught up: %d subjects", len(self.state))

    def _failed(self, exc: BaseException) -> None:
        self.error = exc

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()

    async def _read_forever(self) -> None:
        consumer = self._consumer
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            except (KafkaError, OSError) as exc:  # broker hiccup: keep the state, retry
                log.warning("consent read failed: %s", type(exc).__name__)
                await asyncio.sleep(1.0)
                continue
            for tp, records in batches.items():
                for record in records:
                    self.apply(record.key, record.value, timestamp_ms=record.timestamp)
                if records:
                    self._positions[tp] = records[-1].offset + 1
            if not batches:
                for tp in self._positions:
                    # Empty or compacted-away tail: the position is where the fetch stands.
                    self._positions[tp] = max(self._positions[tp], await consumer.position(tp))
            async with self._progress:
                self._progress.notify_all()
            # Applying a large backlog is CPU work: let the event loop breathe between batches.
            await asyncio.sleep(0)

    def apply(self, key: bytes | None, value: bytes | None, *, timestamp_ms: int = 0) -> None:
        """Apply one consent-topic record (a tombstone removes the subject's state), then
        hand a valid record to `on_record(record, timestamp_ms)` when one is set."""
        try:
            if value is None:
                subject_type, _, subject_id = (key or b"").decode().partition(":")
                if not subject_id:
                    raise ConsentRecordError("tombstone without a subject key")
                self.state.forget(subject_type, subject_id)
                return
            record = orjson.loads(value)
            if not isinstance(record, dict):
                raise ConsentRecordError("a consent record must be an object")
            expected_key = f"{record.get('subject_type')}:{record.get('subject_id')}"
            if key is not None and key.decode(errors="replace") != expected_key:
                raise ConsentRecordError("the record key must be <subject_type>:<subject_id>")
            self.state.apply(record)
            self.records_applied += 1
            if self.on_record is not None:
                self.on_record(record, timestamp_ms)
        except (ConsentRecordError, orjson.JSONDecodeError, UnicodeDecodeError) as exc:
            # The message names the rule broken, never the subject.
            self.invalid_records += 1
            log.warning("invalid consent record skipped: %s", type(exc).__name__)
