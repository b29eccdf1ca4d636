"""Shared fixtures and builders for the aggregation engine tests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from anonymizers.stats.aggregate import PartitionAggregator
from anonymizers.stats.config import AggregationSpec, MetricSpec, ReleaseSpec
from anonymizers.stats.records import Record
from anonymizers.stats.release import ReleaseEngine

SMALL_METRICS = (
    MetricSpec("page_views", ("page_view",), ("page_url",), "count"),
    MetricSpec("unique_visitors", ("page_view",), ("page_url",), "distinct_subjects"),
    MetricSpec("visitors", ("page_view",), ("country",), "distinct_subjects"),
    MetricSpec("searches", ("search",), ("search_terms",), "count", sensitive=True),
    MetricSpec(
        "time_on_page", ("page_leave",), ("page_url",), "summary", value_field="time_on_page_ms"
    ),
)


def small_config(**overrides: Any) -> AggregationSpec:
    """Windows of 1, 2 and 4 minutes, no lateness by default, the small metric set."""
    values: dict[str, Any] = {
        "windows": (60, 120, 240),
        "allowed_lateness": 0,
        "idle_timeout": 30,
        "metrics": SMALL_METRICS,
    }
    values.update(overrides)
    return AggregationSpec(**values)


def run_partitions(
    partitions: Sequence[Sequence[Mapping[str, Any]]],
    aggregation: AggregationSpec,
    release: ReleaseSpec,
    *,
    batch: int = 7,
) -> list[Record]:
    """Run one aggregator per partition (batches of `batch` events), close everything, let
    each partition go idle, and return every partial and progress record, per partition in
    order."""
    out: list[Record] = []
    for number, events in enumerate(partitions):
        aggregator = PartitionAggregator(aggregation, release, partition=number)
        for i in range(0, len(events), batch):
            chunk = list(events[i : i + batch])
            out += aggregator.process_batch(chunk, offsets=list(range(i, i + len(chunk))))
        out += aggregator.close_all()
        # End of input: the partition goes idle, so its progress covers every window.
        now = 2_000_000_000 * 1_000_000
        out += aggregator.advance_idle(now) + aggregator.advance_idle(now + 10**9)
    return out


def release_records(
    records: Iterable[Record],
    aggregation: AggregationSpec,
    release: ReleaseSpec,
    *,
    partitions: int,
    **kwargs: Any,
) -> list[Record]:
    """Feed records to a ReleaseEngine, releasing after each, and return what it published."""
    engine = ReleaseEngine(
        aggregation, release, partitions=partitions, policy_version="test", **kwargs
    )
    out: list[Record] = []
    for record in records:
        engine.add(record.value)
        out += engine.release_ready()
    return out


def by_key(records: Iterable[Record]) -> dict[str, dict[str, Any]]:
    """Records as key -> value, later ones overwriting (a compacted topic)."""
    return {r.key: r.value for r in records}


SMALL_RELEASE = ReleaseSpec(
    k_min_subjects=3, k_search_terms=4, max_contributions_per_cell=3, max_cells_per_metric=2
)
"""Small k and bounds so that random traffic of ten subjects exercises every rule."""
