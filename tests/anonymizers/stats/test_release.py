"""The release stage: exact values, k, suppression that no subtraction undoes, release once."""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from anonymizers.exceptions import AggregationError
from anonymizers.policy import OutputConfig, default_policy, parse_policy
from anonymizers.stats.aggregate import PartitionAggregator
from anonymizers.stats.config import (
    AggregationSpec,
    MetricSpec,
    ReleaseSpec,
)
from anonymizers.stats.records import Record
from anonymizers.stats.release import ReleaseEngine, release_events
from anonymizers.stats.suppression import CellFacts, SuppressionAudit

from .attacker import exposed
from .conftest import SMALL_RELEASE, by_key, release_records, run_partitions, small_config
from .reference import BASE_S, at, expected_statistic, metric_subjects, reference_cells

PAGES = ["/", "/a", "/b", "/c", "/d"]


def traffic(seed: int, *, subjects: int = 14, seconds: int = 480) -> list[dict[str, Any]]:
    """In-order generated traffic of page views, page leaves and searches."""
    rng = random.Random(seed)
    events = []
    for _ in range(rng.randint(20, 140)):
        kind = rng.choice(["page_view", "page_view", "page_view", "page_leave", "search"])
        event: dict[str, Any] = {
            "event_type": kind,
            "occurred_at": at(rng.randrange(seconds)),
            "subject": f"p{rng.randrange(subjects)}",
            "page_url": rng.choice(PAGES[: rng.randint(1, 5)]),
            "country": rng.choice(["FR", "DE"]),
        }
        if kind == "page_leave":
            event["time_on_page_ms"] = rng.choice([0, 1500, 64_000, 10**9])
        if kind == "search":
            event["search_terms"] = rng.choice(["a", "b"])
        events.append(event)
    return sorted(events, key=lambda e: e["occurred_at"])


