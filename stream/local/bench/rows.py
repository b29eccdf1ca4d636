"""The bench's rows: each row one process of its own, reading a pre-filled topic from the
start in its own consumer group, and the figures taken from it.

Steady interval: rows with output (the Quix peer, the worker) from the broker append time
of their first output record to that of their last (output topics are created with
`message.timestamp.type=LogAppendTime`); the ceiling and Faust rows, which write nothing,
from the first to the last message they saw (monotonic clock, in the process). CPU: utime +
stime of the row's process (all threads) between its first message (first count on the
worker's /metrics) and the end, so start-up is excluded; memory: its VmHWM at the end.

The rows that read a worker row's output (the aggregate and release stages, the latency row)
live in `stream.local.bench.stages` and `stream.local.bench.latency`; what they need of an
upstream row is its `Output`, and they share this module's spawning and watching.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from stream.local.bench.exceptions import BenchError
from stream.local.bench.kafkaio import committed_offsets, end_offsets
from stream.local.bench.procfs import cpu_seconds, peak_rss_mb
from stream.local.bench.traffic import INPUT_PARTITIONS, Progress
from stream.settings import Settings
from stream.topics import TopicSpec, create_topics, topic_specs

APPEND_TIME = {"message.timestamp.type": "LogAppendTime"}
START_TIMEOUT_S = 180.0
"""A row that has not consumed anything this long after its start has failed."""
PLATEAU_S = 10.0
"""A worker whose consumed total stays below the expected count this long has stalled."""
START_POLL_S = 0.1
"""How often a worker's /metrics is read until its first event: the CPU count starts then."""
POLL_S = 1.0
"""How often afterwards (only to know when it is done; times come from the broker): each
read costs the worker CPU that the row would count as its own."""
DONE_TIMEOUT_S = 300.0
"""A row whose input is all consumed but whose `done` check (its last output committed) has
not passed this long after has failed."""
DONE_POLL_S = 0.2
"""How often `done` is checked once the input is consumed (one admin request)."""
CONSUMED = "anonstream_events_consumed_total"
FORWARDED = "anonstream_events_forwarded_total"
LAG = "anonstream_consumer_lag"


@dataclass(frozen=True)
class Input:
    """One pre-filled topic and what it holds."""

    kind: str  # "single" or "batch50"
    topic: str
    messages: int
    items: int


@dataclass
class RowResult:
    """The figures of one row."""

    name: str
    events: int
    seconds: float
    cpu_s: float
    rss_mb: float
    startup_s: float | None = None
    consumed: int | None = None
    figures: dict[str, Any] = dataclasses.field(default_factory=dict)
    """More figures of this row for the JSON object, as `<row>_<name>`."""

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_s_per_100k(self) -> float:
        return self.cpu_s / self.events * 100_000 if self.events else 0.0


@dataclass(frozen=True)
class Output:
    """What a finished row leaves for the rows that read its output."""

    settings: Settings
    """The row's settings: its topics (and the key, consent and input topics it read)."""
    result: RowResult
    events: int
    """Events it passed on: forwarded (anonymize), aggregated (aggregate)."""
    closed_through_us: int | None = None
    """aggregate: every window of its input ended before this (event time, µs since the
    epoch): the release stage is done once its commits say it decided that far."""


# Topics a row gets afresh, named `<app id>.<default name>` (e.g. `....events.pseudonymized`).
ROW_TOPICS = (
    "topic_pseudonymized",
    "topic_deadletter",
    "topic_partials",
    "topic_aggregates",
    "topic_ledger",
    "topic_consent",
    "topic_keys",
)


