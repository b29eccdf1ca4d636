"""dp mode: OpenDP's discrete Gaussian, the budget's split, contribution bounds against an
adversarial subject, and what one person can change in a release.

Tolerances come from the sample size: means within 5 standard errors (sd / sqrt(n)),
variances within 5 standard errors of the sample variance (sqrt((mu4 - sigma^4) / n)), so a
correct sampler fails about once in 3.5 million runs. Expected distributions are written
here from the definitions (the discrete Gaussian's mass function, the zCDP conversion), never
read from the code under test.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any

import numpy as np
import pytest

from anonymizers.policy import parse_policy
from anonymizers.policy.budget import allocate
from anonymizers.stats.aggregate import PartitionAggregator
from anonymizers.stats.config import stats_specs
from anonymizers.stats.ledger import summarise
from anonymizers.stats.noise import GaussianNoise
from anonymizers.stats.release import ReleaseEngine

from .reference import at


def pmf_gaussian(sigma: float, x: np.ndarray) -> np.ndarray:
    """The discrete Gaussian's mass: proportional to exp(-x^2 / (2 sigma^2)) on the integers."""
    half = int(40 * sigma) + 40
    support = np.arange(-half, half + 1)
    norm = np.exp(-(support**2) / (2 * sigma**2)).sum()
    return np.exp(-(x.astype(float) ** 2) / (2 * sigma**2)) / norm


@pytest.mark.parametrize("sigma", [0.8, 3.0, 40.0])
def test_noise_has_mean_zero_and_its_variance(sigma: float) -> None:
    """200,000 draws: mean 0 and the discrete Gaussian's variance, within 5 standard errors."""
    n = 200_000
    draws = np.array(GaussianNoise(sigma).add([0] * n), dtype=float)
    half = int(40 * sigma) + 40
    x = np.arange(-half, half + 1)
    p = pmf_gaussian(sigma, x)
    var = float((p * x**2).sum())
    mu4 = float((p * x.astype(float) ** 4).sum())
    assert abs(draws.mean()) < 5 * math.sqrt(var / n)
    assert abs(draws.var() - var) < 5 * math.sqrt((mu4 - var * var) / n)


@pytest.mark.parametrize("sigma", [1.0, 2.5, 17.0, 300.0])
def test_documented_variance_is_the_discrete_gaussians(sigma: float) -> None:
    """`variance` (sigma squared, as the records' noise_sd says) is the discrete Gaussian's
    own, to within 1e-6 relative, for sigma >= 1."""
    half = int(40 * sigma) + 40
    x = np.arange(-half, half + 1)
    exact = float((pmf_gaussian(sigma, x) * x**2).sum())
    assert abs(GaussianNoise(sigma).variance - exact) / exact < 1e-6


def test_noise_is_added_to_each_value_and_never_repeats_a_run() -> None:
    """Each value gets its own draw; two runs differ (no seed, by design); long vectors (two
    threads) keep their order."""
    values = list(range(0, 100_000, 2))
    first = GaussianNoise(1.0).add(values)
    second = GaussianNoise(1.0).add(values)
    assert first != second
    assert max(abs(a - b) for a, b in zip(first, values, strict=True)) < 10


def test_values_beyond_32_bits_take_noise() -> None:
    """A day's sum of times on page passes 2^31 ms on a busy site (3,000 people reading 15
    minutes): it takes noise like any value, in long vectors too."""
    big = [3_000_000_000, 2**40, -(2**35)]
    for values in (big, big * 10_000):
        noisy = GaussianNoise(1_000.0).add(values)
        assert len(noisy) == len(values)
        assert max(abs(a - b) for a, b in zip(noisy, values, strict=True)) < 20_000


def rho_of_eps(epsilon: float, delta: float) -> float:
    """The largest rho with rho + 2 sqrt(rho ln(1/delta)) <= epsilon, solved here."""
    log = math.log(1 / delta)
    return (-math.sqrt(log) + math.sqrt(log + epsilon)) ** 2


