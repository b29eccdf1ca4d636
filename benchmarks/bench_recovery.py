"""Benchmark of aggregate-worker recovery (issue 17 item 5; prints figures, not a timed test).

    python benchmarks/bench_recovery.py [--events 1000000] [--people N] [--bootstrap HOST:PORT]
                                        [--fetch-messages 1] [--workdir DIR] [--loglevel warning]
                                        [--json]

How long a killed aggregate worker takes to be back at the live edge when today's day window
holds `--events` events. The aggregate stage commits the first offset its oldest open window
needs (`stream.stages.aggregate`), so a restarted worker replays its input from the start of
the open day window: the recovery time grows with the window, not with a checkpoint interval.

1. A broker: `--bootstrap`, else ANONSTREAM_BENCH_BOOTSTRAP, else a local one for the run.
2. Input: `anonstream generate --seed 17 --start <today 00:00 UTC>` with its timestamps spread
   from midnight to a few minutes before now (the day window stays open; the minute and hour
   windows close and emit partials as in production), run through the anonymize stage's own
   code in this process (`AnonymizeStage` with the default policy's `Pipeline`, generated
   keys, the bundled geolocation database and the generator's consent records; the `child`
   records the stage emits are applied to its consent state, as its consent table would). Its
   output is produced as the anonymize worker sends it: per fetch of `--fetch-messages` raw
   50-event messages, one JSON array per destination partition with its `anonstream-src`
   header. The default, one raw message per fetch, is the shape a worker at the live edge
   writes (small messages); `--fetch-messages 1000` is the shape of a catching-up one. Input
   ends at the first fetch that brings the forwarded events to `--events` (overshoot < 50).
3. `anonstream worker --stage aggregate` (fresh settings, topics and group) consumes it all:
   "first worker catch-up", spawn to live edge. Live edge: its
   `anonstream_aggregate_events_total{outcome="events"}` plus the events its replay guard
   dropped as duplicates (`anonstream_aggregate_stage_total{what="duplicate_events"}`; see
   `Run.duplicates`) equals the events it had to read (every one re-applied; nothing new
   arrives); the run then also waits for
   `anonstream_consumer_lag` 0 on every partition, printed apart (the worker's offset probe
   runs every 5 s). Once its commits stop moving it is killed (SIGKILL) and a second worker
   is spawned at once in the same group: "recovery", spawn to live edge, split into process
   up (spawn to /metrics), start-up (spawn to /readyz; it includes the Faust app group's wait
   for the killed member's session to expire), group join (ready to its first event: the
   stage consumer's group) and replay. Events to replay: those of the messages from the
   committed offsets to the end.

CPU: utime + stime of the worker process from spawn to live edge (start-up included); RSS:
its VmHWM then. /metrics is read every `POLL_S`: times are to about that. Each figure is
printed beside the 60 s target and the first worker's catch-up over the same input, measured
in the same run: the machine is shared, so absolute figures vary by tens of percent.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson

from stream.local.bench.exceptions import BenchError
from stream.local.bench.procfs import cpu_seconds, peak_rss_mb
from stream.local.bench.traffic import batch_lines
from stream.settings import Settings

TARGET_S = 60.0
"""Issue 17 item 5: recovery with a million-event open day window at most this long."""
SEED = 17
RAW_PARTITIONS = 6
"""Partitions of the (notional) events.raw the input came from, as the bench's."""
MARGIN_S = 300.0
"""The last event is this long before the run starts (events never come from the future)."""
FORWARDED_SHARE = 0.45
"""Lower bound of the share of generated items the chain forwards (with the generator's
defaults 0.71 of 28,000 items, 0.51 of 1.7 million: a fixed population's consent records
drop more as the day fills): the generator is asked for `events / FORWARDED_SHARE` items."""
POLL_S = 0.25
"""How often a worker's /metrics is read."""
START_TIMEOUT_S = 300.0
STALL_S = 120.0
"""A worker whose event count stays put this long before the live edge has failed."""
SETTLE_S = 3.0
"""The first worker's commits must stay unchanged this long before it is killed."""
PRODUCE_BATCH_BYTES = 1_000_000
"""Record batch size: under the broker's default message.max.bytes (1,048,588)."""
PRODUCE_REQUEST_BYTES = 8 * 1024 * 1024
EVENTS = 'anonstream_aggregate_events_total{outcome="events"}'
DUPLICATES = 'anonstream_aggregate_stage_total{what="duplicate_events"}'
"""Events the stage's replay guard dropped as already taken (see `watch_until_live`)."""


