"""The bench's latency row: the anonymize worker's latency at half its maximum rate.

Issue 17 asks for the latency "from produce to released aggregate input" at half the worker's
maximum rate. The aggregate stage's input is events.pseudonymized, so this is the anonymize
stage's latency: per event, from the broker append time of its raw record to the append time
of the events.pseudonymized record that carries it. Both topics are `LogAppendTime`, so both
times come from one clock, the broker's, and the producer's own batching is not counted. Each
output record's `anonstream-src` header names the raw partition and the raw offset of each of
its events (`stream.stages.anonymize.parse_source_header`), which pairs it with its raw record.

`latency_single`: a fresh raw topic (6 partitions) and an anonymize worker of its own (fresh
app id, the generated consent records imported, as the worker rows). Once the worker waits
for records (it reports the lag of every partition), `WARMUP_S` of the paced traffic warm it
(its caches, the broker's fetch sessions) and are consumed before the measurement; then
`seconds` of it: single-event lines of `anonstream generate` (reused from the first when the
run needs more than were generated), at half the `worker_single` row's events/s, sent every
`TICK_S` as the messages due so far, one record batch per partition, partitions in turn.

Figures: the messages produced in the measured period, the events the worker forwarded of
them (its `anonstream_events_forwarded_total` over the period: the rest were dead-lettered
or dropped by policy), and of the latencies of those events (one each), p50, p99, min and max
in milliseconds. The target is p99 <= 250 ms.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream.local.bench.exceptions import BenchError
from stream.local.bench.kafkaio import (
    Message,
    acknowledged,
    async_producer,
    read_topic,
    send_batches,
)
from stream.local.bench.rows import (
    APPEND_TIME,
    FORWARDED,
    Bench,
    Input,
    caught_up,
    create_row_topics,
    wait_assigned,
    watch_workers,
)
from stream.local.bench.stages import output_events
from stream.local.bench.traffic import INPUT_PARTITIONS
from stream.settings import Settings
from stream.topics import TopicSpec, create_topics

WARMUP_S = 10.0
"""Seconds of paced traffic the worker consumes before the measured period. Measured at 3,200
messages/s on the development VM: a fresh worker's first ~6 s ran at 300-400 ms p50 (its
caches fill with new subjects and user agents, and it drains what queued meanwhile), the
seconds after at 60-90 ms."""
TICK_S = 0.005
"""How often the paced producer sends the messages due."""
TARGET_P99_MS = 250.0
LOG_APPEND_TIME = 1
"""`timestamp_type` of a record stamped by the broker."""


@dataclass(frozen=True)
class LatencyResult:
    """The figures of the latency row."""

    name: str
    rate_per_s: float
    """The rate asked for: half the worker_single row's events/s."""
    achieved_per_s: float
    """Messages produced in the measured period over its length."""
    seconds: float
    produced: int
    forwarded: int
    warmup_messages: int
    warmup_forwarded: int
    latencies_ms: list[int]
    output_topic: str

    @property
    def p50_ms(self) -> float:
        return _quantiles(self.latencies_ms)[49]

    @property
    def p99_ms(self) -> float:
        return _quantiles(self.latencies_ms)[98]

    def figures(self) -> dict[str, Any]:
        """The JSON object's keys of this row: `latency_p50_ms`, `latency_p99_ms` and
        `<row>_<figure>` for the rest."""
        out: dict[str, Any] = {
            "latency_p50_ms": round(self.p50_ms, 1),
            "latency_p99_ms": round(self.p99_ms, 1),
        }
        for key, value in {
            "rate_per_s": round(self.rate_per_s, 1),
            "achieved_per_s": round(self.achieved_per_s, 1),
            "seconds": round(self.seconds, 3),
            "produced": self.produced,
            "forwarded": self.forwarded,
            "events": len(self.latencies_ms),
            "min_ms": min(self.latencies_ms),
            "max_ms": max(self.latencies_ms),
            "warmup_messages": self.warmup_messages,
            "warmup_forwarded": self.warmup_forwarded,
            "output_topic": self.output_topic,
        }.items():
            out[f"{self.name}_{key}"] = value
        return out

    def line(self) -> str:
        """One line for the report under the table."""
        return (
            f"{self.name}: {self.produced:,} messages in {self.seconds:.0f} s at "
            f"{self.achieved_per_s:,.0f}/s (half worker_single: {self.rate_per_s:,.0f}/s), "
            f"{len(self.latencies_ms):,} events forwarded; raw append to events.pseudonymized "
            f"append: p50 {self.p50_ms:.0f} ms, p99 {self.p99_ms:.0f} ms, max "
            f"{max(self.latencies_ms)} ms (target p99 <= {TARGET_P99_MS:.0f} ms)"
        )


def _quantiles(values: Sequence[int]) -> list[float]:
    """The 99 cut points of `values` into 100 groups (inclusive method: p0 = min, p100 = max)."""
    return statistics.quantiles(values, n=100, method="inclusive")


