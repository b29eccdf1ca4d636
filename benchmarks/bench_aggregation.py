"""Benchmark of the aggregation engine (prints figures; not a timed test).

    python benchmarks/bench_aggregation.py [--subjects 100000] [--events-per-subject 5]

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
- time to close the windows and release them (one partition).
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
import tracemalloc
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anonymizers.aggregation import PartitionAggregator
from anonymizers.aggregation_config import AggregationConfig, ReleaseConfig
from anonymizers.release import ReleaseEngine


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


def bare_loop(events: list[dict[str, Any]], config: AggregationConfig) -> tuple[float, int]:
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


def naive_state_bytes(events: list[dict[str, Any]], config: AggregationConfig) -> int:
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
    args = parser.parse_args()
    config = AggregationConfig()
    release = ReleaseConfig()
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


if __name__ == "__main__":
    main()
