"""The release stage: merge partials of every partition, apply the release rules once per
cell, and build the records of `stats.aggregates` (`schemas/aggregate.v1.json`).

`ReleaseEngine` receives the records of `stats.partials` (partial and progress records of the
aggregate stage, see `anonymizers.stats.aggregate`). A window is *complete* when every source
partition has reported it closed (a progress record covering its end) and every partial the
partition's report announced has arrived; windows are decided in (end, size) order, each once.
Merging is by key: a replayed or duplicated partial overwrites its twin and never adds.
Order: sources interleave in any order, and a source's records may come again (an aggregate
worker replaying from its last commit), but a source's records are first seen in the order
its worker wrote them, as Kafka delivers one producer's records within a partition: the
engine forgets windows below the floor that every source has closed, so a range of a source
first seen after a later range of the same source would be ignored.

Rules per metric window, on merged exact values:
1. a cell needs at least k distinct subjects (`k_search_terms` for sensitive metrics);
2. the no-bridge audit of `anonymizers.stats.suppression` holds back further cells (smallest first)
   so that no combination of released records, nor any total, nor a coarser window minus its
   finer ones, reveals a held-back count;
3. `other` mode: the held-back cells of an additive metric (count, summary) are folded into an
   `other` cell, released only if it provably holds k subjects
   (max(max cell, ceil(sum / min(M, cells)), total - released) >= k); distinct-subject metrics
   get no `other` (a union of cells cannot be computed from per-cell counts).
   `suppress_total` mode: a `total` cell is released only when nothing was held back;
4. optional noise (`anonymizers.stats.noise`) on every published number.

Release once: the engine is told which keys are already on `stats.aggregates`
(`mark_published`); it computes every decision (deterministic, noise-free) but draws noise
and returns records only for keys never published, so a restart never publishes a second,
different value under a key.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from anonymizers.exceptions import AggregationError
from anonymizers.stats.config import (
    AggregationSpec,
    MetricSpec,
    ReleaseSpec,
)
from anonymizers.stats.decisions import Merged, Release, audit_facts, decide_dp, decide_exact
from anonymizers.stats.ledger import Ledger
from anonymizers.stats.records import (
    AGGREGATE_SCHEMA,
    PARTIAL_SCHEMA,
    Record,
    aggregate_key,
    dims_part,
    window_prefix,
)
from anonymizers.stats.suppression import SuppressionAudit
from anonymizers.stats.windows import (
    MAX_EVENT_US,
    MIN_EVENT_US,
    US_PER_S,
    Coverage,
    Window,
    format_time_us,
    parse_time_us,
)


@dataclass(slots=True)
class _Report:
    report: str
    metrics: dict[str, tuple[int, int]]  # metric -> (cells, subjects)


@dataclass(slots=True)
class _PendingWindow:
    window: Window
    reports: dict[int, _Report] = field(default_factory=dict)
    partials: dict[int, dict[tuple[str, str], Mapping[str, Any]]] = field(default_factory=dict)


def _key_end(key: str) -> int:
    """Window end (microseconds) of an aggregate key; keys that do not parse sort last."""
    parts = key.split("|")
    end = parse_time_us(parts[2]) if len(parts) >= 4 else None
    return 2**62 if end is None else end


class ReleaseEngine:
    """Merge, decide and build the released records of the metric windows.

    - `partitions`: number of source partitions (of `events.pseudonymized`) that report.
    - `policy_version`: copied into every record.
    - `metrics`: names of the metrics this instance releases (default: all), when the stream
      spreads metrics over several release workers (progress records go to all of them).
    - `resume_floor`: the `checkpoint()` persisted before the last offset commit; records of
      windows before it are ignored (already decided).
    """

    def __init__(
        self,
        aggregation: AggregationSpec,
        release: ReleaseSpec,
        *,
        partitions: int,
        policy_version: str,
        metrics: Iterable[str] | None = None,
        resume_floor: str | None = None,
    ) -> None:
        if partitions < 1:
            raise AggregationError(f"partitions must be >= 1; got {partitions}")
        self._aggregation = aggregation
        self._release = release
        self._partitions = partitions
        self._policy_version = policy_version
        names = [m.name for m in aggregation.metrics] if metrics is None else list(metrics)
        self._metrics: tuple[MetricSpec, ...] = tuple(aggregation.metric(n) for n in names)
        self._metric_names = frozenset(names)
        self._ledger = Ledger(release, aggregation.epoch_seconds)
        self._sizes = aggregation.windows
        self._top_us = self._sizes[-1] * US_PER_S
        self._audits = {m.name: SuppressionAudit(self._sizes) for m in self._metrics}
        self._coverage = [Coverage() for _ in range(partitions)]
        self._pending: dict[tuple[int, int], _PendingWindow] = {}
        self._decided: set[tuple[int, int]] = set()
        self._published: set[str] = set()
        self._published_windows: set[str] = set()
        floor = parse_time_us(resume_floor) if resume_floor is not None else None
        if resume_floor is not None and floor is None:
            raise AggregationError(f"resume_floor must be RFC 3339; got {resume_floor!r}")
        self._floor: int | None = floor
        self._needed: dict[int, dict[int, int]] = {}  # source partition -> offset -> window end
        self._progress_offsets: dict[int, dict[int, int]] = {}  # partition -> offset -> through
        self._last_offset: dict[int, int] = {}
        self.counters: Counter[str] = Counter()
        """`partials`, `progress`, `ignored:<reason>`, `windows_decided`, `cells_released`,
        `cells_suppressed`, `cells_complementary`, `audit_unresolved`, `skipped_published`."""

    # ------------------------------------------------------------------ inputs

    def mark_published(self, keys: Iterable[str]) -> None:
        """Keys already on `stats.aggregates` (read back on start): never released again,
        and counted in the ledger as released."""
        budget = self._release.budget
        for key in keys:
            self._published.add(key)
            parts = key.split("|")
            if len(parts) >= 5:
                self._published_windows.add("|".join(parts[:3]) + "|")
            start = parse_time_us(parts[1]) if len(parts) >= 5 else None
            end = parse_time_us(parts[2]) if len(parts) >= 5 else None
            if budget is None or start is None or end is None or end <= start:
                continue
            size = (end - start) // US_PER_S
            name = parts[0]  # metric names need no escaping ([a-z0-9_])
            if name in self._metric_names and self._aggregation.metric(name).released_at(size):
                self._ledger.released(name, Window.of(size, start), budget.family(name, size))

    def add(self, record: Mapping[str, Any], *, source: int = 0, offset: int | None = None) -> None:
        """Take one record of `stats.partials`; `source`/`offset` are its partition and offset
        there, for `safe_offsets()`. Unknown or malformed records are counted and ignored."""
        if offset is not None:
            self._last_offset[source] = max(self._last_offset.get(source, -1), offset)
        if record.get("schema") != PARTIAL_SCHEMA:
            self.counters["ignored:schema"] += 1
            return
        try:
            if record.get("kind") == "progress":
                self._add_progress(record, source, offset)
            elif record.get("kind") == "partial":
                self._add_partial(record, source, offset)
            else:
                self.counters["ignored:kind"] += 1
        except (KeyError, TypeError, ValueError):
            self.counters["ignored:malformed"] += 1

    def _window(self, record: Mapping[str, Any]) -> Window | None:
        start = parse_time_us(record["window_start"])
        size = int(record["window_seconds"])
        if start is None or size not in self._sizes or not MIN_EVENT_US <= start < MAX_EVENT_US:
            raise ValueError("bad window")
        window = Window.of(size, start)
        if self._floor is not None and window.end_us <= self._floor:
            self.counters["ignored:before_floor"] += 1
            return None
        if (size, start) in self._decided:
            self.counters["ignored:decided"] += 1
            return None
        return window

    def _add_progress(self, record: Mapping[str, Any], source: int, offset: int | None) -> None:
        partition = int(record["partition"])
        if not 0 <= partition < self._partitions:
            raise ValueError("partition out of range")
        through = parse_time_us(record["closed_through"])
        raw_from = record.get("closed_from")
        closed_from = None if raw_from is None else parse_time_us(raw_from)
        if through is None or (raw_from is not None and closed_from is None):
            raise ValueError("bad progress times")
        windows = []
        for entry in record["windows"]:
            window = self._window(entry)
            if window is not None:
                metrics = {
                    str(name): (int(v["cells"]), int(v["subjects"]))
                    for name, v in entry["metrics"].items()
                }
                windows.append((window, _Report(str(entry["report"]), metrics)))
        self.counters["progress"] += 1
        self._coverage[partition].add(closed_from, through)
        for window, report in windows:
            pending = self._pending_window(window)
            pending.reports[partition] = report
        if offset is not None:
            self._progress_offsets.setdefault(source, {})[offset] = through

    def _pending_window(self, window: Window) -> _PendingWindow:
        key = (window.size, window.start_us)
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _PendingWindow(window)
        return pending

    def _add_partial(self, record: Mapping[str, Any], source: int, offset: int | None) -> None:
        metric = str(record["metric"])
        if metric not in self._metric_names:
            self.counters["ignored:metric"] += 1
            return
        partition = int(record["partition"])
        if not 0 <= partition < self._partitions:
            raise ValueError("partition out of range")
        window = self._window(record)
        if window is None:
            return
        dimensions = record["dimensions"]
        spec = self._aggregation.metric(metric)
        if set(dimensions) != set(spec.dimensions) or not all(
            isinstance(v, str) for v in dimensions.values()
        ):
            raise ValueError("dimensions do not match the metric")
        int(record["subjects"])
        str(record["report"])
        self.counters["partials"] += 1
        cells = self._pending_window(window).partials.setdefault(partition, {})
        cells[(metric, dims_part(dimensions))] = record
        if offset is not None:
            self._needed.setdefault(source, {})[offset] = window.end_us

    # ------------------------------------------------------------------ readiness

    def _complete(self, pending: _PendingWindow) -> bool:
        end = pending.window.end_us
        for partition in range(self._partitions):
            if not self._coverage[partition].covers(end):
                return False
            report = pending.reports.get(partition)
            if report is None:
                continue
            cells = pending.partials.get(partition, {})
            for metric, (n_cells, _) in report.metrics.items():
                if metric not in self._metric_names:
                    continue
                have = sum(
                    1 for (m, _), r in cells.items() if m == metric and r["report"] == report.report
                )
                if have < n_cells:
                    return False
        return True

    def _closed_everywhere_through(self) -> int | None:
        throughs = [c.through() for c in self._coverage]
        if any(t is None for t in throughs):
            return None
        return min(t for t in throughs if t is not None)

    # ------------------------------------------------------------------ release

    def release_ready(self) -> list[Record]:
        """Decide every complete window, oldest first (a window waits for earlier ones), and
        return the records to publish (only keys never published). The returned keys are
        taken as published from now on."""
        out: list[Record] = []
        for key in sorted(self._pending, key=lambda k: self._pending[k].window):
            pending = self._pending[key]
            if not self._complete(pending):
                break
            out.extend(self._decide(pending))
            del self._pending[key]
            self._decided.add(key)
            self.counters["windows_decided"] += 1
        self._advance_floor()
        return out

    def _advance_floor(self) -> None:
        """Forget state of top-level windows that are wholly decided."""
        closed = self._closed_everywhere_through()
        if closed is None:
            return
        oldest_open = min((p.window.end_us for p in self._pending.values()), default=None)
        horizon = closed if oldest_open is None else min(closed, oldest_open - 1)
        floor = horizon - horizon % self._top_us
        if self._floor is None or floor > self._floor:
            self._floor = floor
            self._decided = {k for k in self._decided if k[1] + k[0] * US_PER_S > floor}
            for audit in self._audits.values():
                audit.forget_before(floor)
            # Keys and offsets of windows before the floor are never needed again.
            self._published = {k for k in self._published if _key_end(k) > floor}
            self._published_windows = {w for w in self._published_windows if _key_end(w) > floor}
            for table in (*self._needed.values(), *self._progress_offsets.values()):
                for offset in [o for o, t in table.items() if t <= floor]:
                    del table[offset]

    def checkpoint(self) -> str | None:
        """Persist this (e.g. with the offset commit, before it) and pass it back as
        `resume_floor`: every window ending at or before it is decided."""
        return None if self._floor is None else format_time_us(self._floor)

    def safe_offsets(self) -> dict[int, int]:
        """Per partition of `stats.partials`, the offset to commit: the lowest offset of a
        record still needed to recompute the undecided top-level windows on a restart."""
        out: dict[int, int] = {}
        for source, last in self._last_offset.items():
            lowest = last + 1
            for table in (self._needed.get(source, {}), self._progress_offsets.get(source, {})):
                if table:
                    lowest = min(lowest, min(table))
            out[source] = lowest
        return out

    def _merge(
        self, pending: _PendingWindow, metric: MetricSpec
    ) -> tuple[dict[str, Merged], dict[str, dict[str, str]], int]:
        cells: dict[str, Merged] = {}
        dims: dict[str, dict[str, str]] = {}
        total_subjects = 0
        for partition, report in sorted(pending.reports.items()):
            if metric.name not in report.metrics:
                continue
            total_subjects += report.metrics[metric.name][1]
            for (name, cell), record in pending.partials.get(partition, {}).items():
                if name == metric.name and record["report"] == report.report:
                    merged = cells.get(cell)
                    if merged is None:
                        merged = cells[cell] = Merged()
                        dims[cell] = record["dimensions"]  # copied by each Release
                    merged.add(record)
        return cells, dims, total_subjects

    def _decide(self, pending: _PendingWindow) -> list[Record]:
        window = pending.window
        out: list[Record] = []
        for metric in self._metrics:
            if not metric.released_at(window.size):
                continue
            cells, dims, total_subjects = self._merge(pending, metric)
            if not cells:
                continue
            prefix = window_prefix(metric.name, window.start, window.end)
            if self._release.mode == "dp" and prefix in self._published_windows:
                # Decided before a restart: at most once (a second draw would spend the
                # budget twice). Exact decisions are deterministic: a restart recomputes them
                # and publishes only the keys never published.
                self.counters["skipped_published"] += 1
                continue
            if self._release.mode == "dp":
                releases = self._decide_dp(metric, window, cells, dims)
            else:
                releases = self._decide_exact(metric, window, cells, dims, total_subjects)
            for found in releases:
                out.extend(self._records(metric, window, found))
        return out

    def _decide_dp(
        self,
        metric: MetricSpec,
        window: Window,
        cells: dict[str, Merged],
        dims: dict[str, dict[str, str]],
    ) -> list[Release]:
        assert self._release.budget is not None
        family = self._release.budget.family(metric.name, window.size)
        releases, held = decide_dp(metric, family, cells, dims)
        self.counters["cells_released"] += len(releases)
        self.counters["cells_below_threshold"] += held
        self._ledger.released(metric.name, window, family)
        return releases

    def _decide_exact(
        self,
        metric: MetricSpec,
        window: Window,
        cells: dict[str, Merged],
        dims: dict[str, dict[str, str]],
        total_subjects: int,
    ) -> list[Release]:
        decision = self._audits[metric.name].decide(
            window_seconds=window.size,
            start_us=window.start_us,
            cells=audit_facts(metric, cells),
            total_subjects=total_subjects,
            k=self._release.k_for(metric),
            other=self._release.suppression == "other" and metric.aggregate != "distinct_subjects",
            max_cells=self._release.cells_bound(metric),
        )
        self.counters["cells_released"] += len(decision.released)
        self.counters["cells_suppressed"] += len(decision.suppressed)
        self.counters["cells_complementary"] += len(decision.complementary)
        self.counters["audit_unresolved"] += int(decision.unresolved)
        return decide_exact(metric, self._release, decision, cells, dims, total_subjects)

    def _records(self, metric: MetricSpec, window: Window, found: Release) -> list[Record]:
        """One record per statistic of a released cell (keys never published only)."""
        protection = self._protection(metric, window)
        out = []
        for statistic, value in found.values.items():
            key = aggregate_key(metric.name, window.start, window.end, found.cell, statistic)
            if key in self._published:
                self.counters["skipped_published"] += 1
                continue
            record = {
                "schema": AGGREGATE_SCHEMA,
                "metric": metric.name,
                "statistic": statistic,
                "aggregate": metric.aggregate,
                "window_start": window.start,
                "window_end": window.end,
                "window_seconds": window.size,
                "cell": found.kind,
                "dimensions": found.dimensions,
                "value": value,
                "distinct_subjects": found.subjects,
                **protection,
                "noise_sd": self._noise_sd(metric, window, statistic),
            }
            self._published.add(key)
            self._published_windows.add(window_prefix(metric.name, window.start, window.end))
            out.append(Record(key, record))
        return out

    def _protection(self, metric: MetricSpec, window: Window) -> dict[str, Any]:
        release = self._release
        k = release.k_for(metric)
        common = {
            "mode": release.mode,
            "k": k,
            "policy_version": self._policy_version,
            "policy_hash": release.policy_hash,
        }
        if release.budget is None:
            return {
                **common,
                "threshold": k,
                "rho": None,
                "epsilon": None,
                "delta": None,
                "suppression": release.suppression,
            }
        family = release.budget.family(metric.name, window.size)
        return {
            **common,
            "threshold": family.threshold,
            "rho": family.rho,
            "epsilon": family.epsilon_share,
            "delta": family.delta_share,
            "suppression": None,
        }

    def _noise_sd(self, metric: MetricSpec, window: Window, statistic: str) -> float | None:
        """The standard deviation of this statistic's noise (None: exact, or a mean)."""
        budget = self._release.budget
        if budget is None:
            return None
        family = budget.family(metric.name, window.size)
        return {
            "distinct_subjects": family.sigma_subjects or None,
            "count": family.sigma_value,
            "sum": family.sigma_sum,
        }.get(statistic)

    def ledger_records(self) -> list[Record]:
        """The ledger entries changed since the last call (absolute values: a replay writes
        the same ones again)."""
        return self._ledger.changed()


