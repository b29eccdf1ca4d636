"""Discrete noise for released values, and its calibration.

Mechanisms (integer-valued, so released counts stay integers):

- `DiscreteLaplace` (two-sided geometric): P(x) proportional to exp(-|x| / b) on the integers,
  sampled as the difference of two geometric variables; variance 2p / (1 - p)^2, p = e^(-1/b).
  With b = Delta1 / epsilon it is epsilon-DP for a vector whose L1 sensitivity is Delta1.
- `DiscreteGaussian`: P(x) proportional to exp(-x^2 / (2 sigma^2)), sampled with the
  rejection sampler of Canonne, Kamath and Steinke (2020, Algorithm 3) from discrete Laplace
  proposals, vectorised; exact up to the floating-point acceptance test. With
  sigma = Delta2 / sqrt(2 rho) it is rho-zCDP for L2 sensitivity Delta2.

Calibration (`plan_metric`), per window: the policy's `epsilon` is the budget of the whole
window (all its metrics). Geometric: each of the n metrics gets epsilon/n (basic composition).
Gaussian: the window gets rho = epsilon^2 / 2 (the zCDP an epsilon-DP mechanism has), each
metric rho/n, i.e. an `epsilon` share of epsilon/sqrt(n). A metric publishing q quantities per
cell (count: value and distinct subjects; distinct_subjects: one; summary: distinct subjects,
count and sum) splits its share evenly over them. Sensitivities, for one subject adding at
most L to each of at most M cells (per-cell bound c = L for counts, L * value_max for sums):

| quantity | suppression `other` (Delta1, Delta2) | `suppress_total` (cells + total) |
|---|---|---|
| count / sum | M c, M c (the `other` cell may absorb all M cells) | 2 M c, c sqrt(M + M^2) |
| distinct subjects | M, sqrt(M) | M + 1, sqrt(M + 1) |

Generators are `numpy.random.Generator(PCG64(seed))` seeded with 128 bits from the
operating system (`secrets`).
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from anonymizers.stats.config import MetricSpec, ReleaseSpec

I64 = npt.NDArray[np.int64]


def secure_generator() -> np.random.Generator:
    """A PCG64 generator seeded with 128 bits of operating-system randomness."""
    return np.random.Generator(np.random.PCG64(secrets.randbits(128)))


class Mechanism(Protocol):
    """An integer noise distribution with mean 0."""

    @property
    def name(self) -> str:
        """`geometric` or `discrete_gaussian`."""
        ...

    def sample(self, rng: np.random.Generator, size: int) -> I64:
        """`size` independent draws."""
        ...

    @property
    def variance(self) -> float:
        """Exact variance of one draw."""
        ...


@dataclass(frozen=True, slots=True)
class DiscreteLaplace:
    """Two-sided geometric noise with scale `scale` (b): P(x) ~ exp(-|x| / b)."""

    scale: float
    name: str = "geometric"

    @property
    def _p(self) -> float:
        return math.exp(-1.0 / self.scale)

    def sample(self, rng: np.random.Generator, size: int) -> I64:
        """Difference of two geometric draws (failures before a success of prob 1 - p)."""
        success = -math.expm1(-1.0 / self.scale)  # 1 - p, accurate for large scales
        a = rng.geometric(success, size).astype(np.int64)
        b = rng.geometric(success, size).astype(np.int64)
        return a - b

    @property
    def variance(self) -> float:
        """2p / (1 - p)^2."""
        p = self._p
        return 2.0 * p / (-math.expm1(-1.0 / self.scale)) ** 2


@dataclass(frozen=True, slots=True)
class DiscreteGaussian:
    """Discrete Gaussian noise with parameter `sigma`: P(x) ~ exp(-x^2 / (2 sigma^2))."""

    sigma: float
    name: str = "discrete_gaussian"

    def sample(self, rng: np.random.Generator, size: int) -> I64:
        """Canonne-Kamath-Steinke rejection sampling from discrete Laplace proposals of scale
        t = floor(sigma) + 1, accepting y with probability
        exp(-(|y| - sigma^2 / t)^2 / (2 sigma^2))."""
        sigma2 = self.sigma * self.sigma
        t = math.floor(self.sigma) + 1
        proposal = DiscreteLaplace(float(t))
        out = np.empty(size, np.int64)
        filled = 0
        while filled < size:
            batch = max(64, 2 * (size - filled))
            y = proposal.sample(rng, batch)
            accept = rng.random(batch) < np.exp(-((np.abs(y) - sigma2 / t) ** 2) / (2.0 * sigma2))
            got = y[accept][: size - filled]
            out[filled : filled + len(got)] = got
            filled += len(got)
        return out

    @property
    def variance(self) -> float:
        """Sum of x^2 P(x), computed over +-(12 sigma + 10) (the tail beyond is < 1e-30)."""
        half = int(12 * self.sigma) + 10
        x = np.arange(-half, half + 1, dtype=np.float64)
        weights = np.exp(-(x * x) / (2.0 * self.sigma * self.sigma))
        return float((x * x * weights).sum() / weights.sum())


@dataclass(frozen=True, slots=True)
class MetricNoise:
    """The noise of one metric's release in one window: `epsilon` is the metric's share of
    the window budget; `value`, `subjects` and `total` (summary sums) are the mechanisms of
    each published quantity."""

    mechanism: str
    epsilon: float
    value: Mechanism
    subjects: Mechanism
    sum: Mechanism | None


def plan_metric(
    metric: MetricSpec, release: ReleaseSpec, *, n_metrics: int
) -> MetricNoise | None:
    """Calibrate the noise of `metric` (see the module docstring); None when noise is off."""
    noise = release.noise
    if not noise.enabled:
        return None
    bound_l, bound_m = release.max_contributions_per_cell, release.max_cells_per_metric
    with_total = release.suppression == "suppress_total"
    quantities = {"count": 2, "distinct_subjects": 1, "summary": 3}[metric.aggregate]

    def additive(per_cell: float) -> tuple[float, float]:
        if with_total:
            return 2 * bound_m * per_cell, per_cell * math.sqrt(bound_m + bound_m * bound_m)
        return bound_m * per_cell, bound_m * per_cell

    distinct = (
        (bound_m + 1, math.sqrt(bound_m + 1)) if with_total else (bound_m, math.sqrt(bound_m))
    )

    if noise.mechanism == "geometric":
        share = noise.epsilon / n_metrics
        per_quantity = share / quantities

        def make(sens: tuple[float, float]) -> Mechanism:
            return DiscreteLaplace(sens[0] / per_quantity)
    else:
        share = noise.epsilon / math.sqrt(n_metrics)
        rho = share * share / 2 / quantities

        def make(sens: tuple[float, float]) -> Mechanism:
            return DiscreteGaussian(sens[1] / math.sqrt(2 * rho))

    subjects = make(distinct)
    value = subjects if metric.aggregate == "distinct_subjects" else make(additive(float(bound_l)))
    total = (
        make(additive(float(bound_l) * metric.value_max)) if metric.aggregate == "summary" else None
    )
    return MetricNoise(noise.mechanism, share, value, subjects, total)
