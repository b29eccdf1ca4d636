"""An obviously-correct reference for the aggregation engine, written from the definitions in
PRIVACY.md and the issue, sharing no code with anonymizers.stats.aggregate: plain dicts and sets
over the event list, in list (partition) order."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from anonymizers.stats.config import AggregationSpec, MetricSpec, ReleaseSpec

BASE = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
BASE_S = int(BASE.timestamp())


def at(seconds: float) -> str:
    """RFC 3339 text of BASE + seconds."""
    return datetime.fromtimestamp(BASE_S + seconds, tz=UTC).isoformat().replace("+00:00", "Z")


def seconds_of(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@dataclass
class RefCell:
    subjects: set[str] = field(default_factory=set)
    count: int = 0
    values: list[int] = field(default_factory=list)


CellKey = tuple[str, int, int, tuple[tuple[str, str], ...]]  # metric, size, start - BASE_S, dims


def reference_cells(
    events: Sequence[Mapping[str, Any]], aggregation: AggregationSpec, release: ReleaseSpec
) -> dict[CellKey, RefCell]:
    """Every cell of every window, by definition: late events (window end at or before the
    watermark in force, the latest earlier event time minus the lateness) skipped per window
    size; a subject's first M cells per metric and window admitted; at most L per cell."""
    L, M = release.max_contributions_per_cell, release.max_cells_per_metric
    cells_of_subject: dict[tuple[str, int, int, str], list[tuple[tuple[str, str], ...]]] = (
        defaultdict(list)
    )
    contributions: dict[tuple[str, int, int, str, tuple[tuple[str, str], ...]], list[int]] = (
        defaultdict(list)
    )
    latest: float | None = None
    for event in events:
        t = seconds_of(event["occurred_at"])
        watermark = None if latest is None else latest - aggregation.allowed_lateness
        for size in aggregation.windows:
            start = int(t // size) * size
            if watermark is not None and start + size <= watermark:
                continue
            for metric in aggregation.metrics:
                if event["event_type"] not in metric.event_types:
                    continue
                values = [event.get(d) for d in metric.dimensions]
                if any(not isinstance(v, str) or v == "" for v in values):
                    continue
                value = 0
                if metric.aggregate == "summary":
                    raw = event.get(metric.value_field or "")
                    if not isinstance(raw, int):
                        continue
                    value = min(max(raw, 0), metric.value_max)
                dims = tuple(sorted(zip(metric.dimensions, values, strict=True)))
                owner = (metric.name, size, start, event["subject"])
                if dims not in cells_of_subject[owner]:
                    cells_of_subject[owner].append(dims)
                contributions[(*owner, dims)].append(value)
        latest = t if latest is None else max(latest, t)
    out: dict[CellKey, RefCell] = defaultdict(RefCell)
    for (name, size, start, subject, dims), values in contributions.items():
        if cells_of_subject[(name, size, start, subject)].index(dims) >= M:
            continue
        cell = out[(name, size, start - BASE_S, dims)]
        cell.subjects.add(subject)
        kept = values[:L]
        cell.count += len(kept)
        cell.values.extend(kept)
    return dict(out)


def metric_subjects(cells: Mapping[CellKey, RefCell], name: str, size: int, start: int) -> set[str]:
    """Distinct subjects of a metric window (union over its cells)."""
    out: set[str] = set()
    for (m, s, st, _), cell in cells.items():
        if (m, s, st) == (name, size, start):
            out |= cell.subjects
    return out


def nearest_rank_bin(values: Iterable[int], q: float, width: int, value_max: int) -> int:
    """Lower edge of the bin of the nearest-rank q-percentile."""
    ordered = sorted(values)
    v = ordered[max(1, math.ceil(q * len(ordered))) - 1]
    return min(v // width, value_max // width) * width


def expected_statistic(metric: MetricSpec, cell: RefCell, statistic: str) -> Any:
    """The released value of one statistic of a cell without noise."""
    value = expected_value(metric, cell)
    return value[statistic] if isinstance(value, dict) else value


def expected_value(metric: MetricSpec, cell: RefCell) -> Any:
    """The released value of a cell without noise."""
    if metric.aggregate == "count":
        return cell.count
    if metric.aggregate == "distinct_subjects":
        return len(cell.subjects)
    n = len(cell.values)
    return {
        "count": n,
        "mean": sum(cell.values) / n,
        "p50": nearest_rank_bin(cell.values, 0.5, metric.bin_width, metric.value_max),
        "p90": nearest_rank_bin(cell.values, 0.9, metric.bin_width, metric.value_max),
    }
