"""The planner: what a policy releases of a set of events, against the truth of those events.

`Truth` counts the anonymized events as the analytics team would want them, with no bound,
no noise and no threshold: per metric, window and cell, the events (or the values of a
summary) and the distinct people. Bots are left out when the policy leaves them out. It is
written independently of the aggregate stage, so that it can judge it.

`plan(truth, records, ...)` compares the released records with it, per metric and window
size: the cells the events make, the cells released, the cells held back (and why), the share
of the true total that released cells hold (the sum of their values over the true total),
and the median relative error of released cells holding at least `LARGE_CELL` true units;
with the budget's epsilon of that family per person-day in dp mode.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from anonymizers.policy.budget import Budget
from anonymizers.stats.config import AggregationSpec, MetricSpec
from anonymizers.stats.records import dims_part
from anonymizers.stats.windows import US_PER_S, parse_time_us

LARGE_CELL: Final = 100
"""Cells with at least this many true units count in the median relative error."""
VALUE_STATISTIC: Final = {"count": "count", "distinct_subjects": "distinct_subjects"}


@dataclass(slots=True)
class _TrueCell:
    units: int = 0
    subjects: set[str] = field(default_factory=set)


class Truth:
    """Per (metric, window seconds, window start, cell text): the true units and people."""

    def __init__(self, aggregation: AggregationSpec) -> None:
        self._aggregation = aggregation
        self.cells: dict[tuple[str, int, int, str], _TrueCell] = defaultdict(_TrueCell)

    def add(self, event: Mapping[str, Any]) -> None:
        """One anonymized event."""
        if self._aggregation.exclude_bots and event.get("hardware") == "bot":
            return
        t = parse_time_us(event.get("occurred_at"))
        subject = event.get("subject")
        if t is None or not isinstance(subject, str):
            return
        for metric in self._aggregation.metrics:
            if event.get("event_type") not in metric.event_types:
                continue
            cell = _cell(event, metric)
            if cell is None:
                continue
            for size in metric.windows or self._aggregation.windows:
                span = size * US_PER_S
                found = self.cells[(metric.name, size, t - t % span, cell)]
                found.units += _units(event, metric)
                found.subjects.add(subject)


def _cell(event: Mapping[str, Any], metric: MetricSpec) -> str | None:
    dims = {}
    for name in metric.dimensions:
        value = event.get(name)
        if value is None or value == "":
            return None
        dims[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    if metric.value_field is not None and not isinstance(event.get(metric.value_field), int):
        return None
    return dims_part(dims)


def _units(event: Mapping[str, Any], metric: MetricSpec) -> int:
    """What one event adds to a cell's true value: one event (count, summary count); a
    distinct count is its people, counted apart."""
    return 1


@dataclass(frozen=True, slots=True)
class PlanRow:
    """One metric at one window size (see the module docstring)."""

    metric: str
    window_seconds: int
    cells: int
    released: int
    held_back: dict[str, int]
    share: float | None
    median_relative_error: float | None
    large_cells: int
    epsilon: float | None


def plan(
    truth: Truth,
    records: Iterable[Mapping[str, Any]],
    *,
    aggregation: AggregationSpec,
    budget: Budget | None,
    k_for: Mapping[str, int],
) -> list[PlanRow]:
    """The plan rows, in the policy's metric order and window size order."""
    released: dict[tuple[str, int, int, str], float] = {}
    for record in records:
        metric = aggregation.metric(str(record["metric"]))
        if record.get("cell") != "cell" or record.get("statistic") != _value_statistic(metric):
            continue
        start = parse_time_us(record["window_start"])
        value = record.get("value")
        if start is None or not isinstance(value, int | float):
            continue
        key = (metric.name, int(record["window_seconds"]), start, dims_part(record["dimensions"]))
        released[key] = float(value)
    rows = []
    for metric in aggregation.metrics:
        for size in metric.windows or aggregation.windows:
            rows.append(_row(metric, size, truth, released, budget, k_for[metric.name]))
    return rows


def _value_statistic(metric: MetricSpec) -> str:
    return "distinct_subjects" if metric.aggregate == "distinct_subjects" else "count"


def _row(
    metric: MetricSpec,
    size: int,
    truth: Truth,
    released: Mapping[tuple[str, int, int, str], float],
    budget: Budget | None,
    k: int,
) -> PlanRow:
    distinct = metric.aggregate == "distinct_subjects"
    total = 0
    shown = 0.0
    errors = []
    held = {"below_k": 0, "below_threshold" if budget else "complementary": 0}
    cells = 0
    count = 0
    for (name, cell_size, start, cell), found in truth.cells.items():
        if name != metric.name or cell_size != size:
            continue
        cells += 1
        true = len(found.subjects) if distinct else found.units
        total += true
        value = released.get((name, size, start, cell))
        if value is None:
            reason = "below_k" if len(found.subjects) < k else next(iter(held.keys() - {"below_k"}))
            held[reason] += 1
            continue
        count += 1
        shown += value
        if true >= LARGE_CELL:
            errors.append(abs(value - true) / true)
    epsilon = budget.family(metric.name, size).epsilon_share if budget is not None else None
    return PlanRow(
        metric=metric.name,
        window_seconds=size,
        cells=cells,
        released=count,
        held_back=held,
        share=shown / total if total else None,
        median_relative_error=statistics.median(errors) if errors else None,
        large_cells=len(errors),
        epsilon=epsilon,
    )