@dataclass
class Bench:
    """What every row shares: the broker, the run's id and directory, the peers' tools, and
    the outputs of the rows done so far."""

    settings: Settings
    workdir: Path
    progress: Progress
    peer_python: Path | None = None
    mmdb: Path | None = None
    run_id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex[:8])
    outputs: dict[str, Output] = dataclasses.field(default_factory=dict)

    def name(self, *parts: str) -> str:
        """A topic, group or app id of this run: `bench<run>.<parts>`."""
        return ".".join([f"bench{self.run_id}", *parts])

    def output(self, row: str, *, needed_by: str) -> Output:
        """The output of `row`, which `needed_by` reads; BenchError if it did not finish."""
        found = self.outputs.get(row)
        if found is None:
            raise BenchError(f"{needed_by} reads the output of {row}, which did not finish")
        return found

    def row_settings(
        self, row: str, base: Settings, *, fresh: Collection[str], **update: Any
    ) -> Settings:
        """`base` with the app id (so the consumer groups) and state directory of `row`, the
        topics named in `fresh` (Settings field names) its own, and `update` applied."""
        app_id = self.name(row).replace(".", "-")
        topics = {field: f"{app_id}.{Settings.model_fields[field].default}" for field in fresh}
        return base.model_copy(
            update={"app_id": app_id, "data_dir": self.workdir / row, **topics, **update}
        )

    # ------------------------------------------------------------------ peers
    def ceiling(self, source: Input) -> RowResult:
        return self._python_peer("ceiling", source)

    def faust(self, source: Input) -> RowResult:
        return self._python_peer("faust", source)

    def _python_peer(self, row: str, source: Input) -> RowResult:
        name = f"{row}_{source.kind}"
        figures = self.workdir / f"{name}.json"
        command = [
            sys.executable,
            "-m",
            "stream.local.bench.peers",
            row,
            *("--bootstrap", self.settings.bootstrap_servers),
            *("--topic", source.topic),
            *("--group", self.name(name)),
            *("--messages", str(source.messages)),
            *("--out", str(figures)),
        ]
        seen = self._run_peer(name, command, figures)
        if seen["items"] != source.items:
            raise BenchError(
                f"{name}: saw {seen['items']} items in {seen['messages']} messages; the topic "
                f"holds {source.items} in {source.messages}"
            )
        return RowResult(
            name=name,
            events=source.items,
            seconds=seen["last_s"] - seen["first_s"],
            cpu_s=seen["cpu_last_s"] - seen["cpu_first_s"],
            rss_mb=seen["rss_mb"],
        )

    def quix(self, source: Input) -> RowResult:
        if self.peer_python is None or self.mmdb is None:
            raise BenchError("the quix row needs --peer-python and a .mmdb")
        name = f"quix_{source.kind}"
        output = self.name(name, "out")
        create_topics(self.settings, [TopicSpec(output, INPUT_PARTITIONS, "bench", APPEND_TIME)])
        figures = self.workdir / f"{name}.json"
        command = [
            str(self.peer_python),
            str(Path(__file__).with_name("quix_peer.py")),
            *("--bootstrap", self.settings.bootstrap_servers),
            *("--input", source.topic),
            *("--output", output),
            *("--group", self.name(name)),
            *("--messages", str(source.messages)),
            *("--mmdb", str(self.mmdb)),
            *("--out", str(figures)),
        ]
        seen = self._run_peer(name, command, figures)
        span = append_span(self.settings, [output])
        if span.records != source.messages:
            raise BenchError(f"{name}: {span.records} output messages for {source.messages} in")
        return RowResult(
            name=name,
            events=source.items,
            seconds=span.seconds,
            cpu_s=seen["cpu_last_s"] - seen["cpu_first_s"],
            rss_mb=seen["rss_mb"],
        )

    def _run_peer(self, name: str, command: list[str], figures: Path) -> dict[str, Any]:
        """Run a peer until it exits (it stops itself); its figures, or BenchError."""
        self.progress(f"row {name} ...")
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(  # noqa: S603 - our own peers
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        try:
            # The peers stop on their own: after the expected count, or once idle.
            code = process.wait(timeout=24 * 3600)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        if not figures.exists():
            tail = log.read_text(errors="replace")[-3000:]
            raise BenchError(
                f"{name} exited with {code} and wrote no figures; its log ends:\n{tail}"
            )
        seen: dict[str, Any] = orjson.loads(figures.read_bytes())
        if not seen.get("complete"):
            raise BenchError(
                f"{name} stopped after {seen.get('messages')} of {seen.get('target')} messages "
                f"(no message for its idle timeout); log: {log}"
            )
        return seen

    # ------------------------------------------------------------------ the worker
    def worker_settings(self, row: str, source: Input) -> Settings:
        """Fresh topics, group and state for one worker row, reading `source`'s topic."""
        from stream.tables.keyring import write_key_encryption_key

        kek = self.settings.key_encryption_key_file
        if kek is None:  # the bench's own, as the demo's: the worker refuses to run without
            kek = write_key_encryption_key(self.workdir / "key-encryption-key")
        return self.row_settings(
            row,
            self.settings,
            fresh=ROW_TOPICS,
            topic_raw=source.topic,
            partitions=INPUT_PARTITIONS,
            key_encryption_key_file=kek,
        )

    def worker(
        self, source: Input, *, consent: Path, workers: int = 1, tree: Tree | None = None
    ) -> RowResult:
        """`anonstream worker --stage anonymize` on `source` (`workers` processes in one
        group), from spawn to the last output record; with `tree`, that source tree's code
        (row `worker-<label>_<kind>`)."""
        from stream.local.bench.traffic import import_consent

        family = "worker" if workers == 1 else f"worker{workers}"
        module = None
        if tree is not None:
            family = f"worker-{tree.label}"
            module = tree.chain_module()
        name = f"{family}_{source.kind}"
        settings = self.worker_settings(name, source)
        outputs = [settings.topic_pseudonymized, settings.topic_deadletter]
        create_row_topics(settings, append_time=outputs)
        import_consent(settings, consent)
        self.progress(f"row {name} ...")
        spawned = time.time()
        with (
            self.running(name, settings, "anonymize", workers=workers, tree=tree) as started,
            caught_up(settings, stage="anonymize", topic=source.topic) as done,
        ):
            watched = watch_workers(
                started, expected=source.items, name=name, exact=workers == 1, done=done
            )
        span = append_span(settings, outputs)
        forwarded = int(watched.samples.get(FORWARDED, 0))
        result = RowResult(
            name=name,
            events=source.items,
            seconds=span.seconds,
            cpu_s=watched.cpu_s,
            rss_mb=watched.rss_mb,
            startup_s=span.first_ms / 1000 - spawned,
            consumed=watched.consumed,
            figures={"forwarded": forwarded, "output_topic": settings.topic_pseudonymized},
        )
        if module is not None:
            result.figures["chain_module"] = module
        elif workers == 1:
            self.outputs[name] = Output(settings=settings, result=result, events=forwarded)
        return result

    @contextmanager
    def running(
        self,
        name: str,
        settings: Settings,
        stage: str,
        *,
        workers: int = 1,
        tree: Tree | None = None,
    ) -> Iterator[list[Spawned]]:
        """`workers` processes of `anonstream worker --stage <stage>` with `settings`, each
        with its own web port and log `<name>-<i>.log`, running `tree`'s code when given;
        stopped (SIGTERM) on exit."""
        from stream.local import processes
        from stream.local.broker import free_port

        command = [sys.executable, "-m", "stream", "worker", "--stage", stage]
        command += ["--loglevel", "warning"]
        started: list[Spawned] = []
        try:
            for index in range(workers):
                port = free_port()
                log = self.workdir / f"{name}-{index}.log"
                env = processes.settings_env(settings, web_port=port)
                if tree is not None:
                    env.update(tree.env())
                with log.open("wb") as out:
                    process = subprocess.Popen(  # noqa: S603 - our own interpreter
                        command,
                        env=env,
                        cwd=tree.path if tree is not None else None,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                started.append(Spawned(process, port, log))
            yield started
        finally:
            for worker in started:
                processes.stop(worker.process)


@contextmanager
def caught_up(settings: Settings, *, stage: str, topic: str) -> Iterator[Callable[[], bool]]:
    """`done` for `watch_workers`: the `stage` group of `settings` has committed the end
    offsets (as they are on entering) of every partition of `topic` that holds records. The
    stages commit a fetch only once the broker acknowledged its output, so all of that output
    is on the broker then; a worker stopped earlier would lose its last fetch's output (seen:
    half of a small batch50 row's)."""
    ends = end_offsets(settings, topic)
    with committed_offsets(settings, group_id=settings.group_id(stage), topic=topic) as read:

        def done() -> bool:
            committed = read()
            return all(
                committed.get(partition, (-1, ""))[0] >= end
                for partition, end in ends.items()
                if end > 0
            )

        yield done


def create_row_topics(settings: Settings, *, append_time: Collection[str]) -> None:
    """The topics of `settings` (those that exist are left as they are), the ones named in
    `append_time` stamped by the broker (`LogAppendTime`): their times are the row's."""
    specs = [
        dataclasses.replace(spec, configs={**spec.configs, **APPEND_TIME})
        if spec.name in append_time
        else spec
        for spec in topic_specs(settings)
    ]
    create_topics(settings, specs)


@dataclass(frozen=True)
class Tree:
    """Another source tree of anonstream whose worker a row runs (`--compare LABEL=DIR`): a
    checkout of an earlier commit (to measure before and after in one run). The
    worker runs in that directory (`-m` puts the working directory first on sys.path) with it
    on PYTHONPATH, ahead of the installed project."""

    label: str
    path: Path

    def env(self) -> dict[str, str]:
        return {"PYTHONPATH": str(self.path)}

    def chain_module(self) -> str:
        """The file `anonymizers.chain` is imported from under this tree: proof of which code
        the row ran. BenchError if it is not under the tree."""
        import os

        found = subprocess.run(
            [sys.executable, "-c", "import anonymizers.chain as c; print(c.__file__)"],
            env={**os.environ, **self.env()},
            cwd=self.path,
            capture_output=True,
            text=True,
            check=False,
        )
        module = found.stdout.strip()
        if found.returncode != 0 or not Path(module).resolve().is_relative_to(self.path.resolve()):
            raise BenchError(
                f"worker-{self.label}: anonymizers.chain is not imported from {self.path} "
                f"({module or found.stderr.strip()[-300:]})"
            )
        return str(Path(module).relative_to(self.path.resolve()))


@dataclass(frozen=True)
class Spawned:
    """One worker process of a row, its web port and log."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def check_alive(self, name: str) -> None:
        """BenchError with the end of its log if the process has exited."""
        if self.process.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise BenchError(f"{name} exited with {self.process.returncode}; its log ends:\n{tail}")


@dataclass(frozen=True)
class Watched:
    """What `watch_workers` saw when the workers were done."""

    consumed: int
    cpu_s: float
    rss_mb: float
    samples: dict[str, float]
    """Their last /metrics samples, summed over the workers."""


def watch_workers(
    workers: list[Spawned],
    *,
    expected: int,
    name: str,
    exact: bool,
    counter: str = CONSUMED,
    cpu_start: dict[int, float] | None = None,
    done: Callable[[], bool] | None = None,
) -> Watched:
    """Poll the workers' /metrics until their `counter` totals add up to `expected` and then
    `done()` holds (default: at once). CPU seconds of each worker from `cpu_start[pid]` (by
    default from its own first counted event) to then, summed; peak RSS MiB, summed.
    BenchError if one exits, none starts, the total stays below `expected` for PLATEAU_S, or
    `done()` does not hold within DONE_TIMEOUT_S after. With `exact` (one worker) a total
    above `expected` is an error too; several workers may re-read what one consumed but had
    not committed when the group rebalanced."""
    from stream.local.demo import scrape

    started = time.monotonic()
    cpu_first: dict[int, float] = dict(cpu_start or {})
    last_value = -1
    last_change = started
    complete_since: float | None = None
    while True:
        for worker in workers:
            worker.check_alive(name)
        consumed = 0
        samples: dict[str, float] = {}
        for worker in workers:
            scraped = scrape(worker.port)
            for key, value in scraped.items():
                samples[key] = samples.get(key, 0.0) + value
            count = int(scraped.get(counter, 0))
            if count and worker.process.pid not in cpu_first:
                cpu_first[worker.process.pid] = cpu_seconds(worker.process.pid)
            consumed += count
        now = time.monotonic()
        if consumed >= expected:
            if exact and consumed > expected:
                raise BenchError(f"{name} consumed {consumed} events; the topic holds {expected}")
            complete_since = complete_since or now
            if done is None or done():
                cpu = sum(cpu_seconds(pid) - first for pid, first in cpu_first.items())
                rss = sum(peak_rss_mb(worker.process.pid) for worker in workers)
                return Watched(consumed=consumed, cpu_s=cpu, rss_mb=rss, samples=samples)
            if now - complete_since > DONE_TIMEOUT_S:
                raise BenchError(
                    f"{name} consumed its {expected} input items but did not finish its output "
                    f"within {DONE_TIMEOUT_S:.0f} s; logs: "
                    f"{', '.join(str(w.log) for w in workers)}"
                )
            time.sleep(DONE_POLL_S)
            continue
        if consumed != last_value:
            last_value, last_change = consumed, now
        elif consumed and now - last_change > PLATEAU_S:
            raise BenchError(
                f"{name}: consumed total stayed at {consumed} for {PLATEAU_S:.0f} s; the topic "
                f"holds {expected} events ({expected - consumed} missing); logs: "
                f"{', '.join(str(w.log) for w in workers)}"
            )
        elif not consumed and now - started > START_TIMEOUT_S:
            raise BenchError(f"{name} consumed nothing within {START_TIMEOUT_S:.0f} s")
        time.sleep(POLL_S if len(cpu_first) == len(workers) else START_POLL_S)


def wait_assigned(worker: Spawned, *, partitions: int, name: str) -> float:
    """Poll a worker's /metrics until it reports the lag of all `partitions` partitions of
    its input: it joined its group, built its partition workers and is waiting for records.
    Returns when (time.time()); BenchError if it exits or is not there in START_TIMEOUT_S."""
    from stream.local.demo import scrape

    wanted = {f'{LAG}{{partition="{p}"}}' for p in range(partitions)}
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        worker.check_alive(name)
        if wanted <= scrape(worker.port).keys():
            return time.time()
        time.sleep(START_POLL_S)
    raise BenchError(
        f"{name} was not assigned its {partitions} partitions in {START_TIMEOUT_S:.0f} s"
    )


def wait_group_assigned(workers: list[Spawned], *, partitions: int, name: str) -> float:
    """`wait_assigned` for several workers of one group: every worker reports the lag of
    some partitions and together all `partitions`, the same on two polls in a row (a group
    that is still rebalancing moves them). Returns when (time.time())."""
    if len(workers) == 1:
        return wait_assigned(workers[0], partitions=partitions, name=name)
    from stream.local.demo import scrape

    wanted = {f'{LAG}{{partition="{p}"}}' for p in range(partitions)}
    deadline = time.monotonic() + START_TIMEOUT_S
    previous: list[set[str]] = []
    while time.monotonic() < deadline:
        for worker in workers:
            worker.check_alive(name)
        seen = [wanted & scrape(worker.port).keys() for worker in workers]
        if all(seen) and set().union(*seen) == wanted and seen == previous:
            return time.time()
        previous = seen
        time.sleep(max(START_POLL_S, 1.0))
    raise BenchError(
        f"{name}: its {len(workers)} workers were not assigned the {partitions} partitions in "
        f"{START_TIMEOUT_S:.0f} s"
    )


@dataclass(frozen=True)
class Span:
    """Broker append times of the first and last records of some topics."""

    first_ms: int
    last_ms: int
    records: int

    @property
    def seconds(self) -> float:
        return (self.last_ms - self.first_ms) / 1000


def append_span(settings: Settings, topics: list[str], *, tail: int = 20) -> Span:
    """First and last LogAppendTime over every partition of `topics`, and the record count."""
    from kafka import TopicPartition

    from stream import kafka

    consumer = kafka.consumer(settings)
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        begin = consumer.beginning_offsets(partitions)
        end = consumer.end_offsets(partitions)
        firsts: list[int] = []
        lasts: list[int] = []
        records = 0
        for tp in partitions:
            if end[tp] <= begin[tp]:
                continue
            records += end[tp] - begin[tp]
            stamps = _timestamps(consumer, tp, start=begin[tp], stop=min(end[tp], begin[tp] + 1))
            firsts.extend(stamps)
            lasts.extend(
                _timestamps(consumer, tp, start=max(begin[tp], end[tp] - tail), stop=end[tp])
            )
    finally:
        consumer.close()
    if not firsts or not lasts:
        raise BenchError(f"no output record in {', '.join(topics)}")
    return Span(first_ms=min(firsts), last_ms=max(lasts), records=records)


def _timestamps(
    consumer: Any, tp: Any, *, start: int, stop: int, timeout_s: float = 10.0
) -> list[int]:
    """Append timestamps of the records of `tp` in [start, stop)."""
    consumer.assign([tp])
    consumer.seek(tp, start)
    stamps: list[int] = []
    deadline = time.monotonic() + timeout_s
    while consumer.position(tp) < stop and time.monotonic() < deadline:
        for record in consumer.poll(timeout_ms=500).get(tp, []):
            if record.offset >= stop:
                break
            if record.timestamp_type != 1:
                raise BenchError(
                    f"{tp.topic} is not LogAppendTime (timestamp type {record.timestamp_type})"
                )
            stamps.append(record.timestamp)
    return stamps
