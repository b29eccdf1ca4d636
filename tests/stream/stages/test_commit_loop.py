"""The manual-commit loop never commits ahead of what it has durably sent.

These tests drive `ManualCommitLoop` with stand-in clients: what is under test is the loop's
own ordering (process, send, await the acknowledgements, commit) when it is stopped in
between, not Kafka's behaviour (the e2e crash tests cover that on the real broker).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from stream.settings import Settings
from stream.stages.commit_loop import ManualCommitLoop, Outgoing


class Worker:
    """A partition worker whose state moves on as soon as it handles a record."""

    def __init__(self) -> None:
        self.offset: int | None = None

    def handle(self, records: Sequence[Any]) -> list[Outgoing]:
        self.offset = records[-1].offset + 1
        return [Outgoing("out", b"k", b"v", partition=0)]

    def tick(self, now_s: float) -> list[Outgoing]:
        return []

    def commit_point(self) -> tuple[int, str] | None:
        return None if self.offset is None else (self.offset, "closed-through")


class Record:
    offset = 41


class TP:
    topic = "in"
    partition = 0


class Consumer:
    def __init__(self) -> None:
        self.commits: list[dict[Any, tuple[int, str]]] = []
        self.served = False

    async def getmany(self, **_: Any) -> dict[Any, list[Any]]:
        if self.served:
            await asyncio.sleep(3600)
        self.served = True
        return {TP(): [Record()]}

    async def commit(self, offsets: dict[Any, tuple[int, str]]) -> None:
        self.commits.append(offsets)

    async def stop(self) -> None:
        pass


class Producer:
    """`send` returns a delivery future the test completes (the broker's acknowledgement)."""

    def __init__(self) -> None:
        self.deliveries: list[asyncio.Future[Any]] = []
        self.sent = asyncio.Event()

    async def send(self, *_: Any, **__: Any) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.deliveries.append(future)
        self.sent.set()
        return future

    async def stop(self) -> None:
        pass


def loop_with_fakes() -> tuple[ManualCommitLoop, Consumer, Producer]:
    loop = ManualCommitLoop(
        Settings(bootstrap_servers="127.0.0.1:1"), topic="in", group_id="g", make_worker=Worker
    )
    consumer, producer = Consumer(), Producer()
    loop._consumer, loop._producer = consumer, producer
    loop.workers[0] = Worker()
    return loop, consumer, producer


async def stop_while_sending(*, acknowledge: bool) -> list[dict[Any, tuple[int, str]]]:
    loop, consumer, producer = loop_with_fakes()
    task = asyncio.create_task(loop.run())
    await asyncio.wait_for(producer.sent.wait(), 5)
    if acknowledge:
        producer.deliveries[0].set_result(None)
        for _ in range(100):
            if consumer.commits:
                break
            await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await loop.stop()
    return consumer.commits


def test_a_stop_before_the_output_is_acknowledged_commits_nothing() -> None:
    """Stopped (SIGTERM) while its output is unacknowledged, the loop commits nothing: the
    worker's commit point already covers the unsent partials, so committing it would lose
    them for good; the next owner replays from the last commit instead."""
    assert asyncio.run(stop_while_sending(acknowledge=False)) == []


def test_acknowledged_output_is_committed_with_its_metadata() -> None:
    """Once the output is acknowledged the loop commits the worker's (offset, metadata)."""
    commits = asyncio.run(stop_while_sending(acknowledge=True))
    assert [list(c.values()) for c in commits] == [[(42, "closed-through")]]


def test_a_revoked_worker_is_retired_once_and_kept_workers_are_not() -> None:
    """On a revoke the loop hands each dropped worker to `on_retire` (its runtime keeps
    what it counted), once, and only those: workers of partitions still held stay."""
    retired: list[Worker] = []
    loop = ManualCommitLoop(
        Settings(bootstrap_servers="127.0.0.1:1"),
        topic="in",
        group_id="g",
        make_worker=Worker,
        on_retire=retired.append,
    )
    loop._consumer = Consumer()
    first, second = Worker(), Worker()
    loop.workers.update({0: first, 1: second})
    asyncio.run(loop.on_revoked([0, 7]))  # 7 was never held
    asyncio.run(loop.on_revoked([0]))  # a second revoke of the same partition
    assert retired == [first]
    assert loop.workers == {1: second}


def test_a_commit_refused_after_a_rebalance_does_not_stop_the_loop() -> None:
    """The group rebalanced while the batch was processed (a starved worker): the commit is
    refused, the loop logs it and goes on consuming instead of exiting; nothing counts as
    committed, so the partition's next owner replays from the last commit."""
    from aiokafka.errors import CommitFailedError

    class RefusingConsumer(Consumer):
        def __init__(self) -> None:
            super().__init__()
            self.fetches = 0

        async def getmany(self, **kwargs: Any) -> dict[Any, list[Any]]:
            self.fetches += 1
            return await super().getmany(**kwargs)

        async def commit(self, offsets: dict[Any, tuple[int, str]]) -> None:
            raise CommitFailedError("rebalanced")

    async def run() -> tuple[bool, int, dict[int, tuple[int, str]]]:
        loop, _, producer = loop_with_fakes()
        consumer = RefusingConsumer()
        loop._consumer = consumer
        task = asyncio.create_task(loop.run())
        await asyncio.wait_for(producer.sent.wait(), 5)
        producer.deliveries[0].set_result(None)
        for _ in range(100):
            if consumer.fetches >= 2:
                break
            await asyncio.sleep(0.01)
        alive = not task.done()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return alive, consumer.fetches, dict(loop._committed)

    alive, fetches, committed = asyncio.run(run())
    assert alive and fetches >= 2, "the loop fetched again after the refused commit"
    assert committed == {}
