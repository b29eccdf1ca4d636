"""The bench's own Kafka reads and writes: messages sent in hand-built record batches, whole
topics read back, a consumer group's committed offsets.

Record batches (aiokafka `create_batch`/`send_batch`, as `anonstream consent import` sends):
kafka-python's per-message `send` managed ~1,000 messages/s here, too slow to pre-fill a
topic or to pace thousands of messages a second. Reads use aiokafka `getmany` (a copy of a
worker's output or the latency row's topics: up to hundreds of thousands of records).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from stream.local.bench.exceptions import BenchError
from stream.settings import Settings

PRODUCE_REQUEST_BYTES = 8 * 1024 * 1024
BATCH_BYTES = 512 * 1024
"""Record batch size (larger when `max_message_bytes` is)."""
READ_TIMEOUT_S = 300.0
"""A topic not read to its end offsets within this long is an error, not a wait for ever."""

T = TypeVar("T")
Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Message:
    """One record to send, to an explicit partition (keys do not choose it here)."""

    partition: int
    value: bytes
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


def async_producer(settings: Settings) -> Any:
    """An aiokafka producer (not started) whose record batches fit any message of the run."""
    from stream import kafka

    return kafka.async_producer(
        settings,
        max_batch_size=max(BATCH_BYTES, settings.max_message_bytes + 65_536),
        max_request_size=PRODUCE_REQUEST_BYTES,
    )


async def send_batches(
    producer: Any,
    topic: str,
    messages: Sequence[Message],
    *,
    progress: Progress | None = None,
) -> list[asyncio.Future[Any]]:
    """Send `messages` to `topic` in one record batch per partition (another when one is
    full), each partition's in the order given; the futures of their acknowledgements."""
    pending: list[asyncio.Future[Any]] = []
    open_batches: dict[int, Any] = {}
    for index, message in enumerate(messages):
        builder = open_batches.get(message.partition) or producer.create_batch()
        if _append(builder, message) is None:
            pending.append(await producer.send_batch(builder, topic, partition=message.partition))
            builder = producer.create_batch()
            if _append(builder, message) is None:
                raise BenchError(
                    f"message {index} ({len(message.value)} bytes) fits no record batch"
                )
        open_batches[message.partition] = builder
        if progress is not None and index and index % 100_000 == 0:
            progress(f"  {topic}: {index} of {len(messages)} messages queued")
    for partition, builder in open_batches.items():
        pending.append(await producer.send_batch(builder, topic, partition=partition))
    return pending


def _append(builder: Any, message: Message) -> Any:
    return builder.append(
        key=message.key, value=message.value, timestamp=None, headers=list(message.headers)
    )


async def acknowledged(topic: str, pending: Sequence[asyncio.Future[Any]]) -> None:
    """Wait for `pending`; BenchError naming how many record batches the broker refused."""
    answers = await asyncio.gather(*pending, return_exceptions=True)
    failures = [answer for answer in answers if isinstance(answer, BaseException)]
    if failures:
        raise BenchError(
            f"{len(failures)} record batches to {topic} were not acknowledged; "
            f"first: {failures[0]!r}"
        )


def produce(
    settings: Settings,
    topic: str,
    messages: Sequence[Message],
    *,
    progress: Progress | None = None,
) -> None:
    """Send `messages` to `topic` and wait until the broker acknowledged all of them."""
    asyncio.run(_produce(settings, topic, messages, progress=progress))


async def _produce(
    settings: Settings, topic: str, messages: Sequence[Message], *, progress: Progress | None
) -> None:
    producer = async_producer(settings)
    await producer.start()
    try:
        pending = await send_batches(producer, topic, messages, progress=progress)
        await acknowledged(topic, pending)
    finally:
        await producer.stop()


def read_topic(settings: Settings, topic: str, take: Callable[[Any], T | None]) -> list[T]:
    """`take(record)` of every record of `topic` (aiokafka consumer records, each partition
    in offset order), Nones left out; from the beginning to the end offsets of when it was
    called."""
    return asyncio.run(_read_topic(settings, topic, take))


async def _read_topic(settings: Settings, topic: str, take: Callable[[Any], T | None]) -> list[T]:
    from aiokafka import TopicPartition

    from stream import kafka

    consumer = kafka.async_consumer(settings)
    await consumer.start()
    out: list[T] = []
    try:
        partitions = [
            TopicPartition(topic, p) for p in await kafka.topic_partitions(settings, topic)
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        remaining = {tp: end for tp, end in ends.items() if end > await consumer.position(tp)}
        deadline = time.monotonic() + READ_TIMEOUT_S
        while remaining:
            if time.monotonic() > deadline:
                raise BenchError(f"{topic} not read to its end within {READ_TIMEOUT_S:.0f} s")
            batches = await consumer.getmany(*remaining, timeout_ms=500)
            for tp, records in batches.items():
                end = remaining.get(tp)
                for record in records:
                    if end is not None and record.offset < end:
                        taken = take(record)
                        if taken is not None:
                            out.append(taken)
            for tp, end in list(remaining.items()):
                if await consumer.position(tp) >= end:
                    del remaining[tp]
    finally:
        await consumer.stop()
    return out


@contextmanager
def committed_offsets(
    settings: Settings, *, group_id: str, topic: str
) -> Iterator[Callable[[], dict[int, tuple[int, str]]]]:
    """A reader of the group's committed `{partition: (offset, metadata)}` on `topic` (the
    partitions it committed), with one admin client kept open: the rows poll it to know when
    a stage is done (stages commit only what the broker acknowledged of their output)."""
    from stream import kafka

    admin = kafka.admin(settings)

    def read() -> dict[int, tuple[int, str]]:
        found = admin.list_group_offsets(group_id).get(group_id, {})
        return {
            tp.partition: (entry.offset, entry.metadata or "")
            for tp, entry in found.items()
            if tp.topic == topic and entry is not None and entry.offset >= 0
        }

    try:
        yield read
    finally:
        admin.close()


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    """{partition: end offset} of `topic` now."""
    from kafka import TopicPartition

    from stream import kafka

    consumer = kafka.consumer(settings)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return {tp.partition: end for tp, end in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()
