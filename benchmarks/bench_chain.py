# ruff: noqa: E501  (long literal tables of test data)
"""Throughput of the anonymizer chain in one process, beside a ceiling measured in the same run.

Realistic mix: many repeated IPs, subjects and user agents, some new ones; page views,
searches, link clicks and page leaves; a consent state with opted-out subjects. Target:
>= 100,000 events/s for the chain on one core.

The events form one continuous stream, as a worker sees it: a "new" subject, cookie or IP
is new for the whole run, and every measured batch is a fresh slice of the stream, so no
figure profits from having seen the same events before. Printed:

- cold: a fresh pipeline (empty caches, new key) on the first N events of the stream;
- after a warm-up of W events (a worker that has run a while; `cache sizes` shows how full
  each bounded cache is), R repetitions of:
  ceiling (orjson decode + encode of N events), pipeline (decode + chain + encode of the
  same N events, in collector batches of B through `process_batch`) and the chain alone (on
  N other events, as a worker runs it: each batch decoded untimed, then `process_batch` on
  it timed); best and median of the repetitions;
- the share of the chain's CPU time the garbage collector took, and its collections;
  each pipeline runs under the garbage collector settings of a worker
  (`stream.gcsettings.settle_after_startup` once it is built), or Python's own with
  `--python-gc`;
- each cache's misses and hit rate over the measured events;
- how long one look-up in a dict as large as the memos took before and after the runs:
  the chain is mostly such look-ups, so on a shared machine this shows how busy its
  memory was (context only).

Outcomes are tallied batch by batch and dropped, as a worker drops them once sent.

    python benchmarks/bench_chain.py [--events N] [--repeat R] [--warmup W] [--batch B]
                                     [--geo-db PATH] [--python-gc] [--no-native]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

import anonymizers.chain as chain_module
from anonymizers.chain import Pipeline
from anonymizers.consent import ConsentState
from anonymizers.fields import SUBJECT_FIELDS
from anonymizers.geo import GeoLookup
from anonymizers.keys import GeneratedKeyProvider
from anonymizers.native import native_enabled, use_native
from anonymizers.outcome import Anonymized, Outcome
from anonymizers.policy import default_policy
from stream.gcsettings import DEFAULT_YOUNG_THRESHOLD, settle_after_startup

UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
]
PAGES = [
    f"https://shop.example/category/{c}/product-{p}"
    for c in ("shoes", "bags", "hats")
    for p in range(60)
]
SEARCHES = [
    "red shoes",
    "leather bag",
    "summer hat 42",
    "gift card",
    "call 06 12 34 56 78",
    "size 38",
]
RETURNING_SHARE = 0.8


class EventStream:
    """Encoded raw events: 80% from 5,000 returning subjects and 3,500 IPs, 20% new ones.

    `take(n)` continues the stream: "new" identifiers are numbered by their position in the
    whole stream, so none repeats across slices.
    """

    def __init__(self, seed: int = 7) -> None:
        self._rng = random.Random(seed)
        rng = self._rng
        self.subjects = [f"user-{i:06d}" for i in range(5000)]
        self.ips = [f"81.2.{rng.randrange(256)}.{rng.randrange(1, 255)}" for _ in range(3000)]
        self.ips += [
            f"2a02:a000:{rng.randrange(65536):x}::{rng.randrange(65536):x}" for _ in range(500)
        ]
        self._index = 0

    def take(self, count: int) -> list[bytes]:
        """The next `count` events of the stream, encoded."""
        return [orjson.dumps(self._event()) for _ in range(count)]

    def _event(self) -> dict[str, object]:
        rng = self._rng
        index = self._index
        self._index += 1
        returning = rng.random() < RETURNING_SHARE
        event: dict[str, object] = {
            "event_id": f"e{index}",
            "event_type": rng.choices(
                ["page_view", "search", "link_click", "page_leave"], [70, 10, 10, 10]
            )[0],
            "occurred_at": f"2024-05-01T{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{rng.randrange(1000):03d}Z",
            "ip": rng.choice(self.ips)
            if returning
            else f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}",
            "user_agent": rng.choice(UAS),
            "browser_language": rng.choice(["fr-FR,fr;q=0.9", "en-US,en;q=0.8", "de-DE"]),
            "page_url": rng.choice(PAGES) + rng.choice(["", "?utm_source=nl&sid=abc", "#reviews"]),
        }
        kind = rng.random()
        if kind < 0.5:
            event["cookie_id"] = rng.choice(self.subjects) if returning else f"new-{index}"
        elif kind < 0.7:
            event["user_id"] = rng.choice(self.subjects) if returning else f"newu-{index}"
        # else: cookieless visitor id from IP + UA
        if rng.random() < 0.3:
            event["referrer_url"] = rng.choice(
                ["https://www.google.com/", "https://shop.example/", "https://news.example/a?b=c"]
            )
        if event["event_type"] == "search":
            event["search_terms"] = rng.choice(SEARCHES)
        elif event["event_type"] == "link_click":
            event["link_url"] = rng.choice(PAGES)
        elif event["event_type"] == "page_leave":
            event["time_on_page_ms"] = rng.randrange(0, 4_000_000)
        return event


def make_events(count: int, seed: int = 7) -> list[bytes]:
    """The first `count` events of the benchmark's stream."""
    return EventStream(seed).take(count)


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def make_pipeline(geo_path: Path | None) -> Pipeline:
    """A fresh pipeline (empty caches, new keys) with 2% of returning subjects opted out."""
    policy = default_policy()
    consent = ConsentState()
    for index in range(0, 5000, 50):
        consent.apply(
            {"subject_type": "cookie_id", "subject_id": f"user-{index:06d}", "action": "opt_out"}
        )
    return Pipeline.from_policy(
        policy,
        keys=GeneratedKeyProvider(rotation_seconds=policy.keys.rotation_seconds),
        geo=GeoLookup(str(geo_path)) if geo_path else None,
        consent=consent,
    )