@pytest.mark.parametrize(
    "release",
    [
        {},
        {"epsilon_per_day": 0.5, "delta_per_day": 1e-9},
        {"epsilon_per_day": 16.0, "max_windows_per_day": {"1m": 1440, "1h": 24, "1d": 1}},
        {"max_cells_per_metric": 1, "max_contributions_per_cell": 100},
    ],
    ids=["default", "tight", "loose", "bounds"],
)
def test_the_allocation_never_exceeds_the_daily_budget(release: dict[str, Any]) -> None:
    """The families' rho per person-day add up to the rho of the daily (epsilon, delta/2)
    and their thresholds' delta to at most delta/2, so the whole is within the budget."""
    policy = parse_policy({"schema_version": 1, "release": release})
    budget = allocate(policy)
    epsilon = policy.release.epsilon_per_day
    delta = policy.release.delta_per_day
    assert budget.rho_day == pytest.approx(rho_of_eps(epsilon, delta / 2), rel=1e-9)
    assert budget.delta_thresholds <= delta / 2 * (1 + 1e-9)
    assert budget.epsilon_day <= epsilon * (1 + 1e-9)
    for family in budget.families:
        assert family.threshold >= (20 if family.metric == "searches" else 10) or (
            family.threshold == 0 and family.metric == "page_views_per_minute"
        )


def _adversary(days: int = 1) -> list[dict[str, Any]]:
    """One subject everywhere: every page of 300, every minute of a day, many times."""
    events = []
    for minute in range(0, 24 * 60 * days, 7):
        for page in range(0, 300, 13):
            for _ in range(3):
                second = minute * 60 + page % 60
                events.append(
                    {
                        "event_type": "page_view",
                        "occurred_at": at(second),
                        "subject": "adversary",
                        "page_url": f"https://shop.example/p{page}",
                        "country": "FR",
                        "region": "IDF",
                        "browser": f"B{page % 5}",
                        "os": "Linux",
                        "hardware": "desktop",
                        "language": "fr",
                        "referrer_host": f"r{page}.example",
                    }
                )
    return sorted(events, key=lambda e: e["occurred_at"])


def test_an_adversarial_subject_never_spends_more_than_the_budget() -> None:
    """A subject in every page and minute of a day counts in at most M cells (L each) per
    metric window and in at most W windows per size, metric and day; the ledger's worst case
    for that day stays within epsilon_per_day and delta_per_day."""
    policy = parse_policy({"schema_version": 1})
    aggregation, release = stats_specs(policy)
    aggregator = PartitionAggregator(aggregation, release, partition=0)
    events = _adversary()
    records = []
    for start in range(0, len(events), 1000):
        records += aggregator.process_batch(events[start : start + 1000], offsets=start)
    records += aggregator.close_all()
    windows: dict[tuple[str, int, str], set[str]] = defaultdict(set)
    cells: Counter[tuple[str, int, str]] = Counter()
    for record in records:
        value = record.value
        if value["kind"] != "partial":
            continue
        metric = aggregation.metric(value["metric"])
        key = (metric.name, value["window_seconds"], value["window_start"])
        day = value["window_start"][:10]
        windows[(metric.name, value["window_seconds"], day)].add(value["window_start"])
        cells[key] += 1
        assert value["subjects"] == 1
        assert value.get("count", 1) <= release.contributions_bound(metric)
    for (name, _size, _), count in cells.items():
        assert count <= release.cells_bound(aggregation.metric(name))
    for (name, size, day), starts in windows.items():
        assert len(starts) <= aggregation.windows_per_day[size], (name, size, day)
    engine = ReleaseEngine(aggregation, release, partitions=1, policy_version="t")
    for record in records:
        engine.add(record.value)
    engine.release_ready()
    ledger = [r.value for r in engine.ledger_records()]
    for date in ("2024-05-01", "2024-05-02"):
        day = summarise(ledger, date)
        assert day is not None and day.within_budget, date
        assert day.epsilon_spent <= policy.release.epsilon_per_day


