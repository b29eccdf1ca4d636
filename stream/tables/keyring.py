"""The shared pseudonym key ring: one random 256-bit key per epoch, for every worker, via Kafka.

Design (docs/guides/privacy/keys.md, "The key ring on `privacy.keys`"):

* Topic `privacy.keys`: one partition, `cleanup.policy=delete`, `retention.ms` = the policy's
  key retention, hourly segments. A record's Kafka key is `<epoch>:<proposal id>`, its value
  `{"schema": "epoch-key.v2", "epoch": e, "nonce_b64": ..., "wrapped_b64": ...}`: the key
  wrapped with AES-256-GCM under the key-encryption key (KEK, `settings.key_encryption_key_file`)
  with the epoch as associated data (`anonymizers.keys.KeyEncryptionKey`). The topic, its
  replicas and backups hold no usable key; only a holder of the KEK can propose one.
* Any worker that finds no key for the current epoch, or for the next one within `lead`
  of its start, proposes a fresh random key. Every worker reads the single partition in
  the same order, and the FIRST ACCEPTED proposal of an epoch in log order wins; later ones
  are ignored. So all workers of all stages agree without coordination, and a race between two
  proposers is harmless. Proposal keys are unique, so nothing is overwritten.
* A proposal is refused, counted (`refused[reason]`, the metric
  `anonstream_key_proposals_refused_total{reason}`) and logged by offset, epoch and reason
  only when it is `malformed`, `unauthenticated` (its GCM tag fails under the KEK: written
  without it, changed, or moved to another epoch), or `out_of_window`: for an epoch that starts
  more than twice the lead time after the reader's clock (anything past the next epoch, or the
  next one too early; twice, so a proposer whose clock runs up to one lead time ahead is not
  refused). A refused record never becomes a key and never holds back the deletion of expired
  ones.
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
import binascii
import contextlib
import logging
import math
import os
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson
from aiokafka.errors import KafkaError

from anonymizers.exceptions import KeyMaterialError, KeyUnwrapError
from anonymizers.keys import KEK_BYTES, EpochKey, KeyEncryptionKey, epoch_of
from anonymizers.policy import Policy
from stream import kafka
from stream.exceptions import SettingsError
from stream.settings import Settings
from stream.tasks import guarded

log = logging.getLogger(__name__)

RECORD_SCHEMA = "epoch-key.v2"
Clock = Callable[[], float]

REFUSAL_REASONS: Final = ("malformed", "unauthenticated", "out_of_window")
"""Why a record of the key topic is refused (the label of the refusal metric)."""


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

    def accepts(self, epoch: int, now: float) -> bool:
        """Whether a proposal for `epoch` may be taken at `now`: its epoch starts at most twice
        the lead time from now (the current epoch, earlier ones, and the next one from twice
        the lead time before it starts: a proposer's clock may run a lead time ahead)."""
        return self.start_of(epoch) <= now + 2 * self.lead_s

    def wanted(self, now: float) -> list[int]:
        """Epochs whose key must exist now: the current one, and the next within `lead`."""
        current = self.epoch_at(now)
        epochs = [current]
        if now >= self.start_of(current + 1) - self.lead_s:
            epochs.append(current + 1)
        return epochs


def encode_proposal(key: EpochKey, kek: KeyEncryptionKey) -> tuple[bytes, bytes]:
    """(Kafka key, value) of a proposal of `key`, wrapped under `kek` for its epoch."""
    nonce, wrapped = key.wrap_with(kek)
    record_key = f"{key.epoch}:{uuid.uuid4().hex}".encode()
    value = orjson.dumps(
        {
            "schema": RECORD_SCHEMA,
            "epoch": key.epoch,
            "nonce_b64": base64.b64encode(nonce).decode(),
            "wrapped_b64": base64.b64encode(wrapped).decode(),
            "proposed_at": time.time(),
        }
    )
    return record_key, value


class _Refused(Exception):
    def __init__(self, reason: str, epoch: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.epoch = epoch


def _decode(value: bytes) -> tuple[int, bytes, bytes]:
    """(epoch, nonce, wrapped key) of a key-topic record; `_Refused("malformed")` otherwise."""
    try:
        record = orjson.loads(value)
        if not isinstance(record, dict) or record.get("schema") != RECORD_SCHEMA:
            raise ValueError("not an epoch key record")
        epoch = record["epoch"]
        if type(epoch) is not int:
            raise TypeError("epoch must be an integer")
        nonce = base64.b64decode(record["nonce_b64"], validate=True)
        wrapped = base64.b64decode(record["wrapped_b64"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise _Refused("malformed") from None
    return epoch, nonce, wrapped


class KeyLog:
    """The key topic's content in log order: the first accepted proposal per epoch wins.

    Pure state (no Kafka): `apply` each record in offset order. Records are unwrapped with
    `kek`; refused ones are counted in `refused` by reason (module doc). Implements the
    `anonymizers.keys.KeyProvider` protocol.
    """

    def __init__(
        self, schedule: KeySchedule, *, kek: KeyEncryptionKey, clock: Clock = time.time
    ) -> None:
        self.schedule = schedule
        self._kek = kek
        self._clock = clock
        self._keys: dict[int, EpochKey] = {}
        self._offsets: dict[int, list[int]] = {}  # epoch -> offsets of its accepted records
        self.refused: Counter[str] = Counter(dict.fromkeys(REFUSAL_REASONS, 0))

    @property
    def rotation_seconds(self) -> int:
        return self.schedule.rotation_s

    @property
    def invalid_records(self) -> int:
        """Records refused for any reason."""
        return sum(self.refused.values())

    def apply(self, offset: int, value: bytes | None) -> None:
        """Take one record of the key topic (in offset order)."""
        if value is None:
            return
        try:
            self._accept(offset, value)
        except _Refused as refusal:
            # Offset, epoch and reason only: never the record, which holds key material.
            self.refused[refusal.reason] += 1
            log.warning(
                "key proposal at offset %d refused (epoch %s): %s",
                offset,
                "unknown" if refusal.epoch is None else refusal.epoch,
                refusal.reason,
            )

    def _accept(self, offset: int, value: bytes) -> None:
        epoch, nonce, wrapped = _decode(value)
        now = self._clock()
        if not self.schedule.accepts(epoch, now):
            raise _Refused("out_of_window", epoch)
        if self.schedule.expired(epoch, now):
            # Past retention: never unwrap it; its record only waits for deletion.
            self._offsets.setdefault(epoch, []).append(offset)
            return
        try:
            key = self._kek.unwrap(epoch, nonce, wrapped)
        except KeyUnwrapError:
            raise _Refused("unauthenticated", epoch) from None
        except KeyMaterialError:
            raise _Refused("malformed", epoch) from None
        self._offsets.setdefault(epoch, []).append(offset)
        if epoch in self._keys:
            key.destroy()  # authentic, but a proposal before it won
        else:
            self._keys[epoch] = key

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

    def destroy_all(self) -> None:
        """Destroy (zero) every key held; the log holds none afterwards."""
        while self._keys:
            self._keys.popitem()[1].destroy()

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

    `kek`: the key-encryption key; by default read from `settings.key_encryption_key_file`
    (`SettingsError` when none is configured or the file is unusable: fail closed at start-up,
    before the worker joins its group).
    """

    def __init__(
        self,
        settings: Settings,
        schedule: KeySchedule,
        *,
        clock: Clock = time.time,
        upkeep_interval_s: float | None = None,
        kek: KeyEncryptionKey | None = None,
    ) -> None:
        self._settings = settings
        self._topic = settings.topic_keys
        self._kek = kek if kek is not None else load_key_encryption_key(settings)
        self.log = KeyLog(schedule, kek=self._kek, clock=clock)
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
        # Zero what this process holds; a stopped ring serves no key (fail closed).
        self.log.destroy_all()
        self._kek.destroy()

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
        key = EpochKey.generate(epoch, memo_size=0)
        try:
            record_key, value = encode_proposal(key, self._kek)
        finally:
            key.destroy()  # the ring takes the winner from the log, whoever proposed it
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


def read_key_encryption_key(path: Path) -> KeyEncryptionKey:
    """The KEK in `path`: 32 random bytes, base64 (white space around it ignored).

    `SettingsError` naming the file (never its content) when it is unreadable or not that.
    """
    setting = "ANONSTREAM_KEY_ENCRYPTION_KEY_FILE"
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise SettingsError(f"{setting}: cannot read {path}: {exc.strerror}") from None
    material = bytearray()
    try:
        material = bytearray(base64.b64decode(text.strip(), validate=True))
        return KeyEncryptionKey(material)
    except (binascii.Error, ValueError, KeyMaterialError):
        raise SettingsError(
            f"{setting}: {path} must hold {KEK_BYTES} random bytes, base64-encoded "
            "(head -c 32 /dev/urandom | base64)"
        ) from None
    finally:
        material[:] = bytes(len(material))


def load_key_encryption_key(settings: Settings) -> KeyEncryptionKey:
    """The KEK of `settings.key_encryption_key_file`; `SettingsError` when none is set."""
    path = settings.key_encryption_key_file
    if path is None:
        raise SettingsError(
            "ANONSTREAM_KEY_ENCRYPTION_KEY_FILE must name the key-encryption key file (32 "
            "random bytes, base64, from a mounted secret): the pseudonym keys are never "
            "written or read unwrapped; got none"
        )
    return read_key_encryption_key(path)


def write_key_encryption_key(path: Path) -> Path:
    """Create `path` (mode 0600) holding a fresh random KEK, base64, unless it exists; return
    it. For the local demo and tests: production mounts the KEK from a secret store."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path  # one KEK per directory: every process of the demo shares it
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(base64.b64encode(secrets.token_bytes(KEK_BYTES)) + b"\n")
    return path


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
