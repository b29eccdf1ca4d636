"""End to end without noise (PRIVACY.md guarantees 8 and 9), on the real broker.

One run of the three stages as real worker processes over generated traffic of a day two
days back (see `harness`): 60 people browsing for 20 minutes, a heavy hitter with 100,000
page views in one minute, and a page leave of 10^9 ms. The tests check what lands on
`stats.aggregates` against a ground truth computed from the test's own input (`truth`).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.anonymizers.stats.attacker import exposed
from tests.anonymizers.stats.reference import RefCell
from tests.support.cli import run_cli

from .harness import DAY_S, Pipeline, Timeline, canonical, pipeline_run
from .traffic import PAGES, Traffic, shop
from .truth import (
    BY_NAME,
    CLAMP_MS,
    WINDOWS,
    L,
    M,
    assert_exact,
    by_cell,
    cell_key,
    covered,
    expected_value,
    policy_toml,
    truth_cells,
)

pytestmark = pytest.mark.kafka

LATENESS_S = 3 * 3600
HEAVY_VIEWS = 100_000
HEAVY_MINUTE = 3
HEAVY_PAGES = (PAGES[1], PAGES[2], PAGES[4])  # three pages: M = 2 admits only two
LONG_READ_MS = 10**9


@dataclass
class Run:
    traffic: Traffic
    pipeline: Pipeline
    records: list[tuple[str, dict[str, Any]]]  # (key, value), in topic order per partition
    directory: Path

    @property
    def values(self) -> list[dict[str, Any]]:
        """One value per released cell (`truth.by_cell`)."""
        return [value for _, value in by_cell(self.records)]

    @property
    def raw(self) -> list[dict[str, Any]]:
        """The records as published, one per statistic."""
        return [value for _, value in self.records]


def exact_traffic(timeline: Timeline) -> Traffic:
    traffic = shop(seed=11, start_ms=timeline.at(10), minutes=20, people=60)
    rng = random.Random(1)
    heavy = traffic.person("heavy-hitter", raw_partition=0, place=1, rng=rng)
    start = timeline.at(10) + HEAVY_MINUTE * 60_000
    for i in range(HEAVY_VIEWS):
        traffic.add(heavy, start + i // 2, "page_view", page_url=HEAVY_PAGES[i % 3])
    reader = traffic.person("long-reader", raw_partition=1, place=3, rng=rng)
    at = timeline.at(10) + 5 * 60_000 + 500
    traffic.add(reader, at, "page_view", page_url=PAGES[1])
    traffic.add(reader, at + 10, "page_leave", page_url=PAGES[1], time_on_page_ms=LONG_READ_MS)
    traffic.sort()
    return traffic


@pytest.fixture(scope="module")
def run(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory, e2e_geo_db: Path
) -> Iterator[Run]:
    directory = tmp_path_factory.mktemp("e2e-exact")
    with pipeline_run(
        kafka_bootstrap, directory, geo_db=e2e_geo_db, policy_text=policy_toml()
    ) as pipeline:
        traffic = exact_traffic(pipeline.timeline)
        pipeline.send(traffic)
        pipeline.flush(lateness_s=LATENESS_S)
        yield Run(traffic, pipeline, pipeline.released_day(), directory)


@pytest.fixture(scope="module")
def truth(run: Run) -> dict[Any, RefCell]:
    return truth_cells(run.traffic.views())


def test_every_released_value_equals_the_ground_truth(run: Run, truth: dict[Any, RefCell]) -> None:
    """Noise off: every key is published once; every released cell holds at least k people
    and exactly the ground truth (caps L and M applied by definition); every `other` cell is
    the exact sum of its window's held-back cells and covers k people; nothing else."""
    released_by_window, others = assert_exact(run.records, truth, policy_version="e2e")
    # Not vacuous: most cells with k people are released, in every window size.
    big = [c for c, cell in truth.items() if len(cell.subjects) >= BY_NAME[c[0]].k]
    released = set().union(*released_by_window.values())
    assert len(released) >= 0.7 * len(big), (len(released), len(big))
    assert {c[1] for c in released} == set(WINDOWS)
    assert others, "some window folded its small cells into `other`"


