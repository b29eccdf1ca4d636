"""End to end in dp mode (PRIVACY.md guarantee 10), on the real broker.

One run over an hour of generated traffic: metrics without dimension at every minute and
for the day (always released, no selection), and metrics by page at the hour and the day
(released when their noisy number of people reaches the threshold). The error of each
released number against the ground truth is checked against the mechanism the privacy
guide documents, calibrated here from the policy alone, independently of the engine:
rho-zCDP from the daily (epsilon, delta) by Bun and Steinke's conversion at delta / 2, a
share per (metric, window size) by weight spread over its W windows a day, the discrete
Gaussian with rho = sensitivity^2 / (2 sigma^2) split between selection and values.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.anonymizers.stats.reference import RefCell

from .harness import pipeline_run
from .traffic import shop
from .truth import (
    CLAMP_MS,
    L,
    M,
    Metric,
    by_cell,
    cell_key,
    covered,
    policy_toml,
    truth_cells,
)

pytestmark = pytest.mark.kafka

EPSILON = 8.0
DELTA = 1e-7  # the default delta_per_day
W = {60: 60, 3600: 4, 86400: 1}  # the default max_windows_per_day
LATENESS_S = 3 * 3600
SIGMAS = 5.0  # tolerance of every check, in standard errors (false alarm ~1e-6 each)
METRICS: tuple[Metric, ...] = (
    Metric("views", "count", "page_view", (), windows=(60, 86400)),
    Metric("visitors", "distinct_subjects", "page_view", (), windows=(60, 86400)),
    Metric(
        "reading", "summary", "page_leave", (), windows=(60,), statistics=("count", "sum", "mean")
    ),
    Metric("page_views", "count", "page_view", ("page_url",), windows=(3600, 86400)),
    Metric("unique_visitors", "distinct_subjects", "page_view", ("page_url",), windows=(86400,)),
)
BY_NAME = {m.name: m for m in METRICS}
# Share of a window's rho spent on selecting cells (the rest on values), and how a
# summary's value share splits between its count and its sum.
SELECTION = {"count": 1 / 3, "distinct_subjects": 1.0, "summary": 1 / 4}
SUMMARY_SPLIT = {"count": 1 / 3, "sum": 2 / 3}


def rho_per_day(epsilon: float, delta: float) -> float:
    """The largest rho whose rho-zCDP gives (epsilon, delta)-DP: rho + 2 sqrt(rho ln(1/delta))
    = epsilon, solved for sqrt(rho)."""
    log = math.log(1 / delta)
    return (math.sqrt(log + epsilon) - math.sqrt(log)) ** 2


def expected_rho(metric: Metric, size: int) -> float:
    """One window's rho of a (metric, size) family: its weight's share (every weight 1 here)
    of the day's rho, over its W windows."""
    families = sum(len(m.windows) for m in METRICS)
    return rho_per_day(EPSILON, DELTA / 2) / families / W[size]


def expected_sigma(metric: Metric, size: int, statistic: str) -> float:
    """Standard deviation of the discrete Gaussian on one published number: sensitivity
    1 (people) or L (contributions; L v_max for a sum) per cell, times sqrt(cells a person
    is in), over sqrt(2 rho) of the share of rho that number gets."""
    rho = expected_rho(metric, size)
    cells = M if metric.dimensions else 1
    selection = SELECTION[metric.aggregate] if metric.dimensions else 0.0
    if metric.aggregate == "distinct_subjects":
        return math.sqrt(cells / (2 * rho))
    if statistic == "distinct_subjects":
        return math.sqrt(cells / (2 * rho * selection))
    values = rho * (1 - selection)
    if metric.aggregate == "summary":
        values *= SUMMARY_SPLIT[statistic]
    sensitivity = L * CLAMP_MS if statistic == "sum" else L
    return sensitivity * math.sqrt(cells / (2 * values))