def released(records: list[Record]) -> list[dict[str, Any]]:
    return list(by_key(records).values())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10**6),
    partitions=st.integers(1, 3),
    mode=st.sampled_from(["other", "suppress_total"]),
)
def test_release_without_noise_equals_reference(seed: int, partitions: int, mode: str) -> None:
    """Every released cell equals the ground truth; no cell with fewer than k subjects is
    released; `other` is the exact sum of the held-back cells and truly has k subjects; a
    total is released only when nothing was held back, and equals the whole."""
    events = traffic(seed)
    aggregation = small_config()
    release = ReleaseSpec(
        k_min_subjects=3,
        k_search_terms=4,
        max_contributions_per_cell=2,
        max_cells_per_metric=2,
        suppression=mode,
    )  # type: ignore[arg-type]
    split: list[list[dict[str, Any]]] = [[] for _ in range(partitions)]
    for event in events:
        split[hash(event["subject"]) % partitions].append(event)
    out = released(
        release_records(
            run_partitions(split, aggregation, release), aggregation, release, partitions=partitions
        )
    )
    truth = reference_cells(events, aggregation, release)
    shown: dict[tuple[str, int, int], set[Any]] = defaultdict(set)
    for record in out:
        metric = aggregation.metric(record["metric"])
        k = release.k_for(metric)
        assert record["k"] == k and record["mode"] == "exact" and record["epsilon"] is None
        size = record["window_seconds"]
        start = (
            int(np.datetime64(record["window_start"].rstrip("Z"), "s").astype(np.int64)) - BASE_S
        )
        window = (metric.name, size, start)
        window_cells = {d: c for (m, s, stt, d), c in truth.items() if (m, s, stt) == window}
        if record["cell"] == "cell":
            dims = tuple(sorted(record["dimensions"].items()))
            cell = window_cells[dims]
            assert len(cell.subjects) >= k
            assert record["value"] == expected_statistic(metric, cell, record["statistic"])
            assert record["distinct_subjects"] == len(cell.subjects)
            shown[window].add(dims)
    for record in out:
        metric = aggregation.metric(record["metric"])
        start = (
            int(np.datetime64(record["window_start"].rstrip("Z"), "s").astype(np.int64)) - BASE_S
        )
        window = (metric.name, record["window_seconds"], start)
        window_cells = {d: c for (m, s, stt, d), c in truth.items() if (m, s, stt) == window}
        held = [c for d, c in window_cells.items() if d not in shown[window]]
        if record["cell"] == "other":
            assert mode == "other" and metric.aggregate != "distinct_subjects" and held
            union = set().union(*(c.subjects for c in held))
            assert len(union) >= release.k_for(metric)
            if record["statistic"] == "count":
                assert record["value"] == sum(c.count for c in held)
        if record["cell"] == "total":
            assert mode == "suppress_total" and not held
            assert record["distinct_subjects"] == len(metric_subjects(truth, *window))
    for (name, size, start, dims), cell in truth.items():
        if len(cell.subjects) < release.k_for(aggregation.metric(name)):
            assert dims not in shown[(name, size, start)]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10**6),
    mode=st.sampled_from(["other", "suppress_total"]),
    k=st.integers(2, 5),
)
def test_no_combination_of_released_records_reveals_a_suppressed_count(
    seed: int, mode: str, k: int
) -> None:
    """With exactly additive traffic (bounds that never bind, no late events), an attacker
    solving every linear combination of released records (minutes, hours, other and total
    cells) recovers no suppressed cell; one who also knows every total of k or more subjects
    recovers nothing beyond what those totals alone give."""
    events = traffic(seed, subjects=12)
    aggregation = small_config(
        metrics=(MetricSpec("page_views", ("page_view",), ("page_url",), "count"),)
    )
    release = ReleaseSpec(
        k_min_subjects=k, max_contributions_per_cell=1000, max_cells_per_metric=10, suppression=mode
    )  # type: ignore[arg-type]
    truth = reference_cells(events, aggregation, release)
    for (_, size, start, dims), cell in truth.items():  # the attacker's identities hold exactly
        if size > 60:
            parts = [
                c.count
                for (m2, s2, st2, d2), c in truth.items()
                if s2 == 60 and d2 == dims and start <= st2 < start + size
            ]
            assert cell.count == sum(parts)
    engine = ReleaseEngine(aggregation, release, partitions=1, policy_version="t")
    out: list[Record] = []
    for record in run_partitions([events], aggregation, release):
        engine.add(record.value)
        out += engine.release_ready()
    assert engine.counters["audit_unresolved"] == 0
    values = [r.value for r in out]
    assert (
        exposed(values, truth, metric="page_views", sizes=aggregation.windows, k=k, totals=False)
        == []
    )
    inherent = exposed([], truth, metric="page_views", sizes=aggregation.windows, k=k)
    assert set(exposed(values, truth, metric="page_views", sizes=aggregation.windows, k=k)) <= set(
        inherent
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10**6),
    mode=st.sampled_from(["other", "suppress_total"]),
    k=st.integers(2, 5),
)
def test_one_window_size_reveals_nothing_even_with_every_total(
    seed: int, mode: str, k: int
) -> None:
    """With a single window size no total is a difference of others: even an attacker who
    knows every total of k or more subjects recovers no suppressed cell."""
    events = traffic(seed, subjects=12)
    aggregation = small_config(
        windows=(60,), metrics=(MetricSpec("page_views", ("page_view",), ("page_url",), "count"),)
    )
    release = ReleaseSpec(
        k_min_subjects=k, max_contributions_per_cell=1000, max_cells_per_metric=10, suppression=mode
    )  # type: ignore[arg-type]
    truth = reference_cells(events, aggregation, release)
    out = released(
        release_records(
            run_partitions([events], aggregation, release), aggregation, release, partitions=1
        )
    )
    assert exposed(out, truth, metric="page_views", sizes=(60,), k=k) == []


def test_attacker_finds_what_a_naive_release_leaks() -> None:
    """The attacker is not vacuous: releasing every cell with k subjects (no complementary
    suppression) lets it recover a lone small cell from the window total, and an hour minus
    its released minutes."""
    aggregation = small_config(
        windows=(60, 120),
        metrics=(MetricSpec("page_views", ("page_view",), ("page_url",), "count"),),
    )
    release = ReleaseSpec(k_min_subjects=3, max_contributions_per_cell=100)
    events = []
    for i in range(4):  # "/" has 4 subjects in minute 0 and in minute 1
        events.append(
            {
                "event_type": "page_view",
                "occurred_at": at(1),
                "subject": f"s{i}",
                "page_url": "/",
                "country": "FR",
            }
        )
        events.append(
            {
                "event_type": "page_view",
                "occurred_at": at(61),
                "subject": f"s{i}",
                "page_url": "/",
                "country": "FR",
            }
        )
    events.append(
        {
            "event_type": "page_view",
            "occurred_at": at(2),
            "subject": "lone",
            "page_url": "/a",
            "country": "FR",
        }
    )
    events.append(
        {
            "event_type": "page_view",
            "occurred_at": at(62),
            "subject": "t1",
            "page_url": "/a",
            "country": "FR",
        }
    )
    events.append(
        {
            "event_type": "page_view",
            "occurred_at": at(63),
            "subject": "t2",
            "page_url": "/a",
            "country": "FR",
        }
    )
    events.sort(key=lambda e: e["occurred_at"])
    truth = reference_cells(events, aggregation, release)
    naive = []
    for (_, size, start, dims), cell in truth.items():
        if len(cell.subjects) >= 3:
            naive.append(
                {
                    "metric": "page_views",
                    "window_seconds": size,
                    "window_start": at(start).replace(".000", ""),
                    "cell": "cell",
                    "dimensions": dict(dims),
                }
            )
    leaks = exposed(naive, truth, metric="page_views", sizes=(60, 120), k=3)
    assert (60, 0, (("page_url", "/a"),)) in leaks
    engine_out = released(
        release_records(
            run_partitions([events], aggregation, release), aggregation, release, partitions=1
        )
    )
    assert exposed(engine_out, truth, metric="page_views", sizes=(60, 120), k=3) == []
    assert any(r["cell"] == "cell" for r in engine_out)  # and it still releases something


