"""The shared pseudonym key ring: one random 256-bit key per epoch, for every worker, via Kafka.

Design (docs/guides/privacy/keys.md, "The key ring on `privacy.keys`"):

* Topic `privacy.keys`: one partition, `cleanup.policy=delete`, `retention.ms` = the policy's
  key retention, hourly segments. A record's Kafka key is `<epoch>:<proposal id>`, its value
  `{"schema": "epoch-key.v1", "epoch": e, "key_b64": ...}`.
* Any worker that finds no key for the current epoch, or for the next one within `lead`
  of its start, proposes a fresh random key. Every worker reads the single partition in
  the same order, and the FIRST proposal of an epoch in log order wins; later ones are
  ignored. So all workers of all stages agree without coordination, and a race between two
  proposers is harmless. Proposal keys are unique, so nothing is overwritten.
* A key is destroyed `retention` after its epoch starts: each worker drops it from memory
  (the bytearray is zeroed) and never loads an expired key; the workers delete its records
  from the topic with DeleteRecords (log start offset moves past them); the topic's own
  `retention.ms` deletes them even if no worker runs.
* Fail closed: without the key of an event's epoch the chain emits nothing for it; the
  anonymize agent does not process messages while the current epoch's key is missing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import math
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka.errors import KafkaError

from anonymizers.exceptions import KeyMaterialError
from anonymizers.keys import KEY_BYTES, EpochKey, epoch_of
from anonymizers.policy import Policy
from stream import kafka
from stream.settings import Settings
from stream.tasks import guarded

log = logging.getLogger(__name__)

RECORD_SCHEMA = "epoch-key.v1"
Clock = Callable[[], float]


@dataclass(frozen=True)
class KeySchedule:
    """When keys exist: epochs of `rotation_s`, destroyed `retention_s` after they start.

    `lead_s` (default: a tenth of the rotation, at most one hour) is how long before an
    epoch starts its key is created, so no worker ever waits for it.
    """

    rotation_s: int
    retention_s: int
    lead_s: int

    @classmethod
    def of(cls, *, rotation_s: int, retention_s: int) -> KeySchedule:
        return cls(rotation_s, retention_s, lead_s=max(1, min(3600, rotation_s // 10)))

    def epoch_at(self, now: float) -> int:
        return epoch_of(now, self.rotation_s)

    def start_of(self, epoch: int) -> int:
        return epoch * self.rotation_s

    def expired(self, epoch: int, now: float) -> bool:
        """True once `now` is `retention` past the epoch's start: the key must be gone."""
        return now >= self.start_of(epoch) + self.retention_s

    def wanted(self, now: float) -> list[int]:
        """Epochs whose key must exist now: the current one, and the next within `lead`."""
        current = self.epoch_at(now)
        epochs = [current]
        if now >= self.start_of(current + 1) - self.lead_s:
            epochs.append(current + 1)
        return epochs


def encode_proposal(epoch: int, material: bytes) -> tuple[bytes, bytes]:
    """(Kafka key, value) of a key proposal."""
    record_key = f"{epoch}:{uuid.uuid4().hex}".encode()
    value = orjson.dumps(
        {
            "schema": RECORD_SCHEMA,
            "epoch": epoch,
            "key_b64": base64.b64encode(material).decode(),
            "proposed_at": time.time(),
        }
    )
    return record_key, value


