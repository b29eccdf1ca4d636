"""The daily privacy budget of dp mode, split over metrics and window sizes.

The privacy unit is the person-day: a subject pseudonym within its key epoch (one day by
default). Accounting is zero-concentrated DP (zCDP) with the discrete Gaussian: releases
compose by adding their rho, and a person counted in W windows of a size pays W times that
window's rho, which composes far better over the many windows of a day than pure epsilon
with the discrete Laplace. The daily (epsilon, delta) of the policy is turned into a rho
with the conversion of Bun and Steinke (2016, Proposition 1.3): rho-zCDP gives
(rho + 2 sqrt(rho ln(1/d)), d)-DP for every d > 0, at d = delta_per_day / 2; the other half
of delta pays for the thresholds that decide which cells appear (partition selection).

Each (metric, window size) family gets a share of rho and of that delta proportional to the
metric's `weight`, spread over the `max_windows_per_day` windows a person may count in:

- selection: the number of distinct people in a cell, with discrete Gaussian noise of
  `sigma_subjects`; a cell appears when that noisy number reaches `threshold`, the smallest
  integer at or above k (k_search_terms for sensitive metrics) whose delta, as OpenDP's
  privacy map of `make_gaussian_threshold` states it for a person in M cells, fits the
  family's share. A distinct_subjects metric publishes that noisy number itself.
- values: a count's noisy value (`sigma_value`, sensitivity L sqrt(M)); a summary's noisy
  count and sum (`sigma_sum`, sensitivity L v_max sqrt(M), v_max the clamp of its field),
  whose ratio is the mean.

A count spends a third of its window's rho on selection and two thirds on its value; a
summary a quarter on selection, a quarter on its count and a half on its sum; a distinct
count all of it on selection. A metric without dimension has one cell whose key is public:
it is always released, with no selection, and spends everything on its values. Everything
here is a pure function of the policy, so the allocation `anonstream policy check` prints is
what the stream runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any, Final

from anonymizers.policy.model import (
    AggregationConfig,
    ContextConfig,
    Policy,
    ReleaseConfig,
    duration_seconds,
)

MAX_THRESHOLD: Final = 1 << 30
SELECTION_SHARE: Final = {"count": 1 / 3, "distinct_subjects": 1.0, "summary": 1 / 4}
"""Share of a window's rho spent on the noisy distinct count that selects cells."""


@dataclass(frozen=True, slots=True)
class Family:
    """The mechanisms of one metric at one window size, and what they cost a person-day.

    `rho` is one window's zCDP; `windows_per_day` (W) windows at most count one person, so
    the family costs at most `rho_day` = W * rho and `delta_day` = W * (one window's
    threshold delta). Sigmas are standard deviations of the discrete Gaussian; `sigma_value`
    is None for distinct counts (their value is the selection's noisy count), `sigma_sum`
    None but for summaries.
    """

    metric: str
    window_seconds: int
    windows_per_day: int
    max_cells: int
    rho: float
    rho_day: float
    delta_day: float
    sigma_subjects: float
    threshold: int
    sigma_value: float | None
    sigma_sum: float | None
    epsilon_share: float
    """The family's share of epsilon_per_day, by weight as its rho: what a record states.
    The loss of a person-day is the conversion of the families' summed rho (zCDP composes
    by adding rho), which the policy check holds to epsilon_per_day."""
    delta_share: float
    """The family's share of delta_per_day, by weight: half for the conversion, half for
    its thresholds (`delta_day` is what they use of it)."""


@dataclass(frozen=True, slots=True)
class Budget:
    """The allocation of a dp policy: every family, and what they add up to per person-day
    (`rho_day`, `delta_thresholds`), converted to `epsilon_day` at the rest of delta."""

    epsilon_per_day: float
    delta_per_day: float
    families: tuple[Family, ...]

    @property
    def rho_day(self) -> float:
        return sum(f.rho_day for f in self.families)

    @property
    def delta_thresholds(self) -> float:
        return sum(f.delta_day for f in self.families)

    @property
    def epsilon_day(self) -> float:
        """The worst-case loss of one person-day over everything released, in epsilon at
        delta_per_day (the thresholds' delta taken from it first)."""
        rest = self.delta_per_day - self.delta_thresholds
        return math.inf if rest <= 0 else epsilon_of(self.rho_day, rest)

    def family(self, metric: str, window_seconds: int) -> Family:
        for found in self.families:
            if found.metric == metric and found.window_seconds == window_seconds:
                return found
        raise KeyError(f"no budget for metric {metric!r} at {window_seconds}s")


def epsilon_of(rho: float, delta: float) -> float:
    """Epsilon of rho-zCDP at `delta` (Bun and Steinke 2016, Proposition 1.3)."""
    return rho + 2 * math.sqrt(rho * math.log(1 / delta))


def rho_of(epsilon: float, delta: float) -> float:
    """The largest rho whose `epsilon_of` at `delta` is at most `epsilon`."""
    log = math.log(1 / delta)
    return (math.sqrt(log + epsilon) - math.sqrt(log)) ** 2


