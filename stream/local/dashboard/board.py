"""What the dashboard shows, kept in memory and bounded: no Kafka, no I/O (tested alone).

`AggregateBoard` holds the latest released windows of every metric (records of
`stats.aggregates`, schema aggregate.v1), at most `max_windows` windows per metric and
window size and `max_cells` cells per window. `PipelineHistory` holds samples of the
pipeline's counters (summed over the workers) and turns them into rates.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stream.health.metrics import labelled

MAX_WINDOWS = 30
"""Windows kept per metric and window size (30 one-minute windows: half an hour)."""
MAX_CELLS = 1000
"""Cells kept per window (the largest values); a window's `cells` count stays exact."""
TOP_CELLS = 10
"""Cells listed per window in the dashboard data."""


def _size(value: Any) -> float:
    """The number a cell is ranked by: the count of a summary, else the value."""
    if isinstance(value, Mapping):
        count = value.get("count")
        return float(count) if isinstance(count, int | float) else 0.0
    return float(value) if isinstance(value, int | float) else 0.0


def cell_label(dimensions: Mapping[str, Any]) -> str:
    """A cell's dimension values joined by " · " in the order the record gives them."""
    return " · ".join(str(v) for v in dimensions.values()) or "(all)"


@dataclass
class WindowView:
    """The released records of one metric window."""

    start: str
    end: str
    seconds: int
    cells: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)
    released_cells: int = 0
    other: Any = None
    total: Any = None

    def add(self, record: Mapping[str, Any], *, max_cells: int) -> None:
        """Take one record (one statistic of a cell): a summary's statistics are gathered
        into one value object per cell, as the charts read them."""
        kind = record.get("cell")
        value = record.get("value")
        summary = record.get("aggregate") == "summary"
        if kind in ("other", "total"):
            if not summary or record.get("statistic") == "count":
                setattr(self, str(kind), value)
            return
        label = cell_label(record.get("dimensions") or {})
        if label not in self.cells:
            self.released_cells += 1
        if summary:
            known = self.cells.get(label)
            gathered = dict(known[1]["value"]) if known is not None else {}
            gathered[str(record.get("statistic"))] = value
            value = gathered
        self.cells[label] = (
            _size(value),
            {"label": label, "value": value, "subjects": record.get("distinct_subjects")},
        )
        if len(self.cells) > max_cells:
            smallest = min(self.cells, key=lambda name: self.cells[name][0])
            del self.cells[smallest]

    def summary(self, *, top: int) -> dict[str, Any]:
        ranked = sorted(self.cells.values(), key=lambda item: item[0], reverse=True)
        return {
            "start": self.start,
            "end": self.end,
            "seconds": self.seconds,
            "released_cells": self.released_cells,
            "cells_sum": sum(size for size, _ in self.cells.values()),
            "other": self.other,
            "total": self.total,
            "top": [entry for _, entry in ranked[:top]],
        }


@dataclass
class MetricView:
    """The latest windows of one metric at one window size."""

    aggregate: str
    k: int | None
    windows: dict[str, WindowView] = field(default_factory=dict)  # by window_start


class AggregateBoard:
    """Latest released windows per metric (see module doc)."""

    def __init__(self, *, max_windows: int = MAX_WINDOWS, max_cells: int = MAX_CELLS) -> None:
        self.max_windows = max_windows
        self.max_cells = max_cells
        self.metrics: dict[tuple[str, int], MetricView] = {}
        self.records = 0
        self.policy_version: str | None = None
        self.last_record_at: float | None = None

    def add(self, record: Mapping[str, Any]) -> None:
        """Take one aggregate.v2 record (anything else is ignored)."""
        if record.get("schema") != "aggregate.v2":
            return
        metric, seconds = record.get("metric"), record.get("window_seconds")
        start, end = record.get("window_start"), record.get("window_end")
        if not (isinstance(metric, str) and isinstance(seconds, int)):
            return
        if not (isinstance(start, str) and isinstance(end, str)):
            return
        view = self.metrics.get((metric, seconds))
        if view is None:
            k = record.get("k")
            view = self.metrics[(metric, seconds)] = MetricView(
                aggregate=str(record.get("aggregate")), k=k if isinstance(k, int) else None
            )
        window = view.windows.get(start)
        if window is None:
            if len(view.windows) >= self.max_windows and start < min(view.windows):
                return  # older than everything kept
            window = view.windows[start] = WindowView(start=start, end=end, seconds=seconds)
            while len(view.windows) > self.max_windows:
                del view.windows[min(view.windows)]
        window.add(record, max_cells=self.max_cells)
        self.records += 1
        version = record.get("policy_version")
        if isinstance(version, str):
            self.policy_version = version
        self.last_record_at = time.time()

    def window_sizes(self) -> list[int]:
        return sorted({seconds for _, seconds in self.metrics})

    def view(self, *, seconds: int | None = None, top: int = TOP_CELLS) -> dict[str, Any]:
        """Per metric, its windows of size `seconds` (default: the smallest that metric
        has), oldest first, each with its top cells."""
        sizes = self.window_sizes()
        smallest: dict[str, int] = {}
        for metric, size in sorted(self.metrics):
            smallest.setdefault(metric, size)
        if seconds is None:
            seconds = sizes[0] if sizes else None
        metrics: dict[str, Any] = {}
        for (metric, size), view in sorted(self.metrics.items()):
            wanted = smallest[metric] if seconds == (sizes[0] if sizes else None) else seconds
            if size != wanted:
                continue
            metrics[metric] = {
                "window_seconds": size,
                "aggregate": view.aggregate,
                "k": view.k,
                "windows": [view.windows[start].summary(top=top) for start in sorted(view.windows)],
            }
        return {
            "window_seconds": seconds,
            "window_sizes": sizes,
            "records": self.records,
            "policy_version": self.policy_version,
            "metrics": metrics,
        }


