"""Ground truth of the released aggregates, by definition, from the test's own input.

Plain dicts and sets over the expected anonymized fields of each event (`traffic.Sent.view`),
sharing no code with the engine: tumbling windows on event time; per person, metric and
window the first M cells in that person's event order are admitted; at most L contributions
per person and cell; time on page clamped to [0, clamp]; a cell is released only with k
distinct people (the search k for the sensitive metric).

aggregate.v2 publishes one record per statistic; `by_cell` groups them back into one value
per cell (a number, or a summary's statistics by name) for the comparisons here.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tests.anonymizers.stats.reference import BASE_S, CellKey, RefCell

WINDOWS = (60, 3600, 86400)
K = 3
K_SEARCH = 4
L = 3
M = 2
CLAMP_MS = 1_800_000
BIN_MS = 1000


@dataclass(frozen=True)
class Metric:
    name: str
    aggregate: str  # count | distinct_subjects | summary
    event_type: str
    dimensions: tuple[str, ...]
    sensitive: bool = False
    windows: tuple[int, ...] = WINDOWS
    statistics: tuple[str, ...] = ("count", "mean", "p50", "p90")  # a summary's

    @property
    def k(self) -> int:
        return K_SEARCH if self.sensitive else K


METRICS: tuple[Metric, ...] = (
    Metric("page_views", "count", "page_view", ("page_url",)),
    Metric("unique_visitors", "distinct_subjects", "page_view", ("page_url",)),
    Metric("visitors", "distinct_subjects", "page_view", ("country", "region")),
    Metric("time_on_page", "summary", "page_leave", ("page_url",)),
    Metric("searches", "count", "search", ("search_terms",), sensitive=True),
)
BY_NAME = {m.name: m for m in METRICS}


DURATIONS = {60: "1m", 3600: "1h", 86400: "1d"}


def policy_toml(
    *,
    version: str = "e2e",
    mode: str = "exact",
    metrics: tuple[Metric, ...] = METRICS,
    epsilon: float = 8.0,
    lateness: str = "3h",
    idle: str = "1h",
) -> str:
    """The test policy: the constants above, default settings otherwise."""
    blocks = []
    for metric in metrics:
        lines = [
            "[[aggregation.metrics]]",
            f'name = "{metric.name}"',
            f'event_types = ["{metric.event_type}"]',
            "dimensions = [" + ", ".join(f'"{d}"' for d in metric.dimensions) + "]",
            f'aggregate = "{metric.aggregate}"',
            "windows = [" + ", ".join(f'"{DURATIONS[w]}"' for w in metric.windows) + "]",
        ]
        if metric.aggregate == "summary":
            statistics = ", ".join(f'"{name}"' for name in metric.statistics)
            lines += ['value_field = "time_on_page_ms"', f"statistics = [{statistics}]"]
        if metric.sensitive:
            lines.append("sensitive = true")
        blocks.append("\n".join(lines))
    windows = sorted({w for m in metrics for w in m.windows})
    return f"""schema_version = 1
policy_version = "{version}"

[keys]
rotation = "1d"
retention = "96h"

[context]
time_on_page_max = "{CLAMP_MS // 60_000}m"

[aggregation]
windows = [{", ".join(f'"{DURATIONS[w]}"' for w in windows)}]
allowed_lateness = "{lateness}"
idle_timeout = "{idle}"

{chr(10).join(b + chr(10) for b in blocks)}
[release]
mode = "{mode}"
epsilon_per_day = {epsilon}
k_min_subjects = {K}
k_search_terms = {K_SEARCH}
max_contributions_per_cell = {L}
max_cells_per_metric = {M}
suppression = "other"
"""


def cell_of(key: str) -> str:
    """The key of a released record without its statistic: the key of its cell."""
    return key.rsplit("|", 1)[0]


def by_cell(records: Iterable[tuple[str, Mapping[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """aggregate.v2 records (one per statistic) as one (cell key, value) per cell, in the
    order cells first appear: the record's fields but `statistic` and `noise_sd`, its
    `value` the number of a count or distinct count, or a summary's statistics by name."""
    cells: dict[str, dict[str, Any]] = {}
    for key, record in records:
        cell = cell_of(key)
        if cell not in cells:
            grouped = {k: v for k, v in record.items() if k not in ("statistic", "noise_sd")}
            grouped["value"] = {} if record["aggregate"] == "summary" else None
            cells[cell] = grouped
        grouped = cells[cell]
        if record["aggregate"] == "summary":
            grouped["value"][record["statistic"]] = record["value"]
        else:
            assert grouped["value"] is None, f"two statistics for {cell}"
            grouped["value"] = record["value"]
    return list(cells.items())


