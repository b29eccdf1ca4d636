# ruff: noqa: E501  (long literal tables of test data)
"""Throughput of the anonymizer chain in one process, beside a ceiling measured in the same run.

Input: `anonstream generate --seed 17` traffic (the workers' own: app SDK fields beside the
user agent, URLs with query strings, consent signals), its consent records applied. The
chain alone was once measured at 100,000+ events/s on a hand-made mix that skipped the slow
paths real traffic takes (issue: worker throughput); this benchmark explains the worker's
end-to-end figure (`anonstream bench`), it does not replace it.

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
                                     [--geo-db PATH] [--python-gc]
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

from anonymizers.chain import Pipeline
from anonymizers.consent import ConsentState
from anonymizers.fields import SUBJECT_FIELDS
from anonymizers.geo import GeoLookup
from anonymizers.keys import GeneratedKeyProvider
from anonymizers.outcome import Anonymized, Outcome
from anonymizers.policy import default_policy
from stream.gcsettings import DEFAULT_YOUNG_THRESHOLD, settle_after_startup

SEED = 17
"""`anonstream generate --seed`: the same traffic in every run."""
RATE = 200
"""Events per second of generated time (the demo's rate): how dense the timestamps are."""


class EventStream:
    """Encoded raw events from `anonstream generate` (the traffic the workers see: 91% carry
    an app SDK's browser, OS or hardware beside the user agent, URLs with query strings,
    consent signals, children), one continuous stream: `take(n)` continues it, so no measured
    slice repeats an earlier one. Generated once per run, `total` events, no malformed items
    (the chain's input is what validation passed); `consent` holds the generated consent
    records (opt-outs, erasures, children), which the pipeline's consent state applies.
    """

    def __init__(self, total: int, *, seed: int = SEED) -> None:
        import subprocess
        import sys
        import tempfile

        with tempfile.TemporaryDirectory(prefix="bench-chain-") as directory:
            events = Path(directory) / "events.jsonl"
            command = [
                sys.executable, "-m", "stream", "generate", "--to", str(events),
                "--seed", str(seed), "--rate", str(RATE), "--duration", str(total / RATE),
                "--start", "2024-05-01T00:00:00Z", "--malformed-share", "0",
            ]  # fmt: skip
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            lines = events.read_bytes().splitlines()
            consent_file = events.with_suffix(".consent.jsonl")
            self.consent = [orjson.loads(line) for line in consent_file.read_bytes().splitlines()]
        # One event per line: a line holding an array is taken apart as the worker would.
        self._raw: list[bytes] = []
        for line in lines:
            decoded = orjson.loads(line)
            if isinstance(decoded, list):
                self._raw.extend(orjson.dumps(item) for item in decoded)
            else:
                self._raw.append(line)
        self._index = 0

    def take(self, count: int) -> list[bytes]:
        """The next `count` events of the stream, encoded (fewer only if it ran out)."""
        out = self._raw[self._index : self._index + count]
        self._index += len(out)
        if len(out) < count:
            raise SystemExit(f"the generated stream ran out ({len(self._raw):,} events)")
        return out


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def make_pipeline(geo_path: Path | None, consent_records: list[dict[str, Any]]) -> Pipeline:
    """A fresh pipeline (empty caches, new keys) whose consent state holds the generated
    consent records."""
    policy = default_policy()
    consent = ConsentState(forms=policy.identifiers.forms())
    for record in consent_records:
        consent.apply(record)
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
    args = parser.parse_args()
    young_threshold = 0 if args.python_gc else DEFAULT_YOUNG_THRESHOLD
    geo_path = args.geo_db
    if geo_path is None:
        from stream.cli.preview import bundled_geo_database

        geo_path = bundled_geo_database()
    count, batch = args.events, args.batch
    stream = EventStream(args.cold + args.warmup + 2 * args.repeat * count)

    # Each pipeline starts as a worker's does: built, then the collector settled.
    cold_pipeline = make_pipeline(geo_path, stream.consent)
    settle_after_startup(young_threshold)
    cold, _ = chain_only(cold_pipeline, stream.take(args.cold), batch)
    del cold_pipeline
    pipeline = make_pipeline(geo_path, stream.consent)
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
    if young_threshold:
        settings = f"a worker's: start-up frozen, young threshold {young_threshold:,}"
    else:
        settings = "Python's defaults (--python-gc)"
    print(f"garbage collector: {settings}; thresholds now {gc.get_threshold()}")
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