@pytest.fixture(scope="module")
def noisy(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory, e2e_geo_db: Path
) -> Iterator[tuple[list[tuple[str, dict[str, Any]]], dict[Any, Any]]]:
    directory = tmp_path_factory.mktemp("e2e-noise")
    policy = policy_toml(version="e2e-noise", mode="dp", metrics=METRICS, epsilon=EPSILON)
    with pipeline_run(
        kafka_bootstrap, directory, geo_db=e2e_geo_db, policy_text=policy
    ) as pipeline:
        traffic = shop(seed=23, start_ms=pipeline.timeline.at(8), minutes=58, people=120)
        pipeline.send(traffic)
        pipeline.flush(lateness_s=LATENESS_S)
        views = traffic.views()
        # The cap W binds nowhere here, so the truth needs no model of it.
        minutes = Counter((v["subject"], v["t"] // 60) for v in views)
        per_person = Counter(subject for subject, _ in minutes)
        assert max(per_person.values()) <= W[60]
        yield pipeline.released_day(names=["views"]), truth_cells(views, METRICS)


def test_noise_has_mean_zero_and_the_documented_variance(
    noisy: tuple[list[tuple[str, dict[str, Any]]], dict[Any, Any]],
) -> None:
    """Every released number's error against the ground truth, over its expected standard
    deviation, has mean 0 and variance 1, per kind of number and pooled; each record states
    that standard deviation and its family's rho."""
    records, truth = noisy
    keys = Counter(key for key, _ in records)
    assert max(keys.values()) == 1, "a key published twice"
    cells = by_cell(records)
    values = [value for _, value in cells]
    z: dict[tuple[str, str], list[float]] = defaultdict(list)
    for key, record in records:
        metric = BY_NAME[record["metric"]]
        size, statistic = record["window_seconds"], record["statistic"]
        assert (record["schema"], record["mode"], record["cell"]) == ("aggregate.v2", "dp", "cell")
        assert math.isclose(record["rho"], expected_rho(metric, size), rel_tol=1e-9), key
        if statistic == "mean":
            assert record["noise_sd"] is None
            assert record["value"] is None or 0 <= record["value"] <= CLAMP_MS
            continue
        sigma = expected_sigma(metric, size, statistic)
        assert math.isclose(record["noise_sd"], sigma, rel_tol=1e-9), key
        (cell,) = covered(record, values, truth) or [RefCell()]
        true = {
            "count": cell.count,  # for a summary, its values (both capped at L)
            "distinct_subjects": len(cell.subjects),
            "sum": sum(cell.values),
        }[statistic]
        if metric.dimensions and metric.aggregate == "distinct_subjects":
            continue  # the selected noisy number: biased upwards near the threshold
        z[(f"{metric.aggregate}/{statistic}", "dims" if metric.dimensions else "none")].append(
            (record["value"] - true) / sigma
        )
    pooled: list[float] = []
    for kind, sample in sorted(z.items()):
        n = len(sample)
        array = np.array(sample)
        if n >= 50:
            assert abs(array.mean()) <= SIGMAS / math.sqrt(n), (kind, n, array.mean())
            assert abs(float((array**2).mean()) - 1) <= SIGMAS * math.sqrt(2 / n), (kind, n)
        pooled.extend(sample)
    n = len(pooled)
    assert n >= 200, n
    array = np.array(pooled)
    assert abs(array.mean()) <= SIGMAS / math.sqrt(n)
    assert abs(float((array**2).mean()) - 1) <= SIGMAS * math.sqrt(2 / n)


def test_every_window_without_dimension_is_released_and_selected_cells_pass_the_threshold(
    noisy: tuple[list[tuple[str, dict[str, Any]]], dict[Any, Any]],
) -> None:
    """A metric without dimension publishes every window it has events in (its one cell's
    key is public); a cell by page appears only with a noisy number of people at or above
    its threshold, itself at least k; the cells far above it all appear."""
    records, truth = noisy
    released = {(r["metric"], r["window_seconds"], r["window_start"]) for _, r in records}
    values = [value for _, value in by_cell(records)]
    for metric in METRICS:
        if metric.dimensions:
            continue
        windows = {(c[1], c[2]) for c in truth if c[0] == metric.name}
        shown = {
            (v["window_seconds"], v["window_start"]) for v in values if v["metric"] == metric.name
        }
        assert len(shown) == len(windows) >= 58, metric.name
        assert all(r[0] != metric.name or r[1] in metric.windows for r in released)
    thresholds: dict[tuple[str, int], set[int]] = defaultdict(set)
    for value in values:
        metric = BY_NAME[value["metric"]]
        if not metric.dimensions:
            continue
        size = value["window_seconds"]
        thresholds[(metric.name, size)].add(value["threshold"])
        assert value["threshold"] >= metric.k
        assert value["distinct_subjects"] >= value["threshold"]
    for (name, size), found in thresholds.items():
        (threshold,) = found
        sigma = expected_sigma(BY_NAME[name], size, "distinct_subjects")
        sure = [
            c
            for c, cell in truth.items()
            if c[:2] == (name, size) and len(cell.subjects) >= threshold + 6 * sigma
        ]
        released_cells = {cell_key(v) for v in values}
        assert all(c in released_cells for c in sure), (name, size)
    assert thresholds, "some cell by page was released"


def test_the_day_spends_at_most_its_budget(
    noisy: tuple[list[tuple[str, dict[str, Any]]], dict[Any, Any]],
) -> None:
    """The families the records state cost a person-day at most the policy's rho (W windows
    each); each states its share of epsilon_per_day and delta_per_day (every weight 1)."""
    records, _ = noisy
    families = {(r["metric"], r["window_seconds"]): r for _, r in records}
    assert {f[0] for f in families} == set(BY_NAME)
    spent = sum(W[size] * r["rho"] for (_, size), r in families.items())
    assert spent <= rho_per_day(EPSILON, DELTA / 2) * (1 + 1e-9)
    count = sum(len(m.windows) for m in METRICS)
    for record in families.values():
        assert math.isclose(record["epsilon"], EPSILON / count, rel_tol=1e-9)
        assert math.isclose(record["delta"], DELTA / count, rel_tol=1e-9)