def latency_row(
    bench: Bench, lines: Sequence[bytes], *, consent: Path, seconds: float
) -> LatencyResult:
    """The anonymize worker's latency at half the worker_single row's rate (module doc):
    `lines` are the generated single-event messages, `consent` the generated consent records."""
    from stream.local.bench.traffic import count_items, import_consent

    name = "latency_single"
    worker_row = bench.output("worker_single", needed_by=name)
    rate = worker_row.result.events_per_s / 2
    if rate <= 0 or not lines:
        raise BenchError(f"{name}: no rate to run at (worker_single: {rate * 2:.0f} events/s)")
    raw_topic = bench.name("latency", "in")
    create_topics(
        bench.settings, [TopicSpec(raw_topic, INPUT_PARTITIONS, "bench latency input", APPEND_TIME)]
    )
    settings = bench.worker_settings(name, Input("single", raw_topic, 0, 0))
    create_row_topics(settings, append_time=[settings.topic_pseudonymized])
    import_consent(settings, consent)
    bench.progress(f"row {name}: {seconds:.0f} s at {rate:,.0f} messages/s ...")
    # What the worker's consumed counter counts of each line (a malformed array: its length).
    items = [count_items(line, max_bytes=settings.max_message_bytes) for line in lines]
    with bench.running(name, settings, "anonymize") as started:
        wait_assigned(started[0], partitions=INPUT_PARTITIONS, name=name)
        warmup = asyncio.run(
            _paced(settings, raw_topic, lines, first=0, rate=rate, seconds=WARMUP_S)
        )
        with caught_up(settings, stage="anonymize", topic=raw_topic) as warm:
            warmed = watch_workers(
                started, expected=_items(items, 0, warmup), name=name, exact=True, done=warm
            )
        began = time.monotonic()
        produced = asyncio.run(
            _paced(settings, raw_topic, lines, first=warmup, rate=rate, seconds=seconds)
        )
        elapsed = time.monotonic() - began
        with caught_up(settings, stage="anonymize", topic=raw_topic) as all_sent:
            done = watch_workers(
                started,
                expected=_items(items, 0, warmup + produced),
                name=name,
                exact=True,
                done=all_sent,
            )
    warmup_forwarded = int(warmed.samples.get(FORWARDED, 0))
    forwarded = int(done.samples.get(FORWARDED, 0)) - warmup_forwarded
    latencies = _latencies(settings, raw_topic, warmup=warmup)
    if len(latencies) != forwarded:
        raise BenchError(
            f"{name}: {len(latencies)} output events carry a raw record of the measured period; "
            f"the worker forwarded {forwarded} of its {produced} messages"
        )
    if len(latencies) < 2:
        raise BenchError(f"{name}: {len(latencies)} events forwarded, too few for percentiles")
    return LatencyResult(
        name=name,
        rate_per_s=rate,
        achieved_per_s=produced / elapsed,
        seconds=elapsed,
        produced=produced,
        forwarded=forwarded,
        warmup_messages=warmup,
        warmup_forwarded=warmup_forwarded,
        latencies_ms=latencies,
        output_topic=settings.topic_pseudonymized,
    )


def _items(items: Sequence[int], first: int, stop: int) -> int:
    """Items of messages `first` to `stop` (exclusive): message `i` is line `i % len(lines)`."""
    return sum(items[index % len(items)] for index in range(first, stop))


async def _paced(
    settings: Settings,
    topic: str,
    lines: Sequence[bytes],
    *,
    first: int,
    rate: float,
    seconds: float,
) -> int:
    """Send `rate * seconds` messages at `rate` per second: message `i` (from `first`) is
    `lines[i % len(lines)]` to partition `i % INPUT_PARTITIONS`. Returns how many."""
    total = int(rate * seconds)
    producer = async_producer(settings)
    await producer.start()
    pending: list[asyncio.Future[Any]] = []
    sent = 0
    try:
        loop = asyncio.get_running_loop()
        began = loop.time()
        while sent < total:
            due = min(total, int(rate * (loop.time() - began))) - sent
            if due > 0:
                batch = [
                    Message(index % INPUT_PARTITIONS, lines[index % len(lines)])
                    for index in range(first + sent, first + sent + due)
                ]
                pending.extend(await send_batches(producer, topic, batch))
                sent += due
            await asyncio.sleep(TICK_S)
        await acknowledged(topic, pending)
    finally:
        await producer.stop()
    return sent


def _latencies(settings: Settings, raw_topic: str, *, warmup: int) -> list[int]:
    """Milliseconds from each raw record of the measured period (past the first `warmup`
    messages, which went to partitions in turn) to the output record carrying its event."""
    from stream.stages.anonymize import SOURCE_HEADER, parse_source_header

    first_measured = {p: len(range(p, warmup, INPUT_PARTITIONS)) for p in range(INPUT_PARTITIONS)}

    def raw_time(record: Any) -> tuple[tuple[int, int], int] | None:
        _require_append_time(raw_topic, record)
        if record.offset < first_measured[record.partition]:
            return None
        return (record.partition, record.offset), record.timestamp

    appended = dict(read_topic(settings, raw_topic, raw_time))
    output = settings.topic_pseudonymized

    def carried(record: Any) -> list[int]:
        _require_append_time(output, record)
        header = next((v for k, v in record.headers or () if k == SOURCE_HEADER), None)
        source = parse_source_header(header) if header is not None else None
        if source is None:
            raise BenchError(f"{output}: a record without a readable {SOURCE_HEADER} header")
        partition, offsets = source
        if len(offsets) == 1:  # one raw message's events, however many
            offsets = offsets * output_events(record.value)
        return [
            record.timestamp - appended[(partition, offset)]
            for offset in offsets
            if (partition, offset) in appended
        ]

    return [latency for found in read_topic(settings, output, carried) for latency in found]


def _require_append_time(topic: str, record: Any) -> None:
    if record.timestamp_type != LOG_APPEND_TIME:
        raise BenchError(f"{topic} is not LogAppendTime (timestamp type {record.timestamp_type})")
