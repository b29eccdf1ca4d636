"""End to end with noise (PRIVACY.md guarantee 10), on the real broker.

One run over an hour of generated traffic (60 one-minute windows, 2 hours and a day: about
two thousand noisy numbers). The error of each released number against the ground truth is
checked against the mechanism the README documents, calibrated here independently of the
engine: geometric noise, epsilon 1.0 per window shared by the 5 metrics, each metric's share
split over the numbers it publishes per cell, sensitivities M*L (counts) and M (people).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .harness import pipeline_run
from .traffic import shop
from .truth import BY_NAME, METRICS, L, M, covered, policy_toml, truth_cells

pytestmark = pytest.mark.kafka

EPSILON = 1.0
LATENESS_S = 3 * 3600
# Numbers published per cell (docs/internals/stats.md, "Noise"): count -> value and people;
# distinct -> one; summary -> people, count and sum.
QUANTITIES = {"count": 2, "distinct_subjects": 1, "summary": 3}
SIGMAS = 5.0  # tolerance of every check, in standard errors (false alarm ~1e-6 each)


def geometric_moments(scale: float) -> tuple[float, float]:
    """(variance, kurtosis) of two-sided geometric noise P(x) ~ exp(-|x| / scale), summed
    over its support (|x| up to 80 scales; the rest weighs less than 1e-34)."""
    x = np.arange(-int(80 * scale), int(80 * scale) + 1, dtype=np.float64)
    weights = np.exp(-np.abs(x) / scale)
    weights /= weights.sum()
    variance = float((weights * x**2).sum())
    return variance, float((weights * x**4).sum()) / variance**2


def scale_of(aggregate: str, quantity: str) -> float:
    """Scale b = sensitivity / epsilon of one published number of a metric."""
    per_number = EPSILON / len(METRICS) / QUANTITIES[aggregate]
    sensitivity = M if quantity == "people" else M * L
    return sensitivity / per_number


@pytest.fixture(scope="module")
def noisy(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory, e2e_geo_db: Path
) -> Iterator[tuple[list[dict[str, Any]], dict[Any, Any]]]:
    directory = tmp_path_factory.mktemp("e2e-noise")
    policy = policy_toml(version="e2e-noise", noise=True, epsilon=EPSILON)
    with pipeline_run(
        kafka_bootstrap, directory, geo_db=e2e_geo_db, policy_text=policy
    ) as pipeline:
        traffic = shop(seed=23, start_ms=pipeline.timeline.at(8), minutes=60, people=60)
        pipeline.send(traffic)
        pipeline.flush(lateness_s=LATENESS_S)
        yield [value for _, value in pipeline.released_day()], truth_cells(traffic.views())


def errors(
    records: list[dict[str, Any]], truth: dict[Any, Any]
) -> dict[tuple[str, str], list[int]]:
    """Released minus true value of every published number, by (aggregate, quantity)."""
    out: dict[tuple[str, str], list[int]] = defaultdict(list)
    for record in records:
        metric = BY_NAME[record["metric"]]
        cells = covered(record, records, truth)
        assert cells, record
        count = sum(c.count for c in cells)
        people = len(set().union(*(c.subjects for c in cells)))
        if metric.aggregate == "distinct_subjects":
            out[(metric.aggregate, "people")].append(record["value"] - people)
            assert record["distinct_subjects"] == record["value"]
        elif metric.aggregate == "count":
            out[(metric.aggregate, "value")].append(record["value"] - count)
        else:
            out[(metric.aggregate, "value")].append(record["value"]["count"] - count)
            assert set(record["value"]) == {"count", "mean"}
        if metric.aggregate != "distinct_subjects" and record["cell"] == "cell":
            out[(metric.aggregate, "people")].append(record["distinct_subjects"] - people)
    return out


def test_noise_has_mean_zero_and_the_mechanisms_variance(
    noisy: tuple[list[dict[str, Any]], dict[Any, Any]],
) -> None:
    """Across about two thousand released numbers, the errors against the ground truth have
    mean 0 and the variance of the documented geometric mechanism, per kind of number and
    pooled; every record states that mechanism, the metric's epsilon share and its sd."""
    records, truth = noisy
    assert len({(r["metric"], r["window_start"], r["window_seconds"]) for r in records}) > 200
    pooled_z: list[float] = []
    for (aggregate, quantity), values in sorted(errors(records, truth).items()):
        variance, kurtosis = geometric_moments(scale_of(aggregate, quantity))
        n = len(values)
        assert n >= 100, (aggregate, quantity, n)
        sample = np.array(values, dtype=np.float64)
        mean_bound = SIGMAS * math.sqrt(variance / n)
        assert abs(sample.mean()) <= mean_bound, (aggregate, quantity, sample.mean(), mean_bound)
        ratio = float((sample**2).mean()) / variance
        ratio_bound = SIGMAS * math.sqrt((kurtosis - 1) / n)
        assert abs(ratio - 1) <= ratio_bound, (aggregate, quantity, n, ratio, ratio_bound)
        pooled_z.extend((sample / math.sqrt(variance)).tolist())
    z = np.array(pooled_z)
    n = len(z)
    assert n > 1500
    assert abs(z.mean()) <= SIGMAS / math.sqrt(n)
    assert abs(float((z**2).mean()) - 1) <= SIGMAS * math.sqrt(5.0 / n)
    for record in records:  # what each record says of its protection
        metric = BY_NAME[record["metric"]]
        assert (record["mechanism"], record["k"]) == ("geometric", metric.k)
        assert math.isclose(record["epsilon"], EPSILON / len(METRICS))
        quantity = "people" if metric.aggregate == "distinct_subjects" else "value"
        variance, _ = geometric_moments(scale_of(metric.aggregate, quantity))
        assert math.isclose(record["noise_sd"], math.sqrt(variance), rel_tol=1e-6)
