"""Consent at scale: table memory, gate cost, bulk import and table catch-up (prints figures).

1. Memory per opted-out subject with N subjects (default 1,000,000) in a `ConsentState`
   (tracemalloc; target <= 200 bytes), and the gate's cost per event (hit, miss, empty).
2. `anonstream consent import` throughput on a generated N-row JSONL and CSV file against a
   real broker (ANONSTREAM_BENCH_BOOTSTRAP, else a local one started for the run), beside
   ceilings measured in the same run on the same records, pre-encoded: hand-built batches
   with aiokafka (the transport alone) and kafka-python's per-record `send()`.
3. How long a worker's consent table takes to read the imported topic (its fail-closed
   start-up delay at that size).

    python benchmarks/bench_consent.py [--subjects N] [--skip-kafka]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import tempfile
import time
import timeit
import tracemalloc
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

from anonymizers.consent import ConsentGate, ConsentState
from anonymizers.policy import default_policy
from stream.cli.consent import csv_rows, import_rows, jsonl_rows, record_key
from stream.kafka import default_partitions, producer
from stream.local.broker import running_broker
from stream.settings import Settings, load_settings
from stream.tables.consent import ConsentTable
from stream.topics import create_topics, topic_specs

PARTITIONS = 6


def subject_id(index: int) -> str:
    """A cookie id shaped like a real one (36 characters)."""
    return str(uuid.UUID(int=index * 0x9E3779B97F4A7C15 % (1 << 128)))


def records(count: int) -> Iterator[dict[str, object]]:
    for index in range(count):
        yield {
            "subject_type": "cookie_id",
            "subject_id": subject_id(index),
            "action": "opt_out",
            "purposes": ["analytics"],
            "requested_at": "2026-01-01T00:00:00Z",
        }


def bench_state(count: int) -> None:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    state = ConsentState()
    for record in records(count):
        state.apply(record)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    per_subject = (after - before) / count
    print(
        f"consent state: {count:,} opted-out subjects, {(after - before) / 2**20:,.1f} MiB, "
        f"{per_subject:.0f} bytes per subject (target <= 200)"
    )

    gate = ConsentGate(default_policy().consent, state)
    empty = ConsentGate(default_policy().consent, ConsentState())
    base = {"event_type": "page_view", "consent": {"analytics": True}}
    hit = {**base, "cookie_id": subject_id(count // 2), "user_id": "u-1"}
    miss = {**base, "cookie_id": "c-not-there", "user_id": "u-1"}
    assert gate.decide(hit) == "opted_out" and gate.decide(miss) is None
    for name, call in (
        ("opted-out subject (cookie + user id)", lambda: gate.decide(hit)),
        ("other subject (cookie + user id)", lambda: gate.decide(miss)),
        ("empty table", lambda: empty.decide(miss)),
    ):
        loops = 200_000
        seconds = min(timeit.repeat(call, number=loops, repeat=3))
        print(f"gate per event, {name}: {seconds / loops * 1e9:,.0f} ns")


@contextmanager
def broker() -> Iterator[str]:
    given = os.environ.get("ANONSTREAM_BENCH_BOOTSTRAP")
    if given:
        yield given
        return
    with tempfile.TemporaryDirectory() as home, running_broker(Path(home), partitions=1) as state:
        yield state.bootstrap


def fresh_settings(bootstrap: str) -> Settings:
    uid = uuid.uuid4().hex[:8]
    settings = load_settings(
        bootstrap_servers=bootstrap,
        topic_consent=f"bench{uid}.privacy.consent",
        partitions=PARTITIONS,
    )
    create_topics(settings, [s for s in topic_specs(settings) if s.name == settings.topic_consent])
    return settings


def print_rate(name: str, rows: int, seconds: float) -> float:
    rate = rows / seconds
    print(f"{name}: {rows:,} rows in {seconds:.1f} s = {rate:,.0f} rows/s")
    return rate


async def batch_ceiling(settings: Settings, keys: list[bytes], values: list[bytes]) -> float:
    """Pre-encoded records in hand-built batches (aiokafka, acks=all): the transport alone."""
    from stream.cli.consent import BATCH_BYTES, BatchSender
    from stream.kafka import async_producer

    client = async_producer(settings, max_batch_size=BATCH_BYTES)
    await client.start()
    try:
        started = time.perf_counter()
        sender = BatchSender(client, topic=settings.topic_consent, partitions=PARTITIONS)
        for start in range(0, len(keys), 10_000):
            await sender.send(keys[start : start + 10_000], values[start : start + 10_000])
            await asyncio.sleep(0)
        await sender.finish()
        assert sender.acknowledged == len(keys)
        return time.perf_counter() - started
    finally:
        await client.stop()


def per_record_ceiling(settings: Settings, keys: list[bytes], values: list[bytes]) -> float:
    """kafka-python `send()` per record (linger 50 ms, 1 MiB batches): the naive way."""
    client = producer(settings, linger_ms=50, batch_size=1 << 20)
    started = time.perf_counter()
    for key, value in zip(keys, values, strict=True):
        client.send(settings.topic_consent, key=key, value=value)
    client.flush()
    seconds = time.perf_counter() - started
    client.close()
    return seconds


async def catch_up(settings: Settings) -> tuple[float, int]:
    table = ConsentTable(settings)
    started = time.perf_counter()
    await table.start(wait=True)
    seconds = time.perf_counter() - started
    await table.stop()
    return seconds, len(table)


def bench_import(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, broker() as bootstrap:
        jsonl = Path(tmp) / "consent.jsonl"
        csv_path = Path(tmp) / "consent.csv"
        with jsonl.open("wb") as out_jsonl, csv_path.open("w") as out_csv:
            out_csv.write("subject_type,subject_id,action,purposes,requested_at\n")
            for record in records(count):
                out_jsonl.write(orjson.dumps(record) + b"\n")
                out_csv.write(
                    f"cookie_id,{record['subject_id']},opt_out,analytics,2026-01-01T00:00:00Z\n"
                )
        print(f"broker {bootstrap}, consent topic with {PARTITIONS} partitions, {count:,} rows")

        settings = fresh_settings(bootstrap)
        with jsonl.open("rb") as source:
            report = asyncio.run(
                import_rows(settings, jsonl_rows(source), on_invalid=lambda n, r: None)
            )
        assert report.acknowledged == count, report
        imported = print_rate("consent import, JSONL", count, report.seconds)

        csv_settings = fresh_settings(bootstrap)
        with csv_path.open("rb") as source:
            report = asyncio.run(
                import_rows(
                    csv_settings, csv_rows(source, warn=print), on_invalid=lambda n, r: None
                )
            )
        assert report.acknowledged == count, report
        print_rate("consent import, CSV", count, report.seconds)

        values = [orjson.dumps(record) for record in records(count)]
        keys = [record_key(record) for record in records(count)]
        partition_s = timeit.timeit(lambda: default_partitions(keys, PARTITIONS), number=1)
        print(f"  of which partitioning (murmur2): {partition_s / count * 1e9:.0f} ns/row")
        ceiling = print_rate(
            "ceiling: pre-encoded records, hand-built batches (aiokafka)",
            count,
            asyncio.run(batch_ceiling(fresh_settings(bootstrap), keys, values)),
        )
        subset = min(count, 200_000)
        print_rate(
            "reference: pre-encoded records, kafka-python send() per record",
            subset,
            per_record_ceiling(fresh_settings(bootstrap), keys[:subset], values[:subset]),
        )
        print(f"import reaches {imported / ceiling:.0%} of the batch ceiling")

        seconds, subjects = asyncio.run(catch_up(settings))
        print(
            f"consent table catch-up (a worker's fail-closed start): {subjects:,} subjects "
            f"in {seconds:.1f} s = {count / seconds:,.0f} records/s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=1_000_000)
    parser.add_argument("--skip-kafka", action="store_true", help="memory and gate only")
    args = parser.parse_args()
    bench_state(args.subjects)
    if not args.skip_kafka:
        bench_import(args.subjects)


if __name__ == "__main__":
    main()
