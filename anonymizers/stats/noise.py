"""Noise for dp mode, drawn by OpenDP's exact discrete Gaussian sampler.

`GaussianNoise(sigma).add(values)` returns each integer plus an independent draw of the
discrete Gaussian of standard deviation `sigma` (`opendp.measurements.make_gaussian` over
a vector of integers: exact arithmetic, randomness from the operating system's generator,
no floating-point sampling). Large vectors are split over two threads: the sampler runs in
OpenDP's Rust library, outside the interpreter lock, at about ten microseconds a draw.

Selection (partition selection) is the same draw compared with the family's threshold: a
cell appears when its noisy count of people is at least the threshold, exactly what OpenDP's
`make_gaussian_threshold` releases, whose privacy map is the accounting
(`anonymizers.policy.budget`). Nothing here is seeded or reproducible, by design.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any, Final

from anonymizers.policy.budget import opendp

PARALLEL_FROM: Final = 20_000
"""Vectors at least this long are drawn in two halves at once."""
_POOL: Final = ThreadPoolExecutor(max_workers=2, thread_name_prefix="anonstream-noise")


@cache
def _sampler(sigma: float) -> Any:
    dp = opendp()
    # 64-bit integers: a day's sum of times on page passes 2^31 milliseconds on busy sites
    # (OpenDP's `int` is 32 bits).
    return dp.m.make_gaussian(
        dp.vector_domain(dp.atom_domain(T="i64")), dp.l2_distance(T="i64"), scale=sigma
    )


class GaussianNoise:
    """Discrete Gaussian noise of standard deviation `sigma` (> 0)."""

    __slots__ = ("sigma",)

    def __init__(self, sigma: float) -> None:
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0; got {sigma}")
        self.sigma = sigma

    def add(self, values: Sequence[int]) -> list[int]:
        """Each value plus its own draw."""
        sampler = _sampler(self.sigma)
        items = [int(v) for v in values]
        if len(items) < PARALLEL_FROM:
            return list(sampler(items)) if items else []
        half = len(items) // 2
        first, second = _POOL.map(sampler, (items[:half], items[half:]))
        return [*first, *second]

    @property
    def variance(self) -> float:
        """The variance of a draw, as documented: sigma squared (the discrete Gaussian's is
        slightly below it, and equal to it to within 1e-6 relative for sigma >= 1: checked
        numerically in the tests)."""
        return self.sigma * self.sigma
