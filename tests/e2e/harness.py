"""Run the three stages as real worker processes on the real broker, on a test's traffic.

Time: the events lie two UTC days back (day D-2), so that every window of them, the day
window included, can close during the test. The anonymize worker's key clock is set to ten
minutes before the end of D-2 (`ANONSTREAM_CLOCK_OFFSET_S`): it holds the key of D-2 and,
within the key lead, of D-1. Windows close on event time: once every event of D-2 is on
`events.pseudonymized`, a flush of page views stamped on D-1 (after the allowed lateness)
from many people, so that every partition sees one, moves every partition's watermark past
the end of D-2. The idle timeout is long, so idleness closes nothing during a test.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from stream.settings import Settings
from stream.topics import create_topics, topic_specs
from tests.conftest import isolated_settings
from tests.support.cli import run_cli
from tests.support.kafka import produce, read_all, read_topic
from tests.support.workers import WorkerFactory, WorkerProcess

from .traffic import PAGES, Traffic, rfc3339_ms
from .truth import METRICS

DAY_S = 86_400
FORWARDED = "anonstream_events_forwarded_total"
CONSUMED = "anonstream_events_consumed_total"


@dataclass(frozen=True)
class Timeline:
    """The days of a test run (unix seconds)."""

    day: int  # start of D-2, the day of the test's events
    clock_offset_s: float  # for the anonymize worker: its clock reads end of D-2 - 10 min

    @classmethod
    def now(cls) -> Timeline:
        today = int(time.time()) // DAY_S * DAY_S
        day = today - 2 * DAY_S
        return cls(day=day, clock_offset_s=(day + DAY_S - 600) - time.time())

    def at(self, hours: float) -> int:
        """Milliseconds since the Unix epoch of D-2 + `hours`."""
        return int((self.day + hours * 3600) * 1000)


def flush_traffic(timeline: Timeline, *, lateness_s: int, people: int = 120) -> Traffic:
    """Page views on D-1 after the lateness, from `people` people (every partition gets
    some: the chance that one of 4 partitions gets none of 120 pseudonyms is 4 * 0.75^120)."""
    traffic = Traffic()
    rng = random.Random(0)
    start_ms = (timeline.day + DAY_S + lateness_s + 60) * 1000
    for i in range(people):
        person = traffic.person(f"flush-{i}", raw_partition=i % 4, place=0, rng=rng)
        traffic.add(person, start_ms + i, "page_view", page_url=PAGES[0])
    return traffic


class Pipeline:
    """Topics, a policy file and the workers of one end-to-end run."""

    def __init__(
        self,
        settings: Settings,
        workers: WorkerFactory,
        *,
        policy_text: str,
        geo_db: Path,
        directory: Path,
        timeline: Timeline,
    ) -> None:
        self.settings = settings
        self.workers = workers
        self.timeline = timeline
        self.policy_path = directory / "policy.toml"
        self.policy_path.write_text(policy_text)
        self.geo_db = geo_db
        self.stages: dict[str, WorkerProcess] = {}
        self.raw_sent = 0
        create_topics(settings, topic_specs(settings))

    def start(self, stage: str) -> WorkerProcess:
        env: dict[str, Any] = {"policy_path": self.policy_path, "geo_db_path": self.geo_db}
        if stage == "anonymize":
            env["clock_offset_s"] = self.timeline.clock_offset_s
        worker = self.workers.start(self.settings, stage, **env)
        self.stages[stage] = worker
        return worker

    def start_all(self) -> None:
        for stage in ("anonymize", "aggregate", "release"):
            self.start(stage)
        for worker in self.stages.values():
            worker.wait_ready(timeout_s=90)

    def check(self) -> None:
        """Raise if a worker that should run has exited."""
        for worker in self.stages.values():
            worker.ensure_alive()

    def send(self, traffic: Traffic) -> None:
        """Produce `traffic` to the raw topic (each person's events to their partition)."""
        by_partition: dict[int, list[bytes]] = {}
        for partition, value in traffic.messages():
            by_partition.setdefault(partition, []).append(value)
        for partition, values in by_partition.items():
            produce(self.settings, self.settings.topic_raw, values, partition=partition)
        self.raw_sent += len(traffic.events)

    def wait_forwarded(self, *, timeout_s: float = 120) -> None:
        """Until the anonymize worker consumed every raw event sent and forwarded them all."""
        worker = self.stages["anonymize"]
        values = worker.wait_metric(CONSUMED, at_least=self.raw_sent, timeout_s=timeout_s)
        assert values.get(FORWARDED) == self.raw_sent, {
            k: v for k, v in values.items() if k.startswith("anonstream_events")
        }

    def flush(self, *, lateness_s: int) -> None:
        """Send the D-1 flush once every event so far is forwarded (so it comes after them
        in every partition of events.pseudonymized)."""
        self.wait_forwarded()
        self.send(flush_traffic(self.timeline, lateness_s=lateness_s))

    def released(
        self,
        *,
        until: Callable[[list[dict[str, Any]]], bool],
        timeout_s: float = 180,
        settle_s: float = 3.0,
    ) -> list[Any]:
        """Records of stats.aggregates, read until `until(values)` holds (then `settle_s`)."""
        return read_topic(
            self.settings,
            self.settings.topic_aggregates,
            until=lambda records: until([orjson.loads(r.value) for r in records]),
            timeout_s=timeout_s,
            settle_s=settle_s,
            check=self.check,
        )

    def duplicate_forwarded(self, *, every: int = 3) -> int:
        """Send again every `every`-th message of events.pseudonymized, as it was (value,
        source header, partition): what a crashed anonymize worker's replay adds. Returns
        the number of copies sent."""
        from stream import kafka as kafka_clients

        records = read_all(self.settings, self.settings.topic_pseudonymized, idle_s=1.0)
        copies = records[::every]
        producer = kafka_clients.producer(self.settings, max_request_size=4_000_000)
        try:
            for record in copies:
                producer.send(
                    record.topic,
                    value=record.value,
                    partition=record.partition,
                    headers=list(record.headers),
                )
            producer.flush(timeout=60)
        finally:
            producer.close()
        return len(copies)

    def preview(self, traffic: Traffic, *, consent: bytes = b"") -> list[dict[str, Any]]:
        """`anonstream preview` of `traffic`'s raw events with this run's policy and geo
        database (and `consent` records, JSONL): the records of its aggregates.jsonl."""
        directory = self.policy_path.parent / f"preview-{uuid.uuid4().hex[:8]}"
        directory.mkdir()
        events = directory / "events.jsonl"
        events.write_bytes(traffic.jsonl())
        args = ["preview", "--events", str(events), "--policy", str(self.policy_path)]
        args += ["--geo-db", str(self.geo_db), "--out", str(directory / "out")]
        if consent:
            (directory / "consent.jsonl").write_bytes(consent)
            args += ["--consent", str(directory / "consent.jsonl")]
        result = run_cli(self.settings, *args)
        assert result.exit_code == 0, result.output
        lines = (directory / "out" / "aggregates.jsonl").read_bytes().splitlines()
        return [orjson.loads(line) for line in lines]

    def released_day(self, names: Iterable[str] | None = None) -> list[tuple[str, dict[str, Any]]]:
        """(key, value) of stats.aggregates once every metric's D-2 day window is out (or
        that of each of `names`)."""
        records = self.released(until=day_complete(self.timeline.day, names))
        return [(r.key.decode(), orjson.loads(r.value)) for r in records]

    def all_released(self) -> list[Any]:
        return read_all(self.settings, self.settings.topic_aggregates, idle_s=2.0)


def canonical(values: Iterable[dict[str, Any]]) -> Counter[bytes]:
    """Records as a multiset of canonical JSON texts (order-free comparison)."""
    return Counter(orjson.dumps(v, option=orjson.OPT_SORT_KEYS) for v in values)


@contextmanager
def pipeline_run(
    bootstrap: str, directory: Path, *, geo_db: Path, policy_text: str, start: bool = True
) -> Iterator[Pipeline]:
    """A `Pipeline` on its own topics, its workers started and ready (unless `start` is
    false); every worker is stopped on exit."""
    settings = isolated_settings(bootstrap, directory / "state")
    factory = WorkerFactory(log_dir=directory / "logs")
    try:
        pipeline = Pipeline(
            settings,
            factory,
            policy_text=policy_text,
            geo_db=geo_db,
            directory=directory,
            timeline=Timeline.now(),
        )
        if start:
            pipeline.start_all()
        yield pipeline
    finally:
        factory.stop_all()


def day_complete(
    day_start_s: int, names: Iterable[str] | None = None
) -> Callable[[list[dict[str, Any]]], bool]:
    """True once every metric (or each of `names`) has a released record of the day window
    starting at `day_start_s` (decided last: every earlier window of the metric is decided
    then, and every metric's windows of one size are decided together)."""
    wanted = set(names) if names is not None else {m.name for m in METRICS if DAY_S in m.windows}
    start = rfc3339_ms(day_start_s * 1000).replace(".000", "")

    def done(values: Iterable[dict[str, Any]]) -> bool:
        seen = {
            v["metric"]
            for v in values
            if v["window_seconds"] == DAY_S and v["window_start"] == start
        }
        return seen >= wanted

    return done
