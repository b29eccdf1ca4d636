"""Benchmark of the aggregation engine and the aggregate stage (prints figures; not a
timed test).

    python benchmarks/bench_aggregation.py [--subjects 100000] [--events-per-subject 5]
                                           [--stream] [--bootstrap HOST:PORT]

Workload: the default metrics and windows (1 min, 1 h, 1 day); every subject has
`events-per-subject` events (page views with country/region, browser, os, hardware, language,
referrer on one of 500 Zipf-distributed pages; a page leave with time on page; 1 in 5 a search;
1 in 4 a link click) inside one minute, so every subject is in all three open windows.

Figures, each beside a ceiling measured in the same run over the same events:
- throughput of one PartitionAggregator (events/s, batches of 1000), against a bare Python
  loop that only parses the time and bumps one dict counter per cell space;
- state bytes per distinct subject per open window (tracemalloc: every allocation the
  aggregator made, divided by the number of (subject, open window) pairs), beside a baseline:
  the same state kept as Python dicts of sets of pseudonyms (the obvious implementation);
- time to close the windows and release them (one partition), and the suppression audit's
  time per window decision over a whole day of minute and hour windows;
- throughput of the aggregate stage's per-partition logic (`stream.stages.aggregate.
  AggregatePartition.handle`) on consumer records as the anonymize stage writes them (JSON
  arrays of 50 events with a source header, 2,000 records per call as the consumer loop
  fetches them), against a ceiling of orjson-decoding the same records plus the bare loop;
- with `--stream`: one real aggregate worker process (`anonstream worker --stage
  aggregate`) on a one-partition events.pseudonymized holding the same records, events/s
  from its /metrics, against a ceiling measured in the same run: an aiokafka consumer that
  only fetches and decodes the same records. The broker: `--bootstrap`, else
  ANONSTREAM_BENCH_BOOTSTRAP, else a local one started for the run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import sys
import tempfile
import time
import tracemalloc
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson

from anonymizers.policy import default_policy
from anonymizers.stats.aggregate import PartitionAggregator
from anonymizers.stats.config import AggregationSpec, ReleaseSpec
from anonymizers.stats.release import ReleaseEngine
from anonymizers.stats.suppression import CellFacts, SuppressionAudit
from stream.kafka import producer
from stream.local.broker import free_port, running_broker
from stream.local.processes import spawn_worker
from stream.local.processes import stop as stop_process
from stream.settings import Settings
from stream.stages.aggregate import AggregatePartition
from stream.stages.anonymize import SOURCE_HEADER, source_header
from stream.tables.keyring import write_key_encryption_key
from stream.topics import create_topics, topic_specs

MESSAGE_EVENTS = 50  # events per events.pseudonymized message
FETCH_RECORDS = 2000  # records per fetch (the consumer loop's max_poll_records)


@dataclass(frozen=True, slots=True)
class ConsumerRecord:
    """The fields of an aiokafka ConsumerRecord that the stage reads."""

    partition: int
    offset: int
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


def stage_messages(events: list[dict[str, Any]]) -> list[bytes]:
    """The events as the anonymize stage forwards them: JSON arrays of MESSAGE_EVENTS."""
    return [
        orjson.dumps(events[i : i + MESSAGE_EVENTS]) for i in range(0, len(events), MESSAGE_EVENTS)
    ]


def stage_throughput(
    messages: list[bytes], config: AggregationSpec, release: ReleaseSpec, n_events: int
) -> tuple[float, float]:
    """(events/s of AggregatePartition.handle, events/s of decode + bare loop ceiling)."""
    records = [
        ConsumerRecord(0, i, value, ((SOURCE_HEADER, source_header(0, i)),))
        for i, value in enumerate(messages)
    ]
    stage = AggregatePartition(
        partition=0,
        aggregation=config,
        release=release,
        partials_topic="stats.partials",
        partials_partitions=6,
    )
    start = time.perf_counter()
    sent = 0
    for i in range(0, len(records), FETCH_RECORDS):
        sent += len(stage.handle(records[i : i + FETCH_RECORDS]))
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    decoded = [event for value in messages for event in orjson.loads(value)]
    decode_seconds = time.perf_counter() - start
    bare_seconds, _ = bare_loop(decoded, config)
    return n_events / seconds, n_events / (decode_seconds + bare_seconds)


def make_events(subjects: int, per_subject: int, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    pages = [f"https://shop.example/p/{i}" for i in range(500)]
    weights = [1 / (i + 1) for i in range(500)]
    events: list[dict[str, Any]] = []
    for s in range(subjects):
        subject = f"{rng.getrandbits(256):064x}"
        context = {
            "country": rng.choice(["FR", "DE", "ES", "IT", "BE"]),
            "region": f"R{rng.randrange(20)}",
            "browser": rng.choice(["Firefox", "Chrome", "Safari", "Edge"]),
            "os": rng.choice(["Windows", "macOS", "Linux", "Android", "iOS"]),
            "hardware": rng.choice(["desktop", "mobile", "tablet"]),
            "language": rng.choice(["fr", "de", "es", "it", "en"]),
            "referrer_host": rng.choice(["www.google.com", "news.example", "shop.example"]),
        }
        visited = rng.choices(pages, weights, k=max(1, per_subject - 1))
        for page in visited:
            events.append(
                {"event_type": "page_view", "subject": subject, "page_url": page, **context}
            )
        events.append(
            {
                "event_type": "page_leave",
                "subject": subject,
                "page_url": visited[-1],
                "time_on_page_ms": int(rng.expovariate(1 / 40_000)),
            }
        )
        if s % 5 == 0:
            events.append(
                {
                    "event_type": "search",
                    "subject": subject,
                    "search_terms": f"q{rng.randrange(300)}",
                }
            )
        if s % 4 == 0:
            events.append(
                {"event_type": "link_click", "subject": subject, "link_url": rng.choice(pages)}
            )
    rng.shuffle(events)
    for i, event in enumerate(events):  # in order, inside one minute
        event["occurred_at"] = f"2024-05-01T12:00:{i * 59 // len(events):02d}.{i % 1000:03d}Z"
    return events


def bare_loop(events: list[dict[str, Any]], config: AggregationSpec) -> tuple[float, int]:
    spaces = defaultdict(list)
    for metric in config.metrics:
        for event_type in metric.event_types:
            spaces[event_type].append(metric.dimensions)
    counts: defaultdict[tuple[Any, ...], int] = defaultdict(int)
    start = time.perf_counter()
    for event in events:
        datetime.fromisoformat(event["occurred_at"])
        for dims in spaces[event["event_type"]]:
            counts[(dims, *(event.get(d) for d in dims))] += 1
    return time.perf_counter() - start, len(counts)


def naive_state_bytes(events: list[dict[str, Any]], config: AggregationSpec) -> int:
    """Dicts of sets of pseudonyms per window, metric and cell (what a first version does)."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    state: dict[tuple[Any, ...], dict[tuple[Any, ...], set[str]]] = {}
    for event in events:
        for size in config.windows:
            for metric in config.metrics:
                if event["event_type"] not in metric.event_types:
                    continue
                cell = tuple(event.get(d) for d in metric.dimensions)
                if None in cell:
                    continue
                key = (size, metric.name)
                state.setdefault(key, {}).setdefault(cell, set()).add(event["subject"])
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del state
    return after - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", type=int, default=100_000)
    parser.add_argument("--events-per-subject", type=int, default=5)
    parser.add_argument(
        "--stream", action="store_true", help="also time a real aggregate worker on a broker"
    )
    parser.add_argument("--bootstrap", default=None, help="broker for --stream (host:port)")
    args = parser.parse_args()
    config = AggregationSpec.from_policy(default_policy())
    release = ReleaseSpec()
    events = make_events(args.subjects, args.events_per_subject)
    n = len(events)
    print(
        f"workload: {n:,} events, {args.subjects:,} subjects, {len(config.metrics)} metrics, "
        f"windows {config.windows} s"
    )

    bare_seconds, _ = bare_loop(events, config)

    # Throughput, without tracing (tracemalloc slows every allocation down).
    timed = PartitionAggregator(config, release, partition=0)
    start = time.perf_counter()
    for i in range(0, n, 1000):
        timed.process_batch(events[i : i + 1000], offsets=i // 1000)
    seconds = time.perf_counter() - start
    del timed
    print(
        f"throughput: {n / seconds:,.0f} events/s per aggregator "
        f"(ceiling, bare dict-count loop: {n / bare_seconds:,.0f} events/s)"
    )

    # Memory: every allocation the aggregator made while processing the same events.
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    aggregator = PartitionAggregator(config, release, partition=0)
    for i in range(0, n, 1000):
        aggregator.process_batch(events[i : i + 1000], offsets=i // 1000)
    gc.collect()
    state = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    open_windows = len(aggregator.open_windows())
    pairs = open_windows * args.subjects
    naive = naive_state_bytes(events, config)
    print(
        f"memory: {state / pairs:.1f} bytes per distinct subject per open window "
        f"({open_windows} open windows; numpy arrays alone "
        f"{aggregator.state_bytes() / pairs:.1f}; baseline, dicts of sets of pseudonyms: "
        f"{naive / pairs:.1f}); target <= 100"
    )

    start = time.perf_counter()
    records = aggregator.close_all()
    closed = time.perf_counter() - start
    engine = ReleaseEngine(config, release, partitions=1, policy_version="bench")
    start = time.perf_counter()
    released = []
    for record in records:
        engine.add(record.value)
    released = engine.release_ready()
    print(
        f"close: {closed:.2f} s for {len(records):,} partial records; "
        f"release: {time.perf_counter() - start:.2f} s for {len(released):,} aggregates"
    )
    mean, worst, decisions = audit_day()
    print(
        f"suppression audit, one metric, a day of 1-min and 1-h windows over 300 pages: "
        f"{mean * 1000:.1f} ms per window decision (worst {worst * 1000:.0f} ms, "
        f"{decisions:,} decisions)"
    )
    messages = stage_messages(events)
    rate, ceiling = stage_throughput(messages, config, release, n)
    print(
        f"aggregate stage logic (AggregatePartition.handle, {MESSAGE_EVENTS}-event messages, "
        f"{FETCH_RECORDS} per fetch): {rate:,.0f} events/s per worker (ceiling, orjson decode "
        f"+ bare dict-count loop: {ceiling:,.0f} events/s)"
    )
    if args.stream:
        worker, fetch = worker_throughput(messages, n, bootstrap=args.bootstrap)
        print(
            f"aggregate worker process on the broker, one partition: {worker:,.0f} events/s "
            f"(ceiling, aiokafka fetch + orjson decode of the same records: {fetch:,.0f} "
            "events/s)"
        )


def audit_day(pages: int = 300, seed: int = 2) -> tuple[float, float, int]:
    """Suppression decisions of one metric over a whole day of 1-minute and 1-hour windows
    (Zipf-like cell sizes, about a third of the cells below k): mean and worst seconds per
    decision, number of decisions."""
    rng = random.Random(seed)
    audit = SuppressionAudit((60, 3600, 86400))
    times: list[float] = []
    day: dict[str, int] = {}
    for hour in range(24):
        hour_cells: dict[str, int] = {}
        for minute in range(60):
            cells = {}
            for p in range(pages):
                d = int(200 / (p + 1) * rng.random() * 2)
                if d:
                    cells[f"/p{p}"] = CellFacts(d, 2 * d)
                    hour_cells[f"/p{p}"] = hour_cells.get(f"/p{p}", 0) + d
            start = time.perf_counter()
            audit.decide(
                window_seconds=60,
                start_us=(hour * 60 + minute) * 60_000_000,
                cells=cells,
                total_subjects=sum(c.subjects for c in cells.values()) // 2,
                k=10,
            )
            times.append(time.perf_counter() - start)
        start = time.perf_counter()
        audit.decide(
            window_seconds=3600,
            start_us=hour * 3_600_000_000,
            cells={c: CellFacts(v // 2 + 1, v) for c, v in hour_cells.items()},
            total_subjects=sum(hour_cells.values()) // 3,
            k=10,
        )
        times.append(time.perf_counter() - start)
        for c, v in hour_cells.items():
            day[c] = day.get(c, 0) + v
    start = time.perf_counter()
    audit.decide(
        window_seconds=86400,
        start_us=0,
        cells={c: CellFacts(v // 4 + 1, v) for c, v in day.items()},
        total_subjects=sum(day.values()) // 6,
        k=10,
    )
    times.append(time.perf_counter() - start)
    return sum(times) / len(times), max(times), len(times)


@contextmanager
def bench_broker(bootstrap: str | None) -> Iterator[str]:
    """`bootstrap`, else ANONSTREAM_BENCH_BOOTSTRAP, else a local broker for the run."""
    given = bootstrap or os.environ.get("ANONSTREAM_BENCH_BOOTSTRAP")
    if given:
        yield given
        return
    with tempfile.TemporaryDirectory() as home, running_broker(Path(home), partitions=1) as state:
        yield state.bootstrap


def worker_throughput(
    messages: list[bytes], n_events: int, *, bootstrap: str | None
) -> tuple[float, float]:
    """(events/s of a real aggregate worker, events/s of a bare aiokafka fetch + decode) on
    a one-partition events.pseudonymized holding `messages`."""
    with bench_broker(bootstrap) as address, tempfile.TemporaryDirectory() as work:
        uid = uuid.uuid4().hex[:8]
        settings = Settings(
            bootstrap_servers=address,
            app_id=f"bench{uid}",
            partitions=1,
            data_dir=Path(work),
            key_encryption_key_file=write_key_encryption_key(Path(work) / "key-encryption-key"),
            **{f"topic_{name}": f"bench{uid}.{name}" for name in TOPIC_NAMES},
        )
        create_topics(settings, topic_specs(settings))
        sender = producer(settings, max_request_size=4_000_000, linger_ms=20)
        for i, value in enumerate(messages):
            sender.send(
                settings.topic_pseudonymized,
                value=value,
                partition=0,
                headers=[(SOURCE_HEADER, source_header(0, i))],
            )
        sender.flush(timeout=300)
        sender.close()
        fetch_rate = asyncio.run(fetch_ceiling(settings, len(messages), n_events))
        port = free_port()
        log = Path(work) / "aggregate.log"
        process = spawn_worker(settings, "aggregate", web_port=port, log=log)
        try:
            name = 'anonstream_aggregate_events_total{outcome="events"}'
            first: tuple[float, float] | None = None
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    raise SystemExit(f"aggregate worker exited:\n{log.read_text()[-3000:]}")
                done = metric_value(port, name)
                now = time.monotonic()
                if done and first is None:
                    first = (now, done)
                if first is not None and done >= n_events:
                    return (done - first[1]) / (now - first[0]), fetch_rate
                time.sleep(0.05)
            raise SystemExit("the aggregate worker did not finish within 600 s")
        finally:
            stop_process(process)


TOPIC_NAMES = ("raw", "pseudonymized", "deadletter", "partials", "aggregates", "consent", "keys")


async def fetch_ceiling(settings: Settings, n_messages: int, n_events: int) -> float:
    """Events/s of an aiokafka consumer that fetches and orjson-decodes the topic, no work."""
    from aiokafka import TopicPartition

    from stream.kafka import async_consumer

    consumer = async_consumer(settings, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tp = TopicPartition(settings.topic_pseudonymized, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        seen = 0
        start = time.perf_counter()
        while seen < n_messages:
            batches = await consumer.getmany(timeout_ms=1000, max_records=FETCH_RECORDS)
            for records in batches.values():
                for record in records:
                    orjson.loads(record.value)
                seen += len(records)
        return n_events / (time.perf_counter() - start)
    finally:
        await consumer.stop()


def metric_value(port: int, name: str) -> float:
    """One sample of the worker's /metrics (0 while it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rpartition(" ")[2])
    return 0.0


if __name__ == "__main__":
    main()
