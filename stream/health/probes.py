"""Where a worker's consumer stands: lag, progress, commits; what liveness and readiness see.

faust-streaming consumers can stall silently (faust-streaming#175, #640) and recovery can
hang (#74): a process that is up is not a process that works. Every worker therefore keeps
a `ProgressWatch` of its input topic:

* the stage records, per processed message (anonymize) or consumer batch (aggregate,
  release), the next offset it will process on that partition and how long the work took
  (`processed`): an integer store, a clock read and a histogram bucket;
* a background `OffsetProbe`, every `PROBE_INTERVAL_S`, asks the broker with its own
  clients (not the stage's consumer, which may be the one stuck) for the end offsets of the
  assigned partitions, the group's committed offsets and the consent topic's end offsets.

From these: lag per partition (end offset minus the next offset to process; the committed
offset stands in before the first message of a partition), seconds since the last progress,
and the commit age. A worker is **stalled** when it has lag and processed nothing for
`stall_timeout_s` (setting `ANONSTREAM_STALL_TIMEOUT_S`, default 60 s) since it started
consuming; work that legitimately processes nothing (the release stage reading back its
published keys on assignment) runs inside `recovering()` and counts as a stall only past
`RECOVERY_LIMIT` stall timeouts. The probe's figures are at most `PROBE_INTERVAL_S` old;
figures older than `PROBE_STALE_S` count as unknown (no lag is claimed, nothing is declared
stalled on them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from stream import kafka
from stream.health.metrics import LatencyHistogram
from stream.settings import Settings

log = logging.getLogger(__name__)

PROBE_INTERVAL_S = 5.0
"""How often the probe asks the broker for end and committed offsets."""
PROBE_STALE_S = 30.0
"""Probe figures older than this are ignored (lag unknown)."""
RECOVERY_LIMIT = 10
"""A recovery (`ProgressWatch.recovering`) longer than this many stall timeouts hangs."""


@dataclass
class ProbeResult:
    """One answer of the broker (partition -> offset), and when it came (monotonic s)."""

    end: dict[int, int] = field(default_factory=dict)
    committed: dict[int, int] = field(default_factory=dict)
    consent_end: dict[int, int] = field(default_factory=dict)
    at: float = 0.0


class ProgressWatch:
    """Processing progress of one worker's input topic (see module doc).

    `consumes` gives the partitions the stage's consumer is assigned now;
    `commit_follows_processing`: the stage commits what it processed within seconds
    (anonymize: after every fetch, once its output is acknowledged), so an old uncommitted
    position means the commit path is stuck. The aggregate and release stages keep their
    commit point behind open windows (an open 1-day window holds it for a day) by design;
    their commit age is reported but not judged.
    """

    def __init__(
        self,
        *,
        topic: str,
        group_id: str,
        stall_timeout_s: float,
        commit_follows_processing: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.topic = topic
        self.group_id = group_id
        self.stall_timeout_s = stall_timeout_s
        self.commit_follows_processing = commit_follows_processing
        self._clock = clock
        self.latency = LatencyHistogram()
        self.positions: dict[int, int] = {}
        self.assigned: Callable[[], set[int]] = set
        self.started_at: float | None = None
        self.last_progress_at = clock()
        self.probe = ProbeResult()
        self.probe_errors = 0
        self._committed_changed_at = clock()
        self._last_committed: dict[int, int] = {}
        self._recovering = 0
        self._recovery_started_at = 0.0

    # -- the stage's side (hot path) ----------------------------------------------------
    def start(self, assigned: Callable[[], set[int]]) -> None:
        """The stage begins consuming; stalls are judged from now on."""
        self.assigned = assigned
        self.started_at = self.last_progress_at = self._clock()

    def processed(self, partition: int, next_offset: int, seconds: float) -> None:
        """One message (or batch) of `partition` done; `next_offset` is the next to process."""
        self.positions[partition] = next_offset
        self.latency.observe(seconds)
        self.last_progress_at = self._clock()

    @contextlib.contextmanager
    def recovering(self) -> Iterator[None]:
        """Work that legitimately processes no message (e.g. the release stage reading back
        published keys on assignment): not a stall, unless it lasts `RECOVERY_LIMIT`
        stall timeouts (a hung recovery, faust-streaming#74)."""
        if self._recovering == 0:
            self._recovery_started_at = self._clock()
        self._recovering += 1
        try:
            yield
        finally:
            self._recovering -= 1
            if self._recovering == 0:
                self.last_progress_at = self._clock()

    def processed_batch(self, positions: Mapping[int, int], seconds: float) -> None:
        """One consumer batch done: {partition: next offset to process}, time it took."""
        self.positions.update(positions)
        self.latency.observe(seconds)
        self.last_progress_at = self._clock()

    # -- the probe's side ---------------------------------------------------------------
    def probed(self, result: ProbeResult) -> None:
        if result.committed != self._last_committed:
            self._last_committed = dict(result.committed)
            self._committed_changed_at = result.at
        self.probe = result

    def fresh(self) -> bool:
        """The probe answered within `PROBE_STALE_S`."""
        return self.probe.at > 0 and self._clock() - self.probe.at <= PROBE_STALE_S

    # -- judgements ---------------------------------------------------------------------
    def lag(self) -> dict[int, int] | None:
        """Messages not yet processed per assigned partition; None when unknown."""
        if not self.fresh():
            return None
        out: dict[int, int] = {}
        for partition in self.assigned():
            end = self.probe.end.get(partition)
            if end is None:
                continue
            position = self.positions.get(partition, self.probe.committed.get(partition))
            if position is None:
                position = 0
            out[partition] = max(0, end - position)
        return out

    def idle_s(self) -> float:
        """Seconds since the last processed message (or since consuming started)."""
        return self._clock() - self.last_progress_at

    def commit_age_s(self) -> float:
        """Seconds the committed offsets have stayed behind what was processed (0 when all is
        committed or unknown)."""
        if not self.fresh():
            return 0.0
        behind = any(
            position > self.probe.committed.get(partition, -1)
            for partition, position in self.positions.items()
            if partition in self.assigned()
        )
        return max(0.0, self._clock() - self._committed_changed_at) if behind else 0.0

    def stalled(self) -> str | None:
        """Why the consumer counts as stalled, or None. See module doc."""
        if self.started_at is None:
            return None
        if self._recovering:
            limit = RECOVERY_LIMIT * self.stall_timeout_s
            if self._clock() - self._recovery_started_at > limit:
                return "recovery hangs"
            return None
        lag = self.lag()
        if lag and sum(lag.values()) > 0 and self.idle_s() > self.stall_timeout_s:
            return "lag without progress"
        if self.commit_follows_processing and self.commit_age_s() > self.stall_timeout_s:
            return "commits stopped"
        return None


def consent_behind(positions: Mapping[int, int], targets: Mapping[int, int]) -> bool:
    """True when the consent reader has not reached `targets` (end offsets probed earlier)."""
    return any(positions.get(p, 0) < end for p, end in targets.items())


class OffsetProbe:
    """Background task feeding a `ProgressWatch` with broker offsets (see module doc).

    `consent_positions` (optional) gives the consent reader's next offsets per partition;
    with it, the probe also records how far the consent reader is behind its topic, and
    `consent_current()` turns False when it stayed behind for `stall_timeout_s`.
    """

    def __init__(
        self,
        settings: Settings,
        watch: ProgressWatch,
        *,
        consent_positions: Callable[[], Mapping[int, int]] | None = None,
        interval_s: float = PROBE_INTERVAL_S,
    ) -> None:
        self._settings = settings
        self.watch = watch
        self._consent_positions = consent_positions
        self._interval_s = interval_s
        self._consumer: Any = None
        self._admin: Any = None
        self._consent_partitions: list[int] = []
        self._previous_consent_end: dict[int, int] = {}
        self.consent_behind_since: float | None = None

    def consent_lag(self) -> int | None:
        """Consent records not yet applied (None: unknown or no consent reader)."""
        if self._consent_positions is None or not self.watch.fresh():
            return None
        positions = self._consent_positions()
        return sum(
            max(0, end - positions.get(p, 0)) for p, end in self.watch.probe.consent_end.items()
        )

    def consent_current(self) -> bool:
        """False when the consent reader has been behind its topic for `stall_timeout_s`."""
        since = self.consent_behind_since
        return since is None or time.monotonic() - since <= self.watch.stall_timeout_s

    async def run(self) -> None:
        """Probe forever (cancel to stop); broker errors are counted, logged by type, retried."""
        while True:
            try:
                await self._start()
                while True:
                    await self.probe_once()
                    await asyncio.sleep(self._interval_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker hiccups: retried with fresh clients
                self.watch.probe_errors += 1
                log.warning("offset probe failed: %s", type(exc).__name__)
                await asyncio.sleep(self._interval_s)
            finally:
                await self.stop()

    async def _start(self) -> None:
        settings = self._settings
        self._consumer = kafka.async_consumer(settings)
        await self._consumer.start()
        self._admin = kafka.async_admin(settings)
        await self._admin.start()
        if self._consent_positions is not None:
            self._consent_partitions = await kafka.topic_partitions(
                settings, settings.topic_consent
            )

    async def probe_once(self) -> None:
        from aiokafka import TopicPartition

        watch = self.watch
        assigned = sorted(watch.assigned())
        result = ProbeResult()
        if assigned:
            tps = [TopicPartition(watch.topic, p) for p in assigned]
            ends = await self._consumer.end_offsets(tps)
            result.end = {tp.partition: offset for tp, offset in ends.items()}
            committed = await self._admin.list_consumer_group_offsets(
                watch.group_id, partitions=tps
            )
            result.committed = {
                tp.partition: meta.offset
                for tp, meta in committed.items()
                if meta is not None and meta.offset >= 0
            }
        if self._consent_partitions:
            topic = self._settings.topic_consent
            ends = await self._consumer.end_offsets(
                [TopicPartition(topic, p) for p in self._consent_partitions]
            )
            result.consent_end = {tp.partition: offset for tp, offset in ends.items()}
        result.at = time.monotonic()
        watch.probed(result)
        if self._consent_positions is not None:
            # Behind = not yet at the end offsets of the previous probe, an interval ago: a
            # reader that keeps up always is, however busy the topic.
            behind = consent_behind(self._consent_positions(), self._previous_consent_end)
            self._previous_consent_end = result.consent_end
            if not behind:
                self.consent_behind_since = None
            elif self.consent_behind_since is None:
                self.consent_behind_since = result.at

    async def stop(self) -> None:
        for client, close in ((self._consumer, "stop"), (self._admin, "close")):
            if client is not None:
                with contextlib.suppress(Exception):
                    await getattr(client, close)()
        self._consumer = self._admin = None


def input_problems(watch: ProgressWatch | None, probe: OffsetProbe | None) -> list[str]:
    """Liveness problems of a stage's input consumer and consent reader (see module doc)."""
    out: list[str] = []
    why = watch.stalled() if watch is not None else None
    if why is not None:
        out.append(f"input consumer stalled: {why}")
    if probe is not None and not probe.consent_current():
        out.append("consent reader behind its topic")
    return out