def test_complementary_suppression_takes_the_smallest_cell() -> None:
    """One window size: one cell below k with a total of k or more forces exactly one more
    cell back, the smallest; two cells below k protect each other."""
    audit = SuppressionAudit((60,))
    cells = {
        "a": CellFacts(2, 2),
        "b": CellFacts(30, 40),
        "c": CellFacts(12, 12),
        "d": CellFacts(12, 15),
    }
    decision = audit.decide(window_seconds=60, start_us=0, cells=cells, total_subjects=50, k=10)
    assert decision.suppressed == {"a", "c"} and decision.complementary == {"c"}
    cells["e"] = CellFacts(3, 3)
    decision = audit.decide(
        window_seconds=60, start_us=60_000_000, cells=cells, total_subjects=50, k=10
    )
    assert decision.suppressed == {"a", "e"} and not decision.complementary
    decision = audit.decide(
        window_seconds=60,
        start_us=120_000_000,
        cells={"a": CellFacts(2, 2)},
        total_subjects=2,
        k=10,
    )
    assert decision.suppressed == {"a"} and not decision.unresolved


def test_coarse_cell_with_one_suppressed_child_is_held_back() -> None:
    """Hour minus released minutes must not isolate one suppressed minute: the coarse cell is
    held back; with two suppressed minutes it is released."""
    audit = SuppressionAudit((60, 120))
    big, small = CellFacts(20, 20), CellFacts(2, 2)
    audit.decide(window_seconds=60, start_us=0, cells={"x": big, "y": big}, total_subjects=40, k=10)
    audit.decide(
        window_seconds=60,
        start_us=60_000_000,
        cells={"x": small, "y": big, "z": big},
        total_subjects=42,
        k=10,
    )
    decision = audit.decide(
        window_seconds=120,
        start_us=0,
        cells={"x": CellFacts(21, 22), "y": CellFacts(30, 40), "z": big},
        total_subjects=60,
        k=10,
    )
    assert "x" in decision.suppressed


def test_cells_one_window_size_lacks_never_withhold_the_whole_coarse_window() -> None:
    """The bounds are per window, so a coarse window can lack a cell its minutes had (w) and
    hold one they lacked (v, below k). Neither is ever released; an identity that only the
    exact-additivity assumption creates (v = 0) is not of the coarse window's making: it
    releases its large cells instead of withholding everything."""
    audit = SuppressionAudit((60, 120))
    big, small = CellFacts(20, 20), CellFacts(2, 2)
    first = {"x": big, "y": big, "w": small, "u": small}  # w and u protect each other
    for minute, cells in enumerate((first, {"x": big, "y": big})):
        audit.decide(
            window_seconds=60, start_us=minute * 60_000_000, cells=cells, total_subjects=42, k=10
        )
    decision = audit.decide(
        window_seconds=120,
        start_us=0,
        cells={"x": CellFacts(30, 40), "y": CellFacts(30, 40), "u": small, "v": small},
        total_subjects=64,
        k=10,
    )
    assert not decision.unresolved
    assert decision.released == {"x", "y"} and decision.suppressed == {"u", "v"}


