"""The bench's ceiling and bare-Faust rows, each run as its own process:

    python -m stream.local.bench.peers ceiling|faust --bootstrap HOST:PORT --topic T
        --group G --messages N --out FIGURES.json

`ceiling`: aiokafka `getmany` + orjson decode of every message, no other work: the most a
Python consumer of this broker can read. `faust`: a bare Faust app, one agent iterating
`stream.events()` of a raw-bytes topic and orjson-decoding each value: what Faust itself costs.

Both read the topic from the start in their own consumer group, stop after `N` messages
and write their figures as JSON: messages and items seen, the monotonic times and CPU seconds
(this process, all threads) at the first and the last message, peak RSS. A row that sees no
new message for `IDLE_TIMEOUT_S` (or none at all within `START_TIMEOUT_S`) writes what it saw
with `complete: false` and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from stream.local.bench.procfs import cpu_seconds, peak_rss_mb

IDLE_TIMEOUT_S = 10.0
START_TIMEOUT_S = 120.0


@dataclass
class Tally:
    """What a peer saw, written as its figures file."""

    target: int
    messages: int = 0
    items: int = 0
    first_s: float = 0.0
    last_s: float = 0.0
    cpu_first_s: float = 0.0
    cpu_last_s: float = 0.0
    rss_mb: float = 0.0
    complete: bool = False
    started_s: float = 0.0
    last_seen_s: float = 0.0

    def see(self, value: bytes | None) -> None:
        """Count one message: decode it (the work every row does at least)."""
        if self.messages == 0:
            self.first_s = time.monotonic()
            self.cpu_first_s = cpu_seconds()
        self.messages += 1
        try:
            document = orjson.loads(value) if value is not None else None
        except orjson.JSONDecodeError:
            document = None
        self.items += max(1, len(document)) if isinstance(document, list) else 1
        if self.messages >= self.target:
            self.finish(complete=True)

    def finish(self, *, complete: bool) -> None:
        self.last_s = time.monotonic()
        self.cpu_last_s = cpu_seconds()
        self.rss_mb = peak_rss_mb()
        self.complete = complete

    def stalled(self) -> bool:
        """No message within START_TIMEOUT_S of the start, or none for IDLE_TIMEOUT_S since."""
        now = time.monotonic()
        if self.messages == 0:
            return now - self.started_s > START_TIMEOUT_S
        return now - self.last_seen_s > IDLE_TIMEOUT_S

    def write(self, path: Path) -> None:
        path.write_bytes(orjson.dumps(asdict(self)))


async def ceiling(args: argparse.Namespace, tally: Tally) -> None:
    """aiokafka getmany + orjson.loads, nothing else."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        while tally.messages < tally.target:
            batches = await consumer.getmany(timeout_ms=200)
            if not batches:
                if tally.stalled():
                    tally.finish(complete=False)
                    return
                continue
            for records in batches.values():
                for record in records:
                    tally.see(record.value)
            tally.last_seen_s = time.monotonic()
    finally:
        await consumer.stop()


def faust_peer(args: argparse.Namespace, tally: Tally) -> None:
    """A bare Faust app: one agent iterating the topic's events, orjson-decoding each value."""
    import faust

    app = faust.App(
        args.group,
        broker=f"kafka://{args.bootstrap}",
        store="memory://",
        datadir=str(Path(args.out).parent / f"{args.group}.faust"),
        autodiscover=False,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        topic_partitions=6,
    )
    topic = app.topic(args.topic, key_serializer="raw", value_serializer="raw")

    def done() -> None:
        tally.write(Path(args.out))
        # The figures are written: leaving at once spares the row Faust's shutdown, which
        # the measurement excludes anyway (the group is this row's own and never reused).
        os._exit(0 if tally.complete else 1)

    @app.agent(topic)
    async def bare(stream: Any) -> None:
        async for event in stream.events():
            tally.see(event.value)
            tally.last_seen_s = time.monotonic()
            if tally.complete:
                done()

    @app.timer(1.0)  # type: ignore[untyped-decorator]
    async def watchdog() -> None:
        if tally.stalled():
            tally.finish(complete=False)
            done()

    worker = faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stream.local.bench.peers")
    parser.add_argument("row", choices=["ceiling", "faust"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--messages", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    tally = Tally(target=args.messages, started_s=time.monotonic())
    if args.row == "ceiling":
        asyncio.run(ceiling(args, tally))
        tally.write(Path(args.out))
        return 0 if tally.complete else 1
    faust_peer(args, tally)
    return 1  # the agent leaves the process itself; reaching here means Faust stopped early


if __name__ == "__main__":
    raise SystemExit(main())