def _release_counts(
    events: list[dict[str, Any]], policy_release: dict[str, Any], runs: int
) -> list[dict[str, int]]:
    """`runs` independent releases of `events` (one hour): the released value of each page."""
    policy = parse_policy(
        {
            "schema_version": 1,
            "aggregation": {
                "windows": ["1h", "1d"],
                "metrics": [
                    {
                        "name": "views",
                        "event_types": ["page_view"],
                        "dimensions": ["page_url"],
                        "windows": ["1h"],
                    },
                    {
                        "name": "searches",
                        "event_types": ["search"],
                        "dimensions": ["search_terms"],
                        "windows": ["1h"],
                        "sensitive": True,
                    },
                ],
            },
            "release": {"max_windows_per_day": {"1h": 24, "1d": 1}, **policy_release},
        }
    )
    aggregation, release = stats_specs(policy)
    # Aggregated once: the release (where the noise is) runs `runs` times on the partials.
    aggregator = PartitionAggregator(aggregation, release, partition=0)
    partials = []
    for start in range(0, len(events), 5000):
        partials += aggregator.process_batch(events[start : start + 5000], offsets=start)
    partials += aggregator.close_all()
    out = []
    for _ in range(runs):
        engine = ReleaseEngine(aggregation, release, partitions=1, policy_version="t")
        released = []
        for record in partials:
            engine.add(record.value)
            released += engine.release_ready()
        out.append(
            {
                f"{r.value['metric']}:{next(iter(r.value['dimensions'].values()))}": r.value[
                    "value"
                ]
                for r in released
            }
        )
    return out


def _crowd(people: int, page: str, *, prefix: str) -> list[dict[str, Any]]:
    return [
        {
            "event_type": "page_view",
            "occurred_at": at(60 + i),
            "subject": f"{prefix}{i}",
            "page_url": page,
        }
        for i in range(people)
    ]


def test_one_subject_with_100000_events_moves_a_value_by_at_most_its_bound() -> None:
    """With and without a subject who sends 100,000 views of one page (and others), the
    released count of that page differs in mean by at most L (its contributions are bounded)
    and keeps the mechanism's spread: 300 runs each, means within 5 standard errors."""
    crowd = _crowd(400, "/p", prefix="c")
    victim = [
        {
            "event_type": "page_view",
            "occurred_at": at(100 + i % 3000),
            "subject": "victim",
            "page_url": "/p" if i % 2 else f"/other{i % 97}",
        }
        for i in range(100_000)
    ]
    settings = {"epsilon_per_day": 16.0, "max_contributions_per_cell": 5}
    runs = 300
    without = [r.get("views:/p") for r in _release_counts(crowd, settings, runs)]
    with_victim = [
        r.get("views:/p")
        for r in _release_counts(
            sorted(crowd + victim, key=lambda e: e["occurred_at"]), settings, runs
        )
    ]
    assert None not in without and None not in with_victim
    a, b = np.array(without, float), np.array(with_victim, float)
    stderr = math.sqrt(a.var() / runs + b.var() / runs)
    assert abs(a.mean() - 400) < 5 * math.sqrt(a.var() / runs)
    assert abs(b.mean() - a.mean() - 5) < 5 * stderr  # exactly L more, on average
    assert abs(math.sqrt(b.var()) / math.sqrt(a.var()) - 1) < 0.25


def test_nineteen_fakes_and_one_victim_do_not_single_out_the_victim() -> None:
    """Nineteen fresh cookie ids plus one real person searching a term: the cell appears
    with a probability the privacy bound ties to the run without the victim (both tiny at
    the policy's search k of 20 and its threshold): never more often than e^epsilon times,
    plus delta, over 400 runs each."""
    fakes = [
        {
            "event_type": "search",
            "occurred_at": at(60 + i),
            "subject": f"fake{i}",
            "search_terms": "rare diagnosis",
        }
        for i in range(19)
    ]
    victim = [
        {
            "event_type": "search",
            "occurred_at": at(90),
            "subject": "victim",
            "search_terms": "rare diagnosis",
        }
    ]
    runs = 400
    shown_without = sum("searches:rare diagnosis" in r for r in _release_counts(fakes, {}, runs))
    shown_with = sum(
        "searches:rare diagnosis" in r
        for r in _release_counts(sorted(fakes + victim, key=lambda e: e["occurred_at"]), {}, runs)
    )
    # The threshold is at least k_search_terms (20) plus the noise's margin: a cell of 20
    # people (19 of them fakes) essentially never passes, with the victim or without.
    assert shown_with <= 5 and shown_without <= 5