def delivered(records: list[Record], order: random.Random, *, crashes: int) -> list[Record]:
    """An order in which a release worker can receive `records` from Kafka.

    Each source partition's records arrive in the order its aggregate worker wrote them (one
    producer's order within a partition); a worker that crashed is replaced by one that
    replays from an earlier point, its last commit, so a suffix arrives again (duplicates,
    and ranges already seen after later ones); nothing orders the sources among themselves,
    so they interleave at random. What Kafka never does is deliver a source's later range
    first while the earlier one, never seen yet, is still to come: the release engine's
    floor relies on that (anonymizers.stats.release).
    """
    streams = []
    for source in sorted({int(r.value["partition"]) for r in records}):
        stream = [r for r in records if int(r.value["partition"]) == source]
        for _ in range(crashes):
            crash = order.randint(0, len(stream))
            stream = stream[:crash] + stream[order.randint(0, crash) :]
        streams.append(stream)
    merged: list[Record] = []
    while streams:
        stream = order.choice(streams)
        merged.append(stream.pop(0))
        streams = [s for s in streams if s]
    return merged


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10**6),
    order=st.randoms(use_true_random=False),
    crashes=st.integers(0, 3),
)
def test_duplicated_and_reordered_partials_give_the_same_release(
    seed: int, order: random.Random, crashes: int
) -> None:
    """The release merges by key: sources interleaved in any order, aggregate workers
    crashing and replaying from an earlier point (duplicated partial and progress records),
    change nothing that is published."""
    events = traffic(seed)
    aggregation = small_config()
    records = run_partitions([events[::2], events[1::2]], aggregation, SMALL_RELEASE)
    reference = by_key(release_records(records, aggregation, SMALL_RELEASE, partitions=2))
    noisy = delivered(records, order, crashes=crashes)
    assert len(noisy) >= len(records)
    assert by_key(release_records(noisy, aggregation, SMALL_RELEASE, partitions=2)) == reference


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), crash=st.floats(0, 1))
def test_restarted_release_publishes_each_key_once_with_the_same_values(
    seed: int, crash: float
) -> None:
    """Crash the release stage anywhere: a new engine given the checkpoint, the published keys
    and the records from safe_offsets() publishes only missing keys, and the union equals an
    uninterrupted run (noise off, so values are comparable)."""
    events = traffic(seed, seconds=1200)
    aggregation = small_config()
    records = run_partitions([events], aggregation, SMALL_RELEASE)
    uninterrupted = by_key(release_records(records, aggregation, SMALL_RELEASE, partitions=1))
    first = ReleaseEngine(aggregation, SMALL_RELEASE, partitions=1, policy_version="test")
    published: list[Record] = []
    stop = int(crash * len(records))
    for offset, record in enumerate(records[:stop]):
        first.add(record.value, source=0, offset=offset)
        published += first.release_ready()
    floor = first.checkpoint()
    commit = first.safe_offsets().get(0, 0)
    second = ReleaseEngine(
        aggregation, SMALL_RELEASE, partitions=1, policy_version="test", resume_floor=floor
    )
    second.mark_published(r.key for r in published)
    for offset, record in enumerate(records[commit:], start=commit):
        second.add(record.value, source=0, offset=offset)
        published += second.release_ready()
    keys = [r.key for r in published]
    assert len(keys) == len(set(keys))
    assert by_key(published) == uninterrupted


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), partitions=st.integers(1, 4), batch=st.integers(1, 50))
def test_preview_and_stream_give_the_same_aggregates(
    seed: int, partitions: int, batch: int
) -> None:
    """release_events (preview) equals partitioned aggregators + one release engine."""
    events = traffic(seed)
    aggregation = small_config()
    preview, _ = release_events(events, aggregation, SMALL_RELEASE, policy_version="test")
    split: list[list[dict[str, Any]]] = [[] for _ in range(partitions)]
    for event in events:
        split[sum(map(ord, event["subject"])) % partitions].append(event)
    stream = release_records(
        run_partitions(split, aggregation, SMALL_RELEASE, batch=batch),
        aggregation,
        SMALL_RELEASE,
        partitions=partitions,
    )
    assert by_key(stream) == by_key(preview)


def test_release_waits_for_every_partition() -> None:
    """A window is released only once every partition reported it closed, empty ones too."""
    aggregation = small_config(windows=(60,))
    events = [
        {
            "event_type": "page_view",
            "occurred_at": at(i),
            "subject": f"s{i}",
            "page_url": "/",
            "country": "FR",
        }
        for i in range(5)
    ]
    busy = PartitionAggregator(aggregation, SMALL_RELEASE, partition=0)
    engine = ReleaseEngine(aggregation, SMALL_RELEASE, partitions=2, policy_version="t")
    for record in busy.process_batch(events, offsets=0) + busy.close_all():
        engine.add(record.value)
    assert engine.release_ready() == []
    idle = PartitionAggregator(aggregation, SMALL_RELEASE, partition=1)
    now = (BASE_S + 600) * 1_000_000
    for record in idle.advance_idle(now) + idle.advance_idle(now + 31_000_000):
        engine.add(record.value)
    out = engine.release_ready()
    assert {(r.value["metric"], r.value["value"]) for r in out} >= {("page_views", 5)}