def test_cells_below_k_are_absent_and_no_combination_reveals_them(
    run: Run, truth: dict[Any, RefCell]
) -> None:
    """No cell with fewer than k people is released, and an attacker solving every linear
    combination of the released records (cells, `other`, all window sizes) recovers none of
    them; one who also knows every window total of k or more people learns nothing those
    totals alone do not give."""
    released = {cell_key(v) for v in run.values if v["cell"] == "cell"}
    small = [c for c, cell in truth.items() if len(cell.subjects) < BY_NAME[c[0]].k]
    assert len(small) > 50, "the traffic has small cells to protect"
    assert not released & set(small)
    for metric in BY_NAME.values():
        found = exposed(
            run.values, truth, metric=metric.name, sizes=WINDOWS, k=metric.k, totals=False
        )
        assert found == [], (metric.name, found[:5])
        inherent = exposed([], truth, metric=metric.name, sizes=WINDOWS, k=metric.k)
        with_totals = exposed(run.values, truth, metric=metric.name, sizes=WINDOWS, k=metric.k)
        assert set(with_totals) <= set(inherent), metric.name


def test_a_heavy_hitter_moves_any_cell_by_at_most_l(run: Run, truth: dict[Any, RefCell]) -> None:
    """One person with 100,000 page views in a minute over three pages adds at most L to any
    released count and 1 to any distinct count, in at most M cells per metric and window."""
    assert run.pipeline.stages["anonymize"].metric("anonstream_events_forwarded_total") >= (
        HEAVY_VIEWS
    )
    without = truth_cells(run.traffic.views(without=["heavy-hitter"]))
    moved: Counter[tuple[str, int, int]] = Counter()
    for value in run.values:
        if value["cell"] != "cell" or value["metric"] not in ("page_views", "unique_visitors"):
            continue
        ck = cell_key(value)
        base = without.get(ck, RefCell())
        bound = L if value["metric"] == "page_views" else 1
        base_value = base.count if value["metric"] == "page_views" else len(base.subjects)
        delta = value["value"] - base_value
        assert 0 <= delta <= bound, (ck, delta)
        if delta:
            moved[ck[:3]] += 1
            # M = 2: only the first two pages the person viewed in the window count.
            assert value["dimensions"]["page_url"] in HEAVY_PAGES[:M], ck
    assert moved, "the heavy hitter's views were counted somewhere"
    assert max(moved.values()) <= M


def test_a_time_on_page_of_a_billion_ms_is_clamped(run: Run, truth: dict[Any, RefCell]) -> None:
    """The page leave of 10^9 ms counts as the clamp (30 min): every released record whose
    cells hold it (its page's cell, or `other` when that cell was held back) has the mean of
    the clamped values, far below what the raw value would give."""
    metric = BY_NAME["time_on_page"]
    covering = []
    for value in run.values:
        if value["metric"] != metric.name:
            continue
        cells = covered(value, run.values, truth)
        if any("long-reader" in c.subjects for c in cells):
            covering.append((value, cells))
    assert covering, "the long read is in some released record"
    for value, cells in covering:
        assert CLAMP_MS in [v for c in cells for v in c.values]
        assert value["value"] == expected_value(metric, cells)
        total = sum(v for c in cells for v in c.values)
        unclamped_mean = (total - CLAMP_MS + LONG_READ_MS) / value["value"]["count"]
        assert value["value"]["mean"] <= CLAMP_MS
        assert value["value"]["mean"] * 20 < unclamped_mean


def test_preview_gives_the_same_aggregates_as_the_stream(run: Run) -> None:
    """`anonstream preview` on the same events (one process, one partition) writes exactly
    the records the three stages released across four partitions."""
    preview = run.pipeline.preview(run.traffic)
    assert len(preview) > 100
    assert canonical(preview) == canonical(run.raw)


def test_tail_shows_what_the_stream_released(run: Run) -> None:
    """`anonstream tail --metric page_views --window 1d` prints one row per released day
    record of page_views, with its value."""
    result = run_cli(run.pipeline.settings, "tail", "--metric", "page_views", "--window", "1d")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()[1:]
    day = [v for v in run.raw if v["metric"] == "page_views" and v["window_seconds"] == DAY_S]
    assert len(lines) == len(day) > 0
    for value in day:
        cell = value["dimensions"].get("page_url", "(other)")
        assert any(cell in line and f"  {value['value']}  " in line for line in lines), value