def _progress(line: str) -> None:
    print(f"[recovery {time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------- input
@dataclass
class Produced:
    """What events.pseudonymized holds: per partition, the event count of each message
    (offset = index: the topic is fresh and written by one idempotent producer)."""

    events_per_message: dict[int, list[int]] = field(default_factory=dict)
    raw_items: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    """Raw items the stage did not forward, by reason (dead-letter or policy)."""
    seconds: float = 0.0

    @property
    def events(self) -> int:
        return sum(sum(counts) for counts in self.events_per_message.values())

    @property
    def messages(self) -> int:
        return sum(len(counts) for counts in self.events_per_message.values())

    def events_from(self, offsets: dict[int, int]) -> int:
        """Events of the messages at or after `offsets` ({partition: offset}; 0 if absent)."""
        return sum(
            sum(counts[offsets.get(partition, 0) :])
            for partition, counts in self.events_per_message.items()
        )


def day_span(now: datetime) -> tuple[datetime, float]:
    """(today 00:00 UTC, seconds from then to `MARGIN_S` before `now`)."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    span = (now - midnight).total_seconds() - MARGIN_S
    if span < 600:
        raise BenchError(
            f"it is {now:%H:%M} UTC: too early in the day for a day window of traffic; "
            "run again after 00:15 UTC"
        )
    return midnight, span


def generate(settings: Settings, workdir: Path, *, events: int, people: int | None) -> Path:
    """`anonstream generate --seed 17 --start <midnight>` into workdir/traffic.jsonl, its
    timestamps from midnight to `MARGIN_S` before now."""
    from stream.local.processes import settings_env

    midnight, span = day_span(datetime.now(UTC))
    items = int(events / FORWARDED_SHARE) + 1000
    path = workdir / "traffic.jsonl"
    command = [
        sys.executable,
        "-m",
        "stream",
        "generate",
        *("--seed", str(SEED)),
        *("--to", str(path)),
        *("--start", midnight.isoformat().replace("+00:00", "Z")),
        *("--rate", f"{items / span:.6f}"),
        *("--duration", f"{span:.3f}"),
        *(("--people", str(people)) if people else ()),
    ]
    _progress(f"generating {items:,} items from {midnight:%Y-%m-%d} 00:00 UTC over {span:,.0f} s")
    started = time.monotonic()
    result = subprocess.run(
        command, env=settings_env(settings), capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise BenchError(f"anonstream generate failed ({result.returncode}):\n{result.stderr}")
    _progress(f"  generated in {time.monotonic() - started:.1f} s")
    return path


def anonymize_and_produce(
    settings: Settings, traffic: Path, *, events: int, fetch_messages: int
) -> Produced:
    """The anonymize stage's output for `traffic`, produced to settings.topic_pseudonymized
    until `events` events are forwarded (see the module doc)."""
    return asyncio.run(
        _anonymize_and_produce(settings, traffic, events=events, fetch_messages=fetch_messages)
    )


def raw_fetches(
    traffic: Path, *, max_bytes: int, fetch_messages: int, block_lines: int = 100_000
) -> Iterator[tuple[int, list[tuple[bytes, int]]]]:
    """(raw partition, [(raw message, raw offset)]) of each fetch an anonymize worker would
    make of the traffic pre-filled as `anonstream bench` does (50-event arrays, message i at
    offset i // RAW_PARTITIONS of partition i % RAW_PARTITIONS): `fetch_messages` consecutive
    messages of one raw partition, partitions in turn. Read `block_lines` lines at a time (an
    array closes at each block's end) so the input never sits in memory whole."""
    step = fetch_messages * RAW_PARTITIONS
    index = 0
    with traffic.open("rb") as source:
        while True:
            # Lines, not splitlines(): a malformed item may hold a carriage return.
            block = [line.rstrip(b"\n") for line in itertools.islice(source, block_lines)]
            if not block:
                return
            raw = batch_lines([line for line in block if line], max_bytes=max_bytes)
            for first in range(0, len(raw), step):
                group = raw[first : first + step]
                for partition in range(RAW_PARTITIONS):
                    chunk = [
                        (value, (index + first + i) // RAW_PARTITIONS)
                        for i, value in enumerate(group)
                        if (index + first + i) % RAW_PARTITIONS == partition
                    ]
                    if chunk:
                        yield partition, chunk
            index += len(raw)


async def _anonymize_and_produce(
    settings: Settings, traffic: Path, *, events: int, fetch_messages: int
) -> Produced:
    from anonymizers.chain import Pipeline
    from anonymizers.keys import GeneratedKeyProvider
    from anonymizers.policy import default_policy
    from stream import kafka
    from stream.cli.preview import load_consent
    from stream.resources import open_geo
    from stream.stages.anonymize import SOURCE_HEADER, AnonymizeStage, source_header

    policy = default_policy()
    consent, _summary = load_consent(
        traffic.with_name("traffic.consent.jsonl"), forms=policy.identifiers.forms()
    )
    geo = open_geo(settings)
    pipeline = Pipeline.from_policy(
        policy,
        keys=GeneratedKeyProvider(rotation_seconds=policy.keys.rotation_seconds),
        geo=geo,
        consent=consent,
    )
    stage = AnonymizeStage(
        pipeline=pipeline,
        partitions=settings.partitions,
        max_message_bytes=settings.max_message_bytes,
    )
    produced = Produced(raw_items=0)
    topic = settings.topic_pseudonymized
    producer = kafka.async_producer(
        settings, max_batch_size=PRODUCE_BATCH_BYTES, max_request_size=PRODUCE_REQUEST_BYTES
    )
    await producer.start()
    pending: list[asyncio.Future[Any]] = []
    builders: dict[int, Any] = {}
    started = time.monotonic()
    try:
        forwarded = 0
        for raw_partition, chunk in raw_fetches(
            traffic, max_bytes=settings.max_message_bytes, fetch_messages=fetch_messages
        ):
            before = stage.counters.consumed
            routed = stage.process_fetch(chunk, topic=settings.topic_raw, partition=raw_partition)
            produced.raw_items += stage.counters.consumed - before
            for _key, value in routed.consent:  # the consent table reads them back
                consent.apply(orjson.loads(value))
            for target, payload, offsets in routed.forward_payloads(
                max_bytes=settings.max_message_bytes
            ):
                header = [(SOURCE_HEADER, source_header(raw_partition, offsets))]
                builder = builders.get(target) or producer.create_batch()
                if builder.append(key=None, value=payload, timestamp=None, headers=header) is None:
                    pending.append(await producer.send_batch(builder, topic, partition=target))
                    builder = producer.create_batch()
                    if (
                        builder.append(key=None, value=payload, timestamp=None, headers=header)
                        is None
                    ):
                        raise BenchError(f"a {len(payload)}-byte message fits no record batch")
                builders[target] = builder
                produced.events_per_message.setdefault(target, []).append(len(offsets))
                forwarded += len(offsets)
            if forwarded >= events:
                break
            if len(pending) > 64:
                await asyncio.gather(*pending)
                pending.clear()
        else:
            raise BenchError(
                f"the generated traffic gave only {forwarded:,} forwarded events of {events:,}"
            )
        for target, builder in builders.items():
            pending.append(await producer.send_batch(builder, topic, partition=target))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
        if geo is not None:
            geo.close()
    produced.seconds = time.monotonic() - started
    produced.dropped = {
        **{f"deadletter:{k}": v for k, v in stage.counters.deadlettered.items()},
        **{f"dropped:{k}": v for k, v in stage.counters.dropped.items()},
    }
    return produced


# ------------------------------------------------------------------------------- workers
@dataclass
class Run:
    """One aggregate worker from spawn to the live edge (seconds from spawn)."""

    name: str
    expected_events: int
    web_s: float | None = None
    """Its /metrics first answered (process up, modules imported, app built)."""
    ready_s: float | None = None
    first_event_s: float | None = None
    live_s: float = 0.0
    """Every expected event counted."""
    lag_zero_s: float | None = None
    """Its /metrics first showed lag 0 on every partition (the offset probe runs every 5 s)."""
    timeline: list[tuple[float, int]] = field(default_factory=list)
    """(seconds from spawn, events counted) at each change."""
    events: int = 0
    duplicates: int = 0
    """Events dropped as duplicates: with large fetches the anonymize stage splits one raw
    message's events over two messages to the same partition, and the aggregate stage's
    replay guard (per raw partition, offsets beyond the highest taken) drops the second part."""
    cpu_s: float = 0.0
    cpu_startup_s: float | None = None
    rss_mb: float = 0.0
    state_mb: float = 0.0

    @property
    def replay_s(self) -> float | None:
        return None if self.first_event_s is None else self.live_s - self.first_event_s

    @property
    def join_s(self) -> float | None:
        if self.first_event_s is None or self.ready_s is None:
            return None
        return self.first_event_s - self.ready_s


def lag_zero(samples: dict[str, float], *, partitions: int) -> bool:
    """Fresh lag figures, 0 on every one of `partitions` partitions."""
    if not samples.get("anonstream_consumer_lag_known"):
        return False
    lags = [v for k, v in samples.items() if k.startswith("anonstream_consumer_lag{")]
    return len(lags) == partitions and not any(lags)


def watch_until_live(
    process: Any, *, port: int, spawned: float, run: Run, partitions: int, log: Path
) -> Run:
    """Poll the worker until it counted every expected event, then until it reports lag 0;
    fill `run`. BenchError if it exits, never starts, stalls or counts too many."""
    from stream.local.demo import scrape

    last_events, last_change = -1, time.monotonic()
    while True:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise BenchError(f"{run.name} exited with {process.returncode}; log ends:\n{tail}")
        samples = scrape(port)
        now = time.monotonic()
        elapsed = time.time() - spawned
        if samples and run.web_s is None:
            run.web_s = elapsed
        if run.ready_s is None and samples.get("anonstream_ready") == 1:
            run.ready_s = elapsed
            run.cpu_startup_s = cpu_seconds(process.pid)
        # Every event read ends counted or dropped as a duplicate (see `Run.duplicates`).
        duplicates = int(samples.get(DUPLICATES, 0))
        events = int(samples.get(EVENTS, 0)) + duplicates
        if events and run.first_event_s is None:
            run.first_event_s = elapsed
        if events != last_events:
            run.timeline.append((round(elapsed, 2), events))
        if events > run.expected_events:
            raise BenchError(f"{run.name} counted {events} events; expected {run.expected_events}")
        if events == run.expected_events and not run.live_s:
            run.live_s = elapsed
            run.events = events
            run.duplicates = duplicates
            run.cpu_s = cpu_seconds(process.pid)
            run.rss_mb = peak_rss_mb(process.pid)
            run.state_mb = samples.get("anonstream_aggregate_state_bytes", 0) / 2**20
        if run.live_s and lag_zero(samples, partitions=partitions):
            run.lag_zero_s = elapsed
            return run
        if run.live_s and elapsed - run.live_s > 30:
            raise BenchError(f"{run.name}: all events counted but no lag 0 within 30 s; {log}")
        if events != last_events:
            last_events, last_change = events, now
        elif events and now - last_change > STALL_S and not run.live_s:
            raise BenchError(
                f"{run.name}: {events:,} of {run.expected_events:,} events for {STALL_S:.0f} s; "
                f"log: {log}"
            )
        elif not events and elapsed > START_TIMEOUT_S:
            raise BenchError(f"{run.name} counted no event within {START_TIMEOUT_S:.0f} s")
        time.sleep(POLL_S)


def committed_offsets(settings: Settings, *, partitions: int) -> dict[int, int]:
    """The aggregate group's committed offsets of events.pseudonymized, {partition: offset}."""
    return asyncio.run(_committed_offsets(settings, partitions=partitions))


async def _committed_offsets(settings: Settings, *, partitions: int) -> dict[int, int]:
    from aiokafka import TopicPartition

    from stream import kafka

    admin = kafka.async_admin(settings)
    await admin.start()
    try:
        answer = await admin.list_consumer_group_offsets(
            settings.group_id("aggregate"),
            partitions=[TopicPartition(settings.topic_pseudonymized, p) for p in range(partitions)],
        )
    finally:
        await admin.close()
    return {
        tp.partition: meta.offset
        for tp, meta in answer.items()
        if meta is not None and meta.offset >= 0
    }


def settled_commits(
    settings: Settings, *, partitions: int, timeout_s: float = 60.0
) -> dict[int, int]:
    """The group's committed offsets once every partition has one and they stayed the same
    for `SETTLE_S`."""
    deadline = time.monotonic() + timeout_s
    previous: dict[int, int] | None = None
    since = time.monotonic()
    while time.monotonic() < deadline:
        offsets = committed_offsets(settings, partitions=partitions)
        if offsets != previous:
            previous, since = offsets, time.monotonic()
        elif len(offsets) == partitions and time.monotonic() - since >= SETTLE_S:
            return offsets
        time.sleep(0.5)
    raise BenchError(f"the aggregate group's commits did not settle: {previous}")


def measure(
    settings: Settings, produced: Produced, workdir: Path, *, loglevel: str
) -> tuple[Run, Run, dict[int, int]]:
    """The first worker's catch-up, then SIGKILL and the second worker's recovery."""
    from stream.local import processes
    from stream.local.broker import free_port

    partitions = len(produced.events_per_message)
    first = Run("first worker catch-up", expected_events=produced.events)
    port = free_port()
    log = workdir / "aggregate-1.log"
    _progress("first aggregate worker: catching up on the whole input ...")
    spawned = time.time()
    process = processes.spawn_worker(
        settings, "aggregate", web_port=port, log=log, loglevel=loglevel
    )
    try:
        watch_until_live(
            process, port=port, spawned=spawned, run=first, partitions=partitions, log=log
        )
        _progress(f"  at the live edge after {first.live_s:.1f} s; waiting for its commits")
        offsets = settled_commits(settings, partitions=partitions)
    finally:
        process.kill()  # SIGKILL: no clean shutdown, no last commit
        process.wait()
    replay = produced.events_from(offsets)
    _progress(f"  killed; committed {offsets}: {replay:,} events to replay")
    second = Run("recovery after SIGKILL", expected_events=replay)
    port = free_port()
    log = workdir / "aggregate-2.log"
    spawned = time.time()
    process = processes.spawn_worker(
        settings, "aggregate", web_port=port, log=log, loglevel=loglevel
    )
    try:
        watch_until_live(
            process, port=port, spawned=spawned, run=second, partitions=partitions, log=log
        )
    finally:
        processes.stop(process)
    return first, second, offsets


# ------------------------------------------------------------------------------- output
def table(first: Run, second: Run) -> str:
    """Recovery and its parts beside the target and the first worker's catch-up."""

    def s(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    def vs(value: float | None, reference: float | None) -> str:
        return "-" if value is None or not reference else f"{value / reference:.2f}"

    rows = [
        ("figure", "recovery", "x 60 s target", "first worker", "recovery / first"),
        (
            "spawn -> live edge, s",
            s(second.live_s),
            vs(second.live_s, TARGET_S),
            s(first.live_s),
            vs(second.live_s, first.live_s),
        ),
        ("  process up: spawn -> /metrics answers, s", s(second.web_s), "", s(first.web_s), ""),
        ("  start-up: spawn -> ready, s", s(second.ready_s), "", s(first.ready_s), ""),
        ("  group join: ready -> first event, s", s(second.join_s), "", s(first.join_s), ""),
        (
            "  replay: first event -> live edge, s",
            s(second.replay_s),
            "",
            s(first.replay_s),
            vs(second.replay_s, first.replay_s),
        ),
        (
            "lag 0 on /metrics (probe every 5 s), s",
            s(second.lag_zero_s),
            "",
            s(first.lag_zero_s),
            "",
        ),
        ("events read", f"{second.events:,}", "", f"{first.events:,}", ""),
        (
            "  of which dropped as duplicates",
            f"{second.duplicates:,}",
            "",
            f"{first.duplicates:,}",
            "",
        ),
        (
            "events/s while reading",
            f"{second.events / second.replay_s:,.0f}" if second.replay_s else "-",
            "",
            f"{first.events / first.replay_s:,.0f}" if first.replay_s else "-",
            "",
        ),
        ("CPU s (spawn -> live edge)", s(second.cpu_s), "", s(first.cpu_s), ""),
        ("  of which start-up, CPU s", s(second.cpu_startup_s), "", s(first.cpu_startup_s), ""),
        ("peak RSS, MiB", f"{second.rss_mb:.0f}", "", f"{first.rss_mb:.0f}", ""),
        ("open-window state, MiB", f"{second.state_mb:.0f}", "", f"{first.state_mb:.0f}", ""),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    )


@contextmanager
def broker(bootstrap: str | None, home: Path) -> Iterator[str]:
    """`bootstrap`, ANONSTREAM_BENCH_BOOTSTRAP, or a local broker for the run."""
    address = bootstrap or os.environ.get("ANONSTREAM_BENCH_BOOTSTRAP")
    if address:
        yield address
        return
    from stream.local.broker import running_broker

    _progress("starting a local broker ...")
    with running_broker(home / "broker", partitions=RAW_PARTITIONS) as state:
        yield state.bootstrap


def run_settings(bootstrap: str, workdir: Path) -> Settings:
    """Settings of this run: its own topics, groups and state, a key-encryption key."""
    from stream.tables.keyring import write_key_encryption_key

    app = f"recovery{uuid.uuid4().hex[:8]}"
    return Settings(
        bootstrap_servers=bootstrap,
        app_id=app,
        topic_raw=f"{app}.events.raw",
        topic_pseudonymized=f"{app}.events.pseudonymized",
        topic_deadletter=f"{app}.events.deadletter",
        topic_partials=f"{app}.stats.partials",
        topic_aggregates=f"{app}.stats.aggregates",
        topic_consent=f"{app}.privacy.consent",
        topic_keys=f"{app}.privacy.keys",
        partitions=RAW_PARTITIONS,
        data_dir=workdir / "state",
        key_encryption_key_file=write_key_encryption_key(workdir / "key-encryption-key"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the day window")
    parser.add_argument(
        "--people", type=int, default=None, help="visitor population (generator's default)"
    )
    parser.add_argument("--bootstrap", default=None, help="an existing broker (host:port)")
    parser.add_argument(
        "--fetch-messages",
        type=int,
        default=1,
        help="raw 50-event messages per anonymize fetch (1: live-edge shape; 1000: catch-up)",
    )
    parser.add_argument(
        "--loglevel", default="warning", help="the workers' log level (their logs: --workdir)"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="kept after the run")
    parser.add_argument("--json", action="store_true", help="one JSON object on the last line")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-recovery-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        with broker(args.bootstrap, workdir) as bootstrap:
            result = bench(
                bootstrap,
                workdir,
                events=args.events,
                people=args.people,
                fetch_messages=args.fetch_messages,
                loglevel=args.loglevel,
            )
    except BenchError as exc:
        sys.exit(f"bench_recovery: {exc}")
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(orjson.dumps(result, option=orjson.OPT_NON_STR_KEYS).decode())


def bench(
    bootstrap: str,
    workdir: Path,
    *,
    events: int,
    people: int | None,
    fetch_messages: int,
    loglevel: str,
) -> dict[str, Any]:
    from stream.topics import create_topics, topic_specs

    settings = run_settings(bootstrap, workdir)
    create_topics(settings, topic_specs(settings))
    traffic = generate(settings, workdir, events=events, people=people)
    _progress(f"anonymizing and producing (fetches of {fetch_messages} raw messages) ...")
    produced = anonymize_and_produce(
        settings, traffic, events=events, fetch_messages=fetch_messages
    )
    traffic.unlink()
    _progress(
        f"  {produced.events:,} events in {produced.messages:,} messages "
        f"({produced.events / produced.messages:.1f} events each) from "
        f"{produced.raw_items:,} raw items, in {produced.seconds:.1f} s; not forwarded: "
        f"{dict(sorted(produced.dropped.items()))}"
    )
    first, second, offsets = measure(settings, produced, workdir, loglevel=loglevel)
    load = os.getloadavg()
    print(
        f"\naggregate-worker recovery: {produced.events:,} events in today's open day window, "
        f"{produced.messages:,} messages of events.pseudonymized ({len(offsets)} partitions); "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} CPUs\n"
    )
    print(table(first, second))
    verdict = "within" if second.live_s <= TARGET_S else "OVER"
    print(f"\nrecovery {second.live_s:.1f} s: {verdict} the {TARGET_S:.0f} s target")
    return {
        "events": produced.events,
        "messages": produced.messages,
        "fetch_messages": fetch_messages,
        "people": people,
        "committed_offsets": offsets,
        "first": {**asdict(first), "replay_s": first.replay_s, "join_s": first.join_s},
        "recovery": {**asdict(second), "replay_s": second.replay_s, "join_s": second.join_s},
        "target_s": TARGET_S,
        "loadavg": load,
    }


if __name__ == "__main__":
    main()