class LocalRelease:
    """The aggregate and release stages in one process, over a bounded input: `anonstream
    preview`'s `aggregates.jsonl`. The same code as the stream (one source partition): feed
    anonymized events with `add` (in input order, processed in batches of `batch`), then
    `finish()` closes every window and returns every released record, in release order.
    Memory: the open windows only, as in the stream."""

    def __init__(
        self,
        aggregation: AggregationSpec,
        release: ReleaseSpec,
        *,
        policy_version: str,
        batch: int = 1000,
    ) -> None:
        from anonymizers.stats.aggregate import PartitionAggregator

        self._aggregator = PartitionAggregator(aggregation, release, partition=0)
        self._engine = ReleaseEngine(
            aggregation, release, partitions=1, policy_version=policy_version
        )
        self._batch_size = batch
        self._pending: list[Mapping[str, Any]] = []
        self._offset = 0
        self._released: list[Record] = []

    @property
    def counters(self) -> Counter[str]:
        """The aggregator's counters (events, late, skipped...)."""
        return self._aggregator.counters

    def add(self, event: Mapping[str, Any]) -> None:
        """Take one anonymized event (the next in input order)."""
        self._pending.append(event)
        if len(self._pending) >= self._batch_size:
            self._flush()

    def ledger_records(self) -> list[Record]:
        """The ledger entries of what was released (dp mode)."""
        return self._engine.ledger_records()

    def finish(self) -> list[Record]:
        """Close every window and return every record released since the start."""
        self._flush()
        self._release(self._aggregator.close_all())
        return self._released

    def _flush(self) -> None:
        if not self._pending:
            return
        offsets = list(range(self._offset, self._offset + len(self._pending)))
        self._offset += len(self._pending)
        records = self._aggregator.process_batch(self._pending, offsets=offsets)
        self._pending = []
        self._release(records)

    def _release(self, records: list[Record]) -> None:
        for record in records:
            self._engine.add(record.value)
            self._released.extend(self._engine.release_ready())


def release_events(
    events: Iterable[Mapping[str, Any]],
    aggregation: AggregationSpec,
    release: ReleaseSpec,
    *,
    policy_version: str,
) -> tuple[list[Record], Counter[str]]:
    """`LocalRelease` over a bounded list of events: the released records and the
    aggregator's counters."""
    local = LocalRelease(aggregation, release, policy_version=policy_version)
    for event in events:
        local.add(event)
    return local.finish(), local.counters
