"""Noise: exact distributions, calibration, and unbiased released values with the
mechanism's variance. Tolerances come from the sample size: means within 5 standard errors
(sd / sqrt(n)), variances within 5 standard errors of the sample variance
(sqrt((mu4 - sigma^4) / n)), so a correct sampler fails about once in 3.5 million runs."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from anonymizers.stats.config import MetricSpec, NoiseSpec, ReleaseSpec
from anonymizers.stats.noise import DiscreteGaussian, DiscreteLaplace, plan_metric, secure_generator
from anonymizers.stats.release import release_events

from .conftest import small_config
from .reference import at


def pmf_laplace(scale: float, x: np.ndarray) -> np.ndarray:
    p = math.exp(-1 / scale)
    return (1 - p) / (1 + p) * p ** np.abs(x)


def pmf_gaussian(sigma: float, x: np.ndarray) -> np.ndarray:
    half = int(20 * sigma) + 20
    support = np.arange(-half, half + 1)
    norm = np.exp(-(support**2) / (2 * sigma**2)).sum()
    return np.exp(-(x.astype(float) ** 2) / (2 * sigma**2)) / norm


def moments(pmf: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    var = float((pmf * x**2).sum())
    mu4 = float((pmf * x.astype(float) ** 4).sum())
    return var, mu4


@pytest.mark.parametrize(
    ("mechanism", "pmf"),
    [
        (DiscreteLaplace(0.7), pmf_laplace),
        (DiscreteLaplace(3.0), pmf_laplace),
        (DiscreteLaplace(40.0), pmf_laplace),
        (DiscreteGaussian(0.4), pmf_gaussian),
        (DiscreteGaussian(2.5), pmf_gaussian),
        (DiscreteGaussian(30.0), pmf_gaussian),
    ],
    ids=["laplace-0.7", "laplace-3", "laplace-40", "gauss-0.4", "gauss-2.5", "gauss-30"],
)
def test_sampler_matches_its_distribution(mechanism: Any, pmf: Any) -> None:
    """Mean 0, the exact variance, and the exact probabilities (chi-square) of each value."""
    n = 400_000
    rng = np.random.Generator(np.random.PCG64(20240501))
    draws = mechanism.sample(rng, n)
    parameter = getattr(mechanism, "scale", None) or mechanism.sigma
    half = int(40 * parameter) + 40
    x = np.arange(-half, half + 1)
    p = pmf(parameter, x)
    var, mu4 = moments(p, x)
    assert mechanism.variance == pytest.approx(var, rel=1e-9)
    assert abs(draws.mean()) < 5 * math.sqrt(var / n)
    assert abs(draws.var() - var) < 5 * math.sqrt((mu4 - var * var) / n)
    # Chi-square on values with expected count >= 20, the rest pooled in one tail bin.
    expected = p * n
    keep = expected >= 20
    observed = np.array([(draws == v).sum() for v in x[keep]])
    tail_expected = n - expected[keep].sum()
    tail_observed = n - observed.sum()
    chi2 = float((((observed - expected[keep]) ** 2) / expected[keep]).sum())
    if tail_expected >= 5:
        chi2 += (tail_observed - tail_expected) ** 2 / tail_expected
    dof = int(keep.sum()) - (0 if tail_expected >= 5 else 1)
    # Wilson-Hilferty: the chi-square quantile of about 1 - 1e-6.
    limit = dof * (1 - 2 / (9 * dof) + 4.75 * math.sqrt(2 / (9 * dof))) ** 3
    assert chi2 < limit


def test_secure_generators_are_independent() -> None:
    """Two generators seeded from the OS differ (128-bit seeds)."""
    a, b = secure_generator(), secure_generator()
    assert not np.array_equal(a.integers(0, 2**62, 8), b.integers(0, 2**62, 8))


@pytest.mark.parametrize("mode", ["other", "suppress_total"])
@pytest.mark.parametrize("mechanism", ["geometric", "discrete_gaussian"])
def test_calibration_follows_the_bounds_and_epsilon(mode: str, mechanism: str) -> None:
    """Scales follow the documented formulas: geometric b = Delta1 q n / eps; Gaussian
    sigma = Delta2 / sqrt(2 rho_q), rho_q = (eps / sqrt(n))^2 / 2 / q."""
    L, M, eps, n = 3, 4, 0.5, 11
    release = ReleaseSpec(
        max_contributions_per_cell=L,
        max_cells_per_metric=M,
        suppression=mode,
        noise=NoiseSpec(True, mechanism, eps),
    )  # type: ignore[arg-type]
    count = MetricSpec("c", ("page_view",), ("page_url",), "count")
    distinct = MetricSpec("d", ("page_view",), ("page_url",), "distinct_subjects")
    plan_count = plan_metric(count, release, n_metrics=n)
    plan_distinct = plan_metric(distinct, release, n_metrics=n)
    assert plan_count is not None and plan_distinct is not None
    total = mode == "suppress_total"
    if mechanism == "geometric":
        d1_count = (2 if total else 1) * M * L
        d1_distinct = M + 1 if total else M
        assert plan_count.epsilon == pytest.approx(eps / n)
        assert plan_count.value.scale == pytest.approx(d1_count * 2 * n / eps)  # type: ignore[attr-defined]
        assert plan_count.subjects.scale == pytest.approx(d1_distinct * 2 * n / eps)  # type: ignore[attr-defined]
        assert plan_distinct.value.scale == pytest.approx(d1_distinct * 1 * n / eps)  # type: ignore[attr-defined]
    else:
        d2_count = L * math.sqrt(M + M * M) if total else M * L
        d2_distinct = math.sqrt(M + 1) if total else math.sqrt(M)
        share = eps / math.sqrt(n)
        assert plan_count.epsilon == pytest.approx(share)
        assert plan_count.value.sigma == pytest.approx(d2_count / math.sqrt(2 * share**2 / 2 / 2))  # type: ignore[attr-defined]
        assert plan_distinct.value.sigma == pytest.approx(d2_distinct / math.sqrt(2 * share**2 / 2))  # type: ignore[attr-defined]
    assert plan_metric(count, ReleaseSpec(), n_metrics=n) is None


@pytest.mark.parametrize("mechanism", ["geometric", "discrete_gaussian"])
def test_released_values_are_unbiased_with_the_mechanism_variance(mechanism: str) -> None:
    """Across many windows, released minus true values has mean ~0 and the variance the
    record's noise_sd announces."""
    aggregation = small_config(
        windows=(60,), metrics=(MetricSpec("page_views", ("page_view",), ("page_url",), "count"),)
    )
    release = ReleaseSpec(
        k_min_subjects=2,
        max_contributions_per_cell=1,
        max_cells_per_metric=1,
        noise=NoiseSpec(True, mechanism, 2.0),
    )  # type: ignore[arg-type]
    events = []
    windows = 1500
    for w in range(windows):
        for s in range(3):  # 3 subjects on "/" in every minute: the true count is 3
            events.append(
                {
                    "event_type": "page_view",
                    "occurred_at": at(60 * w + s),
                    "subject": f"s{s}",
                    "page_url": "/",
                    "country": "FR",
                }
            )
    out, _ = release_events(
        events,
        aggregation,
        release,
        policy_version="t",
        rng=np.random.Generator(np.random.PCG64(7)),
    )
    values = [r.value for r in out if r.value["cell"] == "cell"]
    assert len(values) == windows
    errors = np.array([v["value"] - 3 for v in values], float)
    sd = values[0]["noise_sd"]
    assert all(
        v["noise_sd"] == sd and v["mechanism"] == mechanism and v["epsilon"] == 2.0 for v in values
    )
    var = sd * sd
    plan = plan_metric(aggregation.metrics[0], release, n_metrics=1)
    assert plan is not None and var == pytest.approx(plan.value.variance)
    half = int(60 * sd) + 60
    x = np.arange(-half, half + 1)
    p = (
        pmf_laplace(plan.value.scale, x)
        if mechanism == "geometric"
        else pmf_gaussian(plan.value.sigma, x)
    )  # type: ignore[attr-defined]
    _, mu4 = moments(p, x)
    n = len(errors)
    assert abs(errors.mean()) < 5 * math.sqrt(var / n)
    assert abs(errors.var() - var) < 5 * math.sqrt((mu4 - var * var) / n)


def test_summary_with_noise_withholds_percentiles() -> None:
    """With noise, time on page publishes a noisy count and a clamped mean, no percentiles."""
    aggregation = small_config(windows=(60,))
    release = ReleaseSpec(k_min_subjects=2, noise=NoiseSpec(True, "geometric", 1.0))
    events = [
        {
            "event_type": "page_leave",
            "occurred_at": at(s),
            "subject": f"s{s}",
            "page_url": "/",
            "time_on_page_ms": 5000,
        }
        for s in range(5)
    ]
    out, _ = release_events(events, aggregation, release, policy_version="t")
    (record,) = [r.value for r in out if r.value["metric"] == "time_on_page"]
    # The policy refuses percentiles with noise; a spec built directly gets none published.
    assert set(record["value"]) == {"count", "mean"}
    assert record["value"]["mean"] is None or 0 <= record["value"]["mean"] <= 1_800_000
