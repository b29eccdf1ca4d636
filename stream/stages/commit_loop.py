"""A consumer-group loop that commits only what its partition workers say is safe.

The aggregate and release stages keep state in memory (open windows, undecided windows). A
Faust agent acknowledges each message once iterated, so a crash would lose that state while
its input counts as done. Instead each stage consumes with aiokafka in its consumer group,
one `PartitionWorker` per assigned partition, and commits `(offset, metadata)` from
`worker.commit_point()` only after everything the worker emitted before is acknowledged by
the broker. A restarted or re-assigned partition resumes from the committed offset with the
committed metadata and replays deterministically. Rebalances: the revoked partitions'
workers commit and are dropped under the same lock as processing, so no batch is half done.

The anonymize stage keeps no state but runs here too: one fetch, one chain call and one send
per destination partition cost a fraction of a Faust agent's per-message work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from stream import kafka
from stream.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to send. `barrier`: everything sent before it must be acknowledged first."""

    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None
    barrier: bool = False
    headers: tuple[tuple[str, bytes], ...] = ()


class PartitionWorker(Protocol):
    """The stage logic of one assigned partition."""

    def handle(self, records: Sequence[Any]) -> list[Outgoing]:
        """Process consumer records of this partition, in offset order."""

    def tick(self, now_s: float) -> list[Outgoing]:
        """Processing-time tick (about every second)."""

    def commit_point(self) -> tuple[int, str] | None:
        """(offset to commit, metadata to store with it), or None for nothing yet."""


WorkerFactory = Callable[[int, str | None], Any]
"""(partition, committed metadata or None) -> PartitionWorker (may be a coroutine)."""