class KeyLog:
    """The key topic's content in log order: the first proposal per epoch wins.

    Pure state (no Kafka): `apply` each record in offset order. Implements the
    `anonymizers.keys.KeyProvider` protocol.
    """

    def __init__(self, schedule: KeySchedule, *, clock: Clock = time.time) -> None:
        self.schedule = schedule
        self._clock = clock
        self._keys: dict[int, EpochKey] = {}
        self._offsets: dict[int, list[int]] = {}  # epoch -> offsets of its records
        self.invalid_records = 0

    @property
    def rotation_seconds(self) -> int:
        return self.schedule.rotation_s

    def apply(self, offset: int, value: bytes | None) -> None:
        """Take one record of the key topic (in offset order)."""
        if value is None:
            return
        try:
            record = orjson.loads(value)
            epoch = int(record["epoch"])
            material = base64.b64decode(record["key_b64"], validate=True)
            if record.get("schema") != RECORD_SCHEMA or len(material) != KEY_BYTES:
                raise ValueError("not an epoch key record")
        except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
            # Never log the record: it may hold key material.
            self.invalid_records += 1
            return
        self._offsets.setdefault(epoch, []).append(offset)
        if epoch in self._keys or self.schedule.expired(epoch, self._clock()):
            return  # a later proposal lost, or the key is past retention: never load it
        try:
            self._keys[epoch] = EpochKey(epoch, material)
        except KeyMaterialError:
            self.invalid_records += 1

    def key_for_epoch(self, epoch: int) -> EpochKey | None:
        """The winning key of `epoch`, or None (none yet, or past retention: destroyed)."""
        key = self._keys.get(epoch)
        if key is None:
            return None
        if self.schedule.expired(epoch, self._clock()):
            self.expire()
            return None
        return key

    def has(self, epoch: int) -> bool:
        return self.key_for_epoch(epoch) is not None

    def epochs(self) -> list[int]:
        """Epochs whose key this process holds."""
        return sorted(self._keys)

    def expire(self) -> list[int]:
        """Destroy every key past retention; return their epochs."""
        now = self._clock()
        gone = [epoch for epoch in self._keys if self.schedule.expired(epoch, now)]
        for epoch in gone:
            self._keys.pop(epoch).destroy()
        return gone

    def delete_before(self) -> int | None:
        """The offset before which every record belongs to an expired epoch (None: nothing).

        Records are appended in epoch order (keys are proposed for the current or next
        epoch only), so expired epochs form a prefix of the log.
        """
        now = self._clock()
        live = [
            min(offsets)
            for epoch, offsets in self._offsets.items()
            if not self.schedule.expired(epoch, now)
        ]
        expired = [
            max(offsets)
            for epoch, offsets in self._offsets.items()
            if self.schedule.expired(epoch, now)
        ]
        if not expired:
            return None
        boundary = min(live) if live else max(expired) + 1
        return boundary if boundary > 0 else None

    def forget_deleted(self, before_offset: int) -> None:
        """Stop tracking records below `before_offset` (deleted from the topic)."""
        for epoch in list(self._offsets):
            kept = [o for o in self._offsets[epoch] if o >= before_offset]
            if kept:
                self._offsets[epoch] = kept
            else:
                del self._offsets[epoch]