def metric_windows(aggregation: AggregationConfig) -> list[tuple[str, int]]:
    """(metric, window seconds) of every family the aggregation section releases."""
    return [
        (metric.name, duration_seconds(size))
        for metric in aggregation.metrics
        for size in (metric.windows or aggregation.windows)
    ]


def allocate(policy: Policy) -> Budget:
    """The dp allocation of a checked policy (see the module docstring)."""
    return allocate_sections(
        aggregation=policy.aggregation, release=policy.release, context=policy.context
    )


def allocate_sections(
    *, aggregation: AggregationConfig, release: ReleaseConfig, context: ContextConfig
) -> Budget:
    """`allocate` from the three sections it reads (the policy check has them before the
    whole policy); ValueError when a family's threshold cannot fit its delta share."""
    metrics = {m.name: m for m in aggregation.metrics}
    families = metric_windows(aggregation)
    total_weight = sum(metrics[name].weight for name, _ in families)
    rho_day = rho_of(release.epsilon_per_day, release.delta_per_day / 2)
    delta_thresholds = release.delta_per_day / 2
    caps = {duration_seconds(k): v for k, v in release.max_windows_per_day.items()}
    value_max = context.time_on_page_max_ms
    out = []
    for name, size in families:
        metric = metrics[name]
        share = metric.weight / total_weight
        per_day = caps[size]
        # One cell per window without dimension: a person is in at most one.
        max_cells = (metric.max_cells or release.max_cells_per_metric) if metric.dimensions else 1
        k = release.k_search_terms if metric.sensitive else release.k_min_subjects
        rho = rho_day * share / per_day
        if metric.dimensions:
            selection = rho * SELECTION_SHARE[metric.aggregate]
            sigma_subjects = math.sqrt(max_cells / (2 * selection))
            threshold, delta = threshold_for(
                sigma_subjects, max_cells, delta_thresholds * share / per_day, k
            )
        else:
            # One cell whose key is public (no dimension): always released, no selection;
            # only a distinct count still draws its noisy number of people.
            selection = rho if metric.aggregate == "distinct_subjects" else 0.0
            sigma_subjects = math.sqrt(max_cells / (2 * selection)) if selection else 0.0
            threshold, delta = 0, 0.0
        bound_l = metric.max_contributions or release.max_contributions_per_cell
        spread = math.sqrt(max_cells)
        sigma_value = sigma_sum = None
        if metric.aggregate == "count":
            sigma_value = bound_l * spread / math.sqrt(2 * (rho - selection))
        elif metric.aggregate == "summary":
            sigma_value = bound_l * spread / math.sqrt(2 * (rho - selection) / 3)
            sigma_sum = bound_l * value_max * spread / math.sqrt(2 * (rho - selection) * 2 / 3)
        out.append(
            Family(
                metric=name,
                window_seconds=size,
                windows_per_day=per_day,
                max_cells=max_cells,
                rho=rho,
                rho_day=rho * per_day,
                delta_day=delta * per_day,
                sigma_subjects=sigma_subjects,
                threshold=threshold,
                sigma_value=sigma_value,
                sigma_sum=sigma_sum,
                epsilon_share=release.epsilon_per_day * share,
                delta_share=release.delta_per_day * share,
            )
        )
    return Budget(release.epsilon_per_day, release.delta_per_day, tuple(out))


def threshold_for(sigma: float, max_cells: int, delta: float, k: int) -> tuple[int, float]:
    """(threshold, its delta): the smallest integer threshold at or above `k` whose delta for
    a person in `max_cells` cells, by OpenDP's map of its Gaussian threshold mechanism, is at
    most `delta`."""
    low, high = k, max(k, 2)
    while threshold_delta(sigma, max_cells, high) > delta:
        low, high = high, high * 2
        if high > MAX_THRESHOLD:
            raise ValueError("no threshold fits the delta share")
    if threshold_delta(sigma, max_cells, low) <= delta:
        return low, threshold_delta(sigma, max_cells, low)
    while high - low > 1:
        middle = (low + high) // 2
        if threshold_delta(sigma, max_cells, middle) <= delta:
            high = middle
        else:
            low = middle
    return high, threshold_delta(sigma, max_cells, high)


def opendp() -> Any:
    """OpenDP's prelude, with the features its samplers and maps need ("contrib")."""
    import opendp.prelude as dp

    dp.enable_features("contrib")
    return dp


@cache
def threshold_delta(sigma: float, max_cells: int, threshold: int) -> float:
    """The delta of OpenDP's Gaussian threshold mechanism (scale `sigma`, `threshold`: a
    cell appears when its noisy count is at least `threshold`) when one person adds one to
    at most `max_cells` cells."""
    dp = opendp()
    measurement = dp.m.make_gaussian_threshold(
        dp.map_domain(dp.atom_domain(T=str), dp.atom_domain(T=int)),
        dp.l02inf_distance(dp.absolute_distance(T=int)),
        scale=sigma,
        threshold=threshold,
    )
    _, delta = measurement.map((max_cells, max_cells, 1))
    return float(delta)