def test_malformed_partials_are_counted() -> None:
    """Records that are not partial.v1, name unknown metrics or carry bad fields are ignored."""
    engine = ReleaseEngine(small_config(), SMALL_RELEASE, partitions=1, policy_version="t")
    engine.add({"schema": "other"})
    engine.add({"schema": "partial.v1", "kind": "nope"})
    engine.add({"schema": "partial.v1", "kind": "partial", "metric": "nope"})
    engine.add({"schema": "partial.v1", "kind": "partial", "metric": "page_views", "partition": 0})
    engine.add(
        {
            "schema": "partial.v1",
            "kind": "progress",
            "partition": 5,
            "closed_through": at(1),
            "closed_from": None,
            "windows": [],
        }
    )
    assert engine.counters == {
        "ignored:schema": 1,
        "ignored:kind": 1,
        "ignored:metric": 1,
        "ignored:malformed": 2,
    }


def test_unknown_metric_subset_fails_at_construction() -> None:
    """Naming a metric the policy does not define fails at configuration time."""
    with pytest.raises(AggregationError, match="unknown metric"):
        ReleaseEngine(
            small_config(), SMALL_RELEASE, partitions=1, policy_version="t", metrics=["nope"]
        )


def test_default_policy_end_to_end_smoke() -> None:
    """The default configuration aggregates and releases generated traffic."""
    events = traffic(7, subjects=40)
    out, counters = release_events(
        events,
        AggregationSpec.from_policy(default_policy()),
        ReleaseSpec(k_min_subjects=2),
        policy_version="v1",
    )
    assert counters["events"] == len(events)
    assert {r.value["metric"] for r in out} >= {"page_views", "unique_visitors"}


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10**6), crash=st.floats(0, 1))
def test_dp_restart_decides_each_metric_window_at_most_once(seed: int, crash: float) -> None:
    """In dp mode a restarted release never publishes a key twice, and never decides a
    metric window again once any of its records was published (a second draw would spend the
    budget twice): every window's records come from one engine."""
    events = traffic(seed, seconds=1200, subjects=400)
    aggregation = small_config()
    release = dp_release(aggregation)
    records = run_partitions([events], aggregation, release)
    first = ReleaseEngine(aggregation, release, partitions=1, policy_version="test")
    published: list[tuple[int, Record]] = []
    stop = int(crash * len(records))
    for offset, record in enumerate(records[:stop]):
        first.add(record.value, source=0, offset=offset)
        published += [(1, r) for r in first.release_ready()]
    commit = first.safe_offsets().get(0, 0)
    second = ReleaseEngine(
        aggregation, release, partitions=1, policy_version="test", resume_floor=first.checkpoint()
    )
    second.mark_published(r.key for _, r in published)
    for offset, record in enumerate(records[commit:], start=commit):
        second.add(record.value, source=0, offset=offset)
        published += [(2, r) for r in second.release_ready()]
    keys = [r.key for _, r in published]
    assert len(keys) == len(set(keys))
    engines: dict[str, set[int]] = defaultdict(set)
    for engine, record in published:
        engines["|".join(record.key.split("|")[:3])].add(engine)
    assert all(len(found) == 1 for found in engines.values())


def dp_release(aggregation: AggregationSpec) -> ReleaseSpec:
    """A dp release spec for the small metric set (its budget from a matching policy)."""
    metrics = [
        {
            "name": m.name,
            "event_types": list(m.event_types),
            "dimensions": list(m.dimensions),
            "aggregate": m.aggregate,
            **(
                {"value_field": m.value_field, "statistics": ["count", "mean"]}
                if m.value_field
                else {}
            ),
            "sensitive": m.sensitive,
        }
        for m in aggregation.metrics
    ]
    policy = parse_policy(
        {
            "schema_version": 1,
            "output": {"fields": [*OutputConfig().fields, "city"]},
            "geo": {"granularity": "city"},
            "aggregation": {"windows": ["1m", "2m", "4m"], "metrics": metrics},
            "release": {"max_windows_per_day": {"1m": 60, "2m": 30, "4m": 15}},
        }
    )
    return ReleaseSpec.from_policy(policy)