class Tally:
    """What the measured runs saw, added batch by batch outside the timed sections.

    Outcomes are not kept: a worker drops each batch's outcomes once it has sent them, and
    holding thousands alive would only give the garbage collector more to walk.
    """

    def __init__(self) -> None:
        self.looked: Counter[str] = Counter()
        self.emitted = 0
        self.measured = 0

    def add(self, events: list[dict[str, Any]], outcomes: list[Outcome]) -> None:
        self.looked += lookups(events, outcomes)
        self.emitted += sum(isinstance(o, Anonymized) for o in outcomes)
        self.measured += len(outcomes)


class GcTime:
    """CPU time the garbage collector takes during the timed chain calls (`gc.callbacks`)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections: Counter[int] = Counter()
        self.measuring = False
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if not self.measuring:
            return
        if phase == "start":
            self._started = time.process_time()
        else:
            self.seconds += time.process_time() - self._started
            self.collections[info["generation"]] += 1


def chain_only(
    pipeline: Pipeline,
    raw: list[bytes],
    batch: int,
    tally: Tally | None = None,
    gc_time: GcTime | None = None,
) -> tuple[float, float]:
    """Events/s and CPU seconds of the chain alone, as a worker runs it: each batch of B
    events is decoded (not timed), then `process_batch` on it is timed."""
    process = pipeline.process_batch
    loads = orjson.loads
    spent = 0.0
    for chunk in _chunks(raw, batch):
        events = [loads(line) for line in chunk]
        if gc_time is not None:
            gc_time.measuring = True
        started = time.process_time()
        outcomes = process(events)
        spent += time.process_time() - started
        if gc_time is not None:
            gc_time.measuring = False
        if tally is not None:
            tally.add(events, outcomes)
    return _rate(len(raw), spent), spent


def memory_probe_ns(entries: int = 262_144, probes: int = 100_000, seed: int = 5) -> float:
    """Nanoseconds (CPU time, best of 3) per look-up of a fresh key string in a dict of
    `entries` keys, as large as the chain's memos: how long this machine waits on memory
    right now. Context for the chain's figure, which is mostly such look-ups (a shared VM's
    neighbours can double it); not part of any figure."""
    rng = random.Random(seed)
    keys = [f"cookie-{rng.getrandbits(64):016x}" for _ in range(entries)]
    table = {key: f"{index:022d}" for index, key in enumerate(keys)}
    # New string objects, as decoded events bring: hashed, then compared with the stored key.
    fresh = [("x" + keys[rng.randrange(entries)])[1:] for _ in range(probes)]
    get = table.get
    times = []
    for _ in range(3):
        started = time.process_time()
        for key in fresh:
            get(key)
        times.append(time.process_time() - started)
    return min(times) / probes * 1e9


def ceiling(raw: list[bytes]) -> float:
    """Events/s (CPU time) of orjson decode + encode alone."""
    loads, dumps = orjson.loads, orjson.dumps
    started = time.process_time()
    for line in raw:
        dumps(loads(line))
    return _rate(len(raw), time.process_time() - started)


def full(pipeline: Pipeline, raw: list[bytes], batch: int, tally: Tally | None = None) -> float:
    """Events/s (CPU time) of decode + chain + encode, batch by batch."""
    loads, dumps = orjson.loads, orjson.dumps
    process = pipeline.process_batch
    spent = 0.0
    for chunk in _chunks(raw, batch):
        started = time.process_time()
        events = [loads(line) for line in chunk]
        results = process(events)
        for result in results:
            if isinstance(result, Anonymized):
                dumps(result.event)
        spent += time.process_time() - started
        if tally is not None:
            tally.add(events, results)
    return _rate(len(raw), spent)


def lookups(events: list[dict[str, Any]], outcomes: list[Outcome]) -> Counter[str]:
    """How many look-ups each cache of `Pipeline.cache_stats` served for these events.

    The benchmark's own accounting (the chain does not count hits: that would cost on
    every event): every event presenting a subject field meets the consent gate's digest
    memo; an emitted event went through every unit that its fields reach.
    """
    counts: Counter[str] = Counter()
    for event, outcome in zip(events, outcomes, strict=True):
        for name in SUBJECT_FIELDS:
            if isinstance(event.get(name), str) and event[name]:
                counts[f"consent_digest:{name}"] += 1
        if not isinstance(outcome, Anonymized):
            continue
        for field, cache in FIELD_CACHES:
            if isinstance(event.get(field), str):
                counts[cache] += 1
        source = next((name for name in SUBJECT_FIELDS if event.get(name)), "visitor")
        counts[f"pseudonym:{source}"] += 1
    return counts


FIELD_CACHES = (
    ("ip", "ip"),
    ("page_url", "url"),
    ("link_url", "url"),
    ("referrer_url", "referrer"),
    ("search_terms", "search_terms"),
    ("user_agent", "user_agent"),
    ("browser_language", "language"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000, help="events per measured run")
    parser.add_argument("--repeat", type=int, default=20, help="measured repetitions")
    parser.add_argument("--warmup", type=int, default=400_000, help="events before measuring")
    parser.add_argument("--cold", type=int, default=100_000, help="events of the cold run")
    parser.add_argument("--batch", type=int, default=500, help="events per collector message")
    parser.add_argument("--geo-db", type=Path, default=None)
    parser.add_argument(
        "--python-gc",
        action="store_true",
        help="keep Python's garbage collector settings instead of a worker's",
    )
    parser.add_argument(
        "--no-native",
        action="store_true",
        help="run on the slow twin (anonymizers.native.slow) even where the C one is built",
    )
    args = parser.parse_args()
    if args.no_native:
        use_native(False)
    young_threshold = 0 if args.python_gc else DEFAULT_YOUNG_THRESHOLD
    geo_path = args.geo_db
    if geo_path is None:
        from stream.cli.preview import bundled_geo_database

        geo_path = bundled_geo_database()
    count, batch = args.events, args.batch
    stream = EventStream()

    # Each pipeline starts as a worker's does: built, then the collector settled.
    cold_pipeline = make_pipeline(geo_path)
    settle_after_startup(young_threshold)
    cold, _ = chain_only(cold_pipeline, stream.take(args.cold), batch)
    del cold_pipeline
    pipeline = make_pipeline(geo_path)
    settle_after_startup(young_threshold)
    for start in range(0, args.warmup, 100_000):
        full(pipeline, stream.take(min(100_000, args.warmup - start)), batch)

    # getattr: older commits of the chain have no cache_stats (to measure them alike).
    stats = getattr(pipeline, "cache_stats", dict)
    before = stats()
    probe_before = memory_probe_ns()
    runs: list[tuple[float, float, float]] = []
    pipeline_tally, chain_tally = Tally(), Tally()
    gc_time = GcTime()
    chain_seconds = 0.0
    for _ in range(args.repeat):
        raw = stream.take(count)
        top = ceiling(raw)
        rate = full(pipeline, raw, batch, pipeline_tally)
        chain_rate, seconds = chain_only(pipeline, stream.take(count), batch, chain_tally, gc_time)
        chain_seconds += seconds
        runs.append((top, rate, chain_rate))
    after = stats()
    probe_after = memory_probe_ns()
    looked = pipeline_tally.looked + chain_tally.looked
    if "geo" in after and "ip" in after:
        # The geolocation caches serve the IP memo's misses.
        looked["geo"] = after["ip"][2] - before["ip"][2]
    emitted, measured = pipeline_tally.emitted, pipeline_tally.measured
    print(
        f"{args.repeat} runs of {count:,} fresh events each (pipeline: {emitted:,} of {measured:,} "
        f"emitted), after a warm-up of {args.warmup:,}; batches of {batch}; "
        f"geo: {geo_path.name if geo_path else 'none'}; events/s of CPU time on one core"
    )
    compiled = Path(chain_module.__file__ or "").suffix != ".py"
    print(f"chain: {'compiled with mypyc (setup.py)' if compiled else 'pure Python'}")
    if young_threshold:
        settings = f"a worker's: start-up frozen, young threshold {young_threshold:,}"
    else:
        settings = "Python's defaults (--python-gc)"
    print(f"garbage collector: {settings}; thresholds now {gc.get_threshold()}")
    if native_enabled():
        native = (
            "the fast twin, anonymizers.native._fast (fingerprint tables, event clock, IPv4 "
            "reader and index search)"
        )
    else:
        native = "the slow twin (" + ("--no-native" if args.no_native else "not built") + ")"
    print(f"C extension: {native}")
    print(
        f"{'cold chain alone (fresh caches, ' + format(args.cold, ',') + ' events):':44s}{cold:10,.0f}"
    )
    for label, column in (
        ("ceiling  (orjson decode + encode)", 0),
        ("pipeline (decode + chain + encode)", 1),
        ("chain alone", 2),
    ):
        values = [run[column] for run in runs]
        line = (
            f"{label + ':':44s}{max(values):10,.0f} best {statistics.median(values):10,.0f} median"
        )
        if column == 1:
            line += f"  ({max(run[1] / run[0] for run in runs):.1%} of ceiling)"
        if column == 2:
            line += "  (target >= 100,000)"
        print(line)
    print(
        f"memory: a look-up in a 262,144-entry dict took {probe_before:.0f} ns before the "
        f"runs, {probe_after:.0f} ns after (CPU time; higher means a busier machine)"
    )
    generations = "/".join(str(gc_time.collections[g]) for g in range(3))
    print(
        f"garbage collection in the chain alone: {gc_time.seconds / chain_seconds:.1%} of its "
        f"CPU time (collections of generation 0/1/2: {generations})"
    )
    print("caches: entries / bound; misses / look-ups over the measured runs; hit rate")
    for name, (size, bound, misses) in after.items():
        missed = misses - before.get(name, (0, 0, 0))[2]
        total = looked.get(name, 0)
        rate = f"{1 - missed / total:6.1%}" if total else "     -"
        print(f"  {name:26s}{size:9,} / {bound:<9,}{missed:9,} / {total:<9,}{rate}")


if __name__ == "__main__":
    main()