def truth_cells(
    views: Iterable[Mapping[str, Any]], metrics: tuple[Metric, ...] = METRICS
) -> dict[CellKey, RefCell]:
    """Every cell of every window: key (metric, window seconds, start - BASE_S, dims)."""
    first_cells: dict[tuple[str, int, int, str], list[tuple[tuple[str, str], ...]]] = defaultdict(
        list
    )
    taken: dict[tuple[str, int, int, str, tuple[tuple[str, str], ...]], int] = defaultdict(int)
    out: dict[CellKey, RefCell] = defaultdict(RefCell)
    for view in views:
        for metric in metrics:
            if view["event_type"] != metric.event_type:
                continue
            values = [view.get(d) for d in metric.dimensions]
            if any(not isinstance(v, str) or not v for v in values):
                continue
            dims = tuple(sorted(zip(metric.dimensions, values, strict=True)))
            for size in metric.windows:
                start = view["t"] - view["t"] % size
                owner = (metric.name, size, start, view["subject"])
                cells = first_cells[owner]
                if dims not in cells:
                    cells.append(dims)
                if cells.index(dims) >= M:
                    continue
                cell = out[(metric.name, size, start - BASE_S, dims)]
                cell.subjects.add(view["subject"])
                taken[(*owner, dims)] += 1
                if taken[(*owner, dims)] > L:
                    continue
                cell.count += 1
                if metric.aggregate == "summary":
                    cell.values.append(min(max(int(view["time_on_page_ms"]), 0), CLAMP_MS))
    return dict(out)


def percentile_bin(values: Iterable[int], q: float) -> int:
    """Lower edge of the histogram bin holding the nearest-rank q-percentile."""
    ordered = sorted(values)
    value = ordered[max(1, math.ceil(q * len(ordered))) - 1]
    return value // BIN_MS * BIN_MS


def expected_value(metric: Metric, cells: Iterable[RefCell]) -> Any:
    """The noise-free released value of one cell, or of the sum of several (`other`)."""
    group = list(cells)
    if metric.aggregate == "count":
        return sum(c.count for c in group)
    if metric.aggregate == "distinct_subjects":
        return len(set().union(*(c.subjects for c in group)))
    values = [v for c in group for v in c.values]
    found = {"count": len(values), "sum": sum(values), "mean": sum(values) / len(values)}
    return {
        name: found[name] if name in found else percentile_bin(values, int(name[1:]) / 100)
        for name in metric.statistics
    }


def dims_of(record: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(record["dimensions"].items()))


def start_of(record: Mapping[str, Any]) -> int:
    """Window start of a released record, seconds since BASE_S (the truth's key)."""
    return int(datetime.fromisoformat(record["window_start"]).timestamp()) - BASE_S


def cell_key(record: Mapping[str, Any]) -> CellKey:
    return (record["metric"], record["window_seconds"], start_of(record), dims_of(record))


def covered(
    value: dict[str, Any], released: list[dict[str, Any]], truth: dict[Any, RefCell]
) -> list[RefCell]:
    """The truth cells a released record stands for: its own cell, or for `other` every
    cell of its window that was not released."""
    key = cell_key(value)
    if value["cell"] == "cell":
        return [truth[key]] if key in truth else []
    shown = {cell_key(v) for v in released if v["cell"] == "cell" and cell_key(v)[:3] == key[:3]}
    return [cell for c, cell in truth.items() if c[:3] == key[:3] and c not in shown]


def assert_exact(
    records: list[tuple[str, dict[str, Any]]], truth: dict[Any, RefCell], *, policy_version: str
) -> tuple[dict[tuple[str, int, int], set[CellKey]], int]:
    """Exact mode: every key published once, one record per statistic of the metric; every
    cell of at least k people whose value is exactly the truth, or an `other` cell equal to
    the sum of its window's held-back cells and covering k people. Returns the released
    cells by window and the `other` count."""
    keys = Counter(key for key, _ in records)
    assert keys and max(keys.values()) == 1, "a key published twice"
    for key, value in records:
        metric = BY_NAME[value["metric"]]
        assert value["schema"] == "aggregate.v2"
        assert value["policy_version"] == policy_version
        assert (value["mode"], value["k"], value["threshold"]) == ("exact", metric.k, metric.k)
        assert (value["noise_sd"], value["rho"], value["epsilon"]) == (None, None, None)
        assert value["suppression"] == "other"
        assert key == f"{cell_of(key)}|{value['statistic']}"
        assert key.startswith(f"{metric.name}|{value['window_start']}|{value['window_end']}|")
    cells = by_cell(records)
    values = [value for _, value in cells]
    released_by_window: dict[tuple[str, int, int], set[Any]] = {}
    others = 0
    for key, value in cells:
        metric = BY_NAME[value["metric"]]
        ck = cell_key(value)
        assert ck[1] in metric.windows
        assert value["cell"] in ("cell", "other"), value
        covering = covered(value, values, truth)
        assert covering, f"released a record that stands for no events: {key}"
        assert value["value"] == expected_value(metric, covering), key
        people = len(set().union(*(c.subjects for c in covering)))
        assert people >= metric.k, f"released a record of fewer than k people: {key}"
        if value["cell"] == "other":
            assert metric.aggregate != "distinct_subjects"
            assert value["distinct_subjects"] is None
            others += 1
        else:
            assert value["distinct_subjects"] == people, key
            released_by_window.setdefault(ck[:3], set()).add(ck)
    return released_by_window, others
