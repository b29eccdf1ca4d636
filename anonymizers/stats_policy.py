"""The policy's `aggregation` and `release` sections as the aggregation engine's configs.

One mapping serves the stream's aggregate and release stages and `anonstream preview`, so
the statistics the privacy team previews are those the stream releases.
"""

from __future__ import annotations

from anonymizers.aggregation_config import (
    AggregationConfig,
    MetricSpec,
    NoiseConfig,
    ReleaseConfig,
)
from anonymizers.policy import Policy, duration_seconds


def stats_configs(policy: Policy) -> tuple[AggregationConfig, ReleaseConfig]:
    """(AggregationConfig, ReleaseConfig) of `policy`.

    Summary values of `time_on_page_ms` are clamped to the policy's `context.time_on_page_max`
    (again: the chain clamps first). Raises `AggregationConfigError` listing every problem
    (e.g. a metric that rolls up another), which `policy check` reports too.
    """
    aggregation = policy.aggregation
    clamp_ms = policy.context.time_on_page_max_ms
    metrics = tuple(
        MetricSpec(
            name=metric.name,
            event_types=tuple(metric.event_types),
            dimensions=tuple(metric.dimensions),
            aggregate=metric.aggregate,
            value_field=metric.value_field,
            sensitive=metric.sensitive,
            **({"value_max": clamp_ms} if metric.value_field == "time_on_page_ms" else {}),
        )
        for metric in aggregation.metrics
    )
    stats = AggregationConfig(
        windows=tuple(duration_seconds(w) for w in aggregation.windows),
        allowed_lateness=duration_seconds(aggregation.allowed_lateness),
        idle_timeout=duration_seconds(aggregation.idle_timeout),
        metrics=metrics,
        epoch_seconds=policy.keys.rotation_seconds,
    )
    release = policy.release
    rules = ReleaseConfig(
        k_min_subjects=release.k_min_subjects,
        k_search_terms=release.k_search_terms,
        max_contributions_per_cell=release.max_contributions_per_cell,
        max_cells_per_metric=release.max_cells_per_metric,
        suppression=release.suppression,
        noise=NoiseConfig(
            enabled=release.noise.enabled,
            mechanism=release.noise.mechanism,
            epsilon=release.noise.epsilon,
        ),
    )
    return stats, rules