# ------------------------------------------------------------------------ pipeline counters
COUNTERS: dict[str, str] = {
    "consumed": "anonstream_events_consumed_total",
    "forwarded": "anonstream_events_forwarded_total",
    "aggregates_released": "anonstream_aggregates_released_total",
    "cells_released": "anonstream_cells_released_total",
}
"""Unlabelled counters summed over the workers: name in the dashboard -> sample name."""
BY_REASON: dict[str, str] = {
    "dropped": "anonstream_events_dropped_total",
    "deadlettered": "anonstream_events_deadlettered_total",
    "suppressed": "anonstream_cells_suppressed_total",
}
"""Counters with a `reason` label, summed over the workers."""
RATE_WINDOW_S = 10.0
"""Rates are averaged over this many seconds of samples."""
SHARE_WINDOW_S = 60.0
"""The suppressed share is taken over the cells decided in this many seconds."""


def totals(samples: Mapping[str, float]) -> dict[str, Any]:
    """The dashboard's counters from summed /metrics samples."""
    out: dict[str, Any] = {name: samples.get(sample, 0.0) for name, sample in COUNTERS.items()}
    for name, sample in BY_REASON.items():
        out[name] = labelled(samples, sample, "reason")
    return out


def _delta(new: Mapping[str, Any], old: Mapping[str, Any], name: str) -> float:
    # A restarted worker starts its counters at 0 again: never report a negative rate.
    return max(0.0, float(new.get(name, 0.0)) - float(old.get(name, 0.0)))


def _deltas(new: Mapping[str, Any], old: Mapping[str, Any], name: str) -> dict[str, float]:
    newer, older = new.get(name, {}), old.get(name, {})
    return {reason: max(0.0, value - older.get(reason, 0.0)) for reason, value in newer.items()}


class PipelineHistory:
    """Samples of `totals()` over time (at most `max_samples`) and the rates they give."""

    def __init__(self, *, max_samples: int = 300) -> None:
        self.samples: deque[tuple[float, dict[str, Any]]] = deque(maxlen=max_samples)

    def add(self, at: float, sample: dict[str, Any]) -> None:
        self.samples.append((at, sample))

    def latest(self) -> dict[str, Any]:
        return self.samples[-1][1] if self.samples else totals({})

    def _before(self, index: int, span_s: float) -> int:
        """Index of the latest sample at least `span_s` older than sample `index` (or 0)."""
        at = self.samples[index][0]
        earlier = index
        while earlier > 0 and at - self.samples[earlier][0] < span_s:
            earlier -= 1
        return earlier

    def rates(self) -> list[dict[str, Any]]:
        """Per sample after the first: events/s in, out, dropped and dead-lettered by reason
        (over `RATE_WINDOW_S`), and the suppressed share of the cells decided in the last
        `SHARE_WINDOW_S` (None when no cell was decided then)."""
        out: list[dict[str, Any]] = []
        samples = self.samples
        for index in range(1, len(samples)):
            at, new = samples[index]
            earlier = self._before(index, RATE_WINDOW_S)
            span = max(1e-9, at - samples[earlier][0])
            old = samples[earlier][1]
            share_old = samples[self._before(index, SHARE_WINDOW_S)][1]
            suppressed = sum(_deltas(new, share_old, "suppressed").values())
            decided = suppressed + _delta(new, share_old, "cells_released")
            out.append(
                {
                    "t": round(at, 3),
                    "in": _delta(new, old, "consumed") / span,
                    "out": _delta(new, old, "forwarded") / span,
                    "dropped": {r: v / span for r, v in _deltas(new, old, "dropped").items()},
                    "deadlettered": {
                        r: v / span for r, v in _deltas(new, old, "deadlettered").items()
                    },
                    "suppressed_share": suppressed / decided if decided else None,
                }
            )
        return out


def sum_samples(scrapes: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Samples of several workers added up by name and labels."""
    total: dict[str, float] = {}
    for samples in scrapes:
        for name, value in samples.items():
            total[name] = total.get(name, 0.0) + value
    return total
