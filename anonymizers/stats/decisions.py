"""What one metric window releases, in each mode, from its merged cells.

Both take the window's cells merged over every source partition (`Merged`: distinct people,
count, sum, histogram of the bounded contributions) and return `Release`s: one released
cell (or the `other` / `total` cell of exact mode) with the value of each statistic the
metric publishes.

- `decide_dp`: partition selection then noise (see `anonymizers.policy.budget` for the
  calibration): each cell's number of people gets discrete Gaussian noise and the cell
  appears when that noisy number is at least the family's threshold (never below k); a
  metric without dimension has one public cell, always released. Values: a distinct count
  is that noisy number; a count gets its own noise; a summary a noisy count and a noisy sum,
  the mean being their ratio clamped to [0, value_max]. No audit: differences of noisy
  values are covered by the guarantee, which bounds each person-day's influence on all of
  them together.
- `decide_exact`: no noise; k distinct people per cell and the suppression audit
  (`anonymizers.stats.suppression`) holding back what subtraction would reveal.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from anonymizers.policy.budget import Family
from anonymizers.stats.config import MetricSpec, ReleaseSpec
from anonymizers.stats.noise import GaussianNoise
from anonymizers.stats.records import OTHER_CELL, TOTAL_CELL
from anonymizers.stats.suppression import CellFacts, Decision


@dataclass(slots=True)
class Merged:
    """One merged cell (or the sum of several)."""

    subjects: int = 0
    count: int = 0
    total: int = 0
    histogram: Counter[int] | None = None
    """A summary's value histogram (None until one is merged: counts have none)."""

    def add(self, record: Mapping[str, Any]) -> None:
        self.subjects += int(record["subjects"])
        self.count += int(record.get("count", 0))
        self.total += int(record.get("sum", 0))
        pairs = record.get("histogram")
        if pairs:
            histogram = self.histogram
            if histogram is None:
                histogram = self.histogram = Counter()
            for b, c in pairs:
                histogram[int(b)] += int(c)

    def absorb(self, other: Merged) -> None:
        self.subjects += other.subjects
        self.count += other.count
        self.total += other.total
        if other.histogram:
            if self.histogram is None:
                self.histogram = Counter()
            self.histogram.update(other.histogram)


@dataclass(frozen=True, slots=True)
class Release:
    """One released cell: its canonical dimensions text (`OTHER_CELL`, `TOTAL_CELL`), its
    dimensions, kind (`cell`, `other`, `total`), statistics by name and the number of people
    it publishes (noisy in dp mode; None where none is published)."""

    cell: str
    dimensions: dict[str, str]
    kind: str
    values: dict[str, int | float | None]
    subjects: int | None


def decide_dp(
    metric: MetricSpec,
    family: Family,
    cells: Mapping[str, Merged],
    dims: Mapping[str, dict[str, str]],
) -> tuple[list[Release], int]:
    """The dp releases of one metric window, and how many cells the threshold held back."""
    names = sorted(cells)
    noisy: list[int | None]
    if family.sigma_subjects:
        noisy = list(GaussianNoise(family.sigma_subjects).add([cells[c].subjects for c in names]))
    else:
        noisy = [None] * len(names)
    pairs = list(zip(names, noisy, strict=True))
    chosen: list[tuple[str, int | None]]
    if metric.dimensions:
        chosen = [(c, n) for c, n in pairs if n is not None and n >= family.threshold]
    else:
        chosen = pairs
    values = _dp_values(metric, family, [cells[c] for c, _ in chosen], [n for _, n in chosen])
    releases = [
        Release(cell, dict(dims[cell]), "cell", cell_values, subjects)
        for (cell, subjects), cell_values in zip(chosen, values, strict=True)
    ]
    return releases, len(names) - len(chosen)


def _dp_values(
    metric: MetricSpec, family: Family, merged: list[Merged], noisy_subjects: list[int | None]
) -> list[dict[str, int | float | None]]:
    """The statistics of each chosen cell."""
    if not merged:
        return []
    if metric.aggregate == "distinct_subjects":
        return [{"distinct_subjects": n} for n in noisy_subjects]
    assert family.sigma_value is not None
    counts = GaussianNoise(family.sigma_value).add([m.count for m in merged])
    if metric.aggregate == "count":
        return [{"count": c} for c in counts]
    assert family.sigma_sum is not None
    sums = GaussianNoise(family.sigma_sum).add([m.total for m in merged])
    out: list[dict[str, int | float | None]] = []
    for count, total in zip(counts, sums, strict=True):
        mean = min(max(total / count, 0.0), float(metric.value_max)) if count >= 1 else None
        found: dict[str, int | float | None] = {"count": count, "sum": total, "mean": mean}
        out.append({name: found[name] for name in metric.statistics if name in found})
    return out


def decide_exact(
    metric: MetricSpec,
    release: ReleaseSpec,
    decision: Decision,
    cells: Mapping[str, Merged],
    dims: Mapping[str, dict[str, str]],
    total_subjects: int,
) -> list[Release]:
    """The exact releases of one metric window, given the audit's `decision`."""
    out = [
        Release(c, dict(dims[c]), "cell", exact_values(metric, cells[c]), cells[c].subjects)
        for c in sorted(decision.released)
    ]
    if decision.other:
        folded = Merged()
        for c in sorted(decision.suppressed):
            folded.absorb(cells[c])
        out.append(Release(OTHER_CELL, {}, "other", exact_values(metric, folded), None))
    if release.suppression == "suppress_total" and not decision.suppressed:
        whole = Merged()
        for part in cells.values():
            whole.absorb(part)
        whole.subjects = total_subjects
        out.append(Release(TOTAL_CELL, {}, "total", exact_values(metric, whole), total_subjects))
    return out


def audit_facts(metric: MetricSpec, cells: Mapping[str, Merged]) -> dict[str, CellFacts]:
    """What the exact audit reads of each cell: people, and a size to order by."""
    return {
        c: CellFacts(m.subjects, m.count if metric.aggregate != "distinct_subjects" else m.subjects)
        for c, m in cells.items()
    }


def exact_values(metric: MetricSpec, merged: Merged) -> dict[str, int | float | None]:
    """The exact statistics of a merged cell."""
    if metric.aggregate == "distinct_subjects":
        return {"distinct_subjects": merged.subjects}
    if metric.aggregate == "count":
        return {"count": merged.count}
    n = merged.count
    out: dict[str, int | float | None] = {}
    for name in metric.statistics:
        if name == "count":
            out[name] = n
        elif name == "sum":
            out[name] = merged.total
        elif name == "mean":
            out[name] = merged.total / n if n else None
        else:
            quantile = int(name[1:]) / 100
            out[name] = _percentile(merged.histogram or {}, n, quantile, metric.bin_width)
    return out


def _percentile(histogram: Mapping[int, int], n: int, q: float, width: int) -> int | None:
    """Nearest-rank percentile: lower edge of the bin holding the ceil(q n)-th smallest value."""
    if n <= 0:
        return None
    rank = max(1, math.ceil(q * n))
    bins = np.array(sorted(histogram), np.int64)
    counts = np.array([histogram[b] for b in bins.tolist()], np.int64)
    index = int(np.searchsorted(np.cumsum(counts), rank))
    return int(bins[index]) * width