class ManualCommitLoop:
    """Consume `topic` in group `group_id`; see the module doc."""

    def __init__(
        self,
        settings: Settings,
        *,
        topic: str,
        group_id: str,
        make_worker: WorkerFactory,
        tick_interval_s: float = 1.0,
        max_records: int = 2000,
        on_batch: Callable[[dict[int, int], float], None] | None = None,
        on_retire: Callable[[Any], None] | None = None,
        before_batch: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._settings = settings
        self._topic = topic
        self._group_id = group_id
        self._make_worker = make_worker
        self._tick_interval_s = tick_interval_s
        self._max_records = max_records
        self._on_batch = on_batch
        """Called after each batch is sent and committed with {partition: next offset} and
        the seconds it took (health and latency metrics, `stream.health.probes`)."""
        self._on_retire = on_retire
        """Called with each worker dropped on a revoke, once, after its last commit: the
        runtime keeps what the worker counted, so its metrics never go down."""
        self._before_batch = before_batch
        """Awaited before a fetched batch is processed (the anonymize stage waits there while
        its consent table or key is not current: fail closed)."""
        self.workers: dict[int, Any] = {}
        self._lock = asyncio.Lock()
        self._consumer: Any = None
        self._producer: Any = None
        self._admin: Any = None
        self._committed: dict[int, tuple[int, str]] = {}
        # True from the moment workers change state until what they returned is acknowledged:
        # their commit points then run ahead of what is durable, so nothing may be committed
        # (a stop or a failed send in between; the next owner replays instead).
        self._unsent = False
        self.last_commit_at = time.time()
        self.last_batch_at = time.time()
        self.messages = 0
        self.sent = 0

    async def start(self) -> None:
        settings = self._settings
        self._producer = kafka.async_producer(
            settings, linger_ms=5, max_request_size=4 * 1024 * 1024
        )
        await self._producer.start()
        self._admin = kafka.async_admin(settings)
        await self._admin.start()
        self._consumer = kafka.async_consumer(
            settings,
            group_id=self._group_id,
            auto_offset_reset="earliest",
            max_poll_records=self._max_records,
        )
        await self._consumer.start()
        self._consumer.subscribe([self._topic], listener=make_listener(self))

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            async with self._lock:
                if not self._unsent:
                    await self._commit(list(self.workers))
                else:
                    log.warning("stopped before its output was acknowledged: not committing")
        for client, close in (
            (self._consumer, "stop"),
            (self._producer, "stop"),
            (self._admin, "close"),
        ):
            if client is not None:
                with contextlib.suppress(Exception):
                    await getattr(client, close)()

    async def run(self) -> None:
        """Consume, process, send, commit; forever (cancel to stop)."""
        consumer = self._consumer
        next_tick = time.monotonic() + self._tick_interval_s
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=self._max_records)
            if batches and self._before_batch is not None:
                await self._before_batch()
            started = time.perf_counter()
            async with self._lock:
                self._unsent = True
                outgoing: list[Outgoing] = []
                touched: list[int] = []
                for tp, records in batches.items():
                    worker = self.workers.get(tp.partition)
                    if worker is None or not records:
                        continue  # revoked meanwhile: its new owner replays them
                    outgoing.extend(worker.handle(records))
                    touched.append(tp.partition)
                    self.messages += len(records)
                if batches:
                    self.last_batch_at = time.time()
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + self._tick_interval_s
                    now = time.time()
                    for partition, worker in self.workers.items():
                        out = worker.tick(now)
                        if out:
                            outgoing.extend(out)
                            touched.append(partition)
                    touched = list(self.workers)  # commit points may move on ticks too
                await self._send(outgoing)
                self._unsent = False
                await self._commit(touched)
            if self._on_batch is not None and batches:
                positions = {tp.partition: rs[-1].offset + 1 for tp, rs in batches.items() if rs}
                self._on_batch(positions, time.perf_counter() - started)

    async def _send(self, outgoing: list[Outgoing]) -> None:
        producer = self._producer
        pending: list[asyncio.Future[Any]] = []
        for message in outgoing:
            if message.barrier and pending:
                await asyncio.gather(*pending)
                pending.clear()
            pending.append(
                await producer.send(
                    message.topic,
                    value=message.value,
                    key=message.key,
                    partition=message.partition,
                    headers=list(message.headers) if message.headers else None,
                )
            )
        if pending:
            await asyncio.gather(*pending)
        self.sent += len(outgoing)

    async def _commit(self, partitions: list[int]) -> None:
        from aiokafka import TopicPartition

        offsets: dict[Any, tuple[int, str]] = {}
        for partition in set(partitions):
            worker = self.workers.get(partition)
            point = worker.commit_point() if worker is not None else None
            if point is None or self._committed.get(partition) == point:
                continue
            offsets[TopicPartition(self._topic, partition)] = point
        if offsets:
            from aiokafka.errors import CommitFailedError

            try:
                await self._consumer.commit(offsets)
            except CommitFailedError:
                # The group rebalanced meanwhile (a worker starved of CPU missed its poll
                # interval): these partitions may have a new owner, which replays from the last
                # commit, as after a crash between send and commit. Not a reason to exit.
                log.warning(
                    "commit refused after a rebalance: partitions %s replay from their last commit",
                    sorted(tp.partition for tp in offsets),
                )
                return
            for tp, point in offsets.items():
                self._committed[tp.partition] = point
            self.last_commit_at = time.time()

    async def committed_metadata(self, partitions: list[int]) -> dict[int, tuple[int, str]]:
        """The group's committed (offset, metadata) of `partitions`."""
        from aiokafka import TopicPartition

        tps = [TopicPartition(self._topic, p) for p in partitions]
        result = await self._admin.list_consumer_group_offsets(self._group_id, partitions=tps)
        out: dict[int, tuple[int, str]] = {}
        for tp, meta in result.items():
            if meta is not None and meta.offset >= 0:
                out[tp.partition] = (meta.offset, meta.metadata or "")
        return out

    async def on_revoked(self, partitions: list[int]) -> None:
        async with self._lock:
            if not self._unsent:
                with contextlib.suppress(Exception):
                    await self._commit(partitions)
            for partition in partitions:
                worker = self.workers.pop(partition, None)
                self._committed.pop(partition, None)
                if worker is not None and self._on_retire is not None:
                    self._on_retire(worker)

    async def on_assigned(self, partitions: list[int]) -> None:
        async with self._lock:
            committed = await self.committed_metadata(partitions)
            for partition in partitions:
                if partition in self.workers:
                    continue
                meta = committed.get(partition)
                worker = self._make_worker(partition, meta[1] if meta and meta[1] else None)
                if asyncio.iscoroutine(worker):
                    worker = await worker
                self.workers[partition] = worker
                if meta is not None:
                    self._committed[partition] = meta
            log.info("assigned partitions %s of %s", sorted(partitions), self._topic)


def make_listener(loop: ManualCommitLoop) -> Any:
    """An aiokafka rebalance listener that delegates to `loop`."""
    from aiokafka.abc import ConsumerRebalanceListener

    class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
        async def on_partitions_revoked(self, revoked: Any) -> None:
            await loop.on_revoked([tp.partition for tp in revoked])

        async def on_partitions_assigned(self, assigned: Any) -> None:
            await loop.on_assigned([tp.partition for tp in assigned])

    return Listener()