class KafkaKeyRing:
    """The key log kept current from Kafka, plus the upkeep that creates and destroys keys.

    Use from a running event loop: `await start()`, then `key_for_epoch` (sync, for the
    chain), `await wait_current()` (blocks while the current epoch has no key), `await stop()`.
    """

    def __init__(
        self,
        settings: Settings,
        schedule: KeySchedule,
        *,
        clock: Clock = time.time,
        upkeep_interval_s: float | None = None,
    ) -> None:
        self._settings = settings
        self._topic = settings.topic_keys
        self.log = KeyLog(schedule, clock=clock)
        self.schedule = schedule
        self._clock = clock
        self._upkeep_interval_s = upkeep_interval_s or max(1.0, min(60.0, schedule.rotation_s / 20))
        self._consumer: Any = None
        self._producer: Any = None
        self._admin: Any = None
        self._position = 0
        self._progress = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []
        self.caught_up = asyncio.Event()
        self.error: BaseException | None = None

    # -- KeyProvider --------------------------------------------------------------------
    @property
    def rotation_seconds(self) -> int:
        return self.schedule.rotation_s

    def key_for_epoch(self, epoch: int) -> EpochKey | None:
        return self.log.key_for_epoch(epoch)

    def current_epoch(self) -> int:
        return self.schedule.epoch_at(self._clock())

    def ready(self) -> bool:
        """Caught up with the key topic and holding the current epoch's key."""
        return self.caught_up.is_set() and self.error is None and self.log.has(self.current_epoch())

    def alive(self) -> bool:
        """False once a background task stopped on an unexpected error (restart the worker)."""
        return self.error is None

    def _failed(self, exc: BaseException) -> None:
        self.error = exc

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        """Read the key topic to its end, make sure the wanted keys exist, start the upkeep."""
        from aiokafka import TopicPartition

        settings = self._settings
        tp = TopicPartition(self._topic, 0)
        consumer = kafka.async_consumer(
            settings,
            fetch_max_wait_ms=200,
            # Expired records are deleted from the log start: follow it, never skip to the end.
            auto_offset_reset="earliest",
        )
        await consumer.start()
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        self._consumer = consumer
        producer = kafka.async_producer(settings)
        await producer.start()
        self._producer = producer
        admin = kafka.async_admin(settings)
        await admin.start()
        self._admin = admin
        end = (await consumer.end_offsets([tp]))[tp]
        self._tasks.append(
            asyncio.create_task(
                guarded(self._read_forever, on_error=self._failed), name="keyring-reader"
            )
        )
        await self._wait_position(end)
        self.caught_up.set()
        await self.upkeep()
        self._tasks.append(
            asyncio.create_task(
                guarded(self._upkeep_forever, on_error=self._failed), name="keyring-upkeep"
            )
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        for client in (self._consumer, self._producer, self._admin):
            if client is not None:
                with contextlib.suppress(Exception):
                    await (client.close() if client is self._admin else client.stop())

    async def wait_current(self, *, poll_s: float = 0.2) -> None:
        """Return once the current epoch's key is held (fail closed: wait, never guess)."""
        while not self.ready():
            await asyncio.sleep(poll_s)

    # -- reading ------------------------------------------------------------------------
    async def _read_forever(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=500)
            except (KafkaError, OSError) as exc:  # broker hiccup: keep the keys we have, retry
                log.warning("key ring read failed: %s", type(exc).__name__)
                await asyncio.sleep(1.0)
                continue
            for records in batches.values():
                for record in records:
                    self.log.apply(record.offset, record.value)
                    self._position = record.offset + 1
            if not batches:
                # The log start offset may have moved past us (records deleted): follow it.
                self._position = max(self._position, await self._log_start())
            async with self._progress:
                self._progress.notify_all()

    async def _log_start(self) -> int:
        from aiokafka import TopicPartition

        consumer = self._consumer
        assert consumer is not None
        tp = TopicPartition(self._topic, 0)
        position: int = await consumer.position(tp)
        return position

    async def _wait_position(self, offset: int) -> None:
        async with self._progress:
            await self._progress.wait_for(lambda: self._position >= offset)

    # -- upkeep -------------------------------------------------------------------------
    async def _upkeep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._upkeep_interval_s)
            try:
                await self.upkeep()
            except (KafkaError, OSError) as exc:  # infrastructure hiccup: retry at the next tick
                log.warning("key ring upkeep failed: %s", type(exc).__name__)

    async def upkeep(self) -> None:
        """Create missing keys (current, next within lead), destroy and delete expired ones."""
        for epoch in self.schedule.wanted(self._clock()):
            if not self.log.has(epoch):
                await self._propose(epoch)
        gone = self.log.expire()
        if gone:
            log.info("destroyed the pseudonym keys of epochs %s", gone)
        await self._delete_expired_records()

    async def _propose(self, epoch: int) -> None:
        producer = self._producer
        assert producer is not None
        material = secrets.token_bytes(KEY_BYTES)
        record_key, value = encode_proposal(epoch, material)
        del material
        metadata = await producer.send_and_wait(
            self._topic, value=value, key=record_key, partition=0
        )
        del value
        # Whoever's proposal came first in the log wins; wait until we have read that far.
        await self._wait_position(metadata.offset + 1)
        log.info("key for epoch %d settled", epoch)

    async def _delete_expired_records(self) -> None:
        from aiokafka import TopicPartition
        from aiokafka.admin import RecordsToDelete

        before = self.log.delete_before()
        if before is None:
            return
        admin = self._admin
        assert admin is not None
        tp = TopicPartition(self._topic, 0)
        await admin.delete_records({tp: RecordsToDelete(before_offset=before)})
        self.log.forget_deleted(before)


def schedule_from_policy(policy: Policy) -> KeySchedule:
    """The key schedule of a policy's `keys` section."""
    keys = policy.keys
    return KeySchedule.of(rotation_s=keys.rotation_seconds, retention_s=keys.retention_seconds)


def clock_for(settings: Settings) -> Clock:
    """Wall-clock time shifted by `settings.clock_offset_s` (drills and tests only)."""
    offset = settings.clock_offset_s
    if not offset or math.isclose(offset, 0.0):
        return time.time
    return lambda: time.time() + offset
