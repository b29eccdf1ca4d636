"""The policy's `aggregation` and `release` sections as the aggregation engine's configs.

One mapping serves the stream's aggregate and release stages, `anonstream preview` and
`anonstream policy check`, so the statistics the privacy team previews are those the stream
releases, and a policy the engine would refuse fails its check, not a worker's start.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from anonymizers.policy import (
    AggregationConfig as AggregationSection,
)
from anonymizers.policy import (
    ContextConfig,
    KeysConfig,
    Policy,
    PolicyIssue,
    duration_seconds,
)
from anonymizers.policy import (
    ReleaseConfig as ReleaseSection,
)
from anonymizers.stats.config import (
    AggregationConfig,
    AggregationConfigError,
    MetricSpec,
    NoiseConfig,
    ReleaseConfig,
)


def engine_configs(
    *,
    aggregation: AggregationSection,
    release: ReleaseSection,
    context: ContextConfig,
    keys: KeysConfig,
) -> tuple[AggregationConfig, ReleaseConfig]:
    """The engine configs of the policy sections; `AggregationConfigError` lists every
    problem the engine finds. Summary values of `time_on_page_ms` are clamped to
    `context.time_on_page_max` (again: the chain clamps first)."""
    clamp_ms = context.time_on_page_max_ms
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
    problems: list[str] = []
    stats: AggregationConfig | None = None
    rules: ReleaseConfig | None = None
    try:
        stats = AggregationConfig(
            windows=tuple(duration_seconds(w) for w in aggregation.windows),
            allowed_lateness=duration_seconds(aggregation.allowed_lateness),
            idle_timeout=duration_seconds(aggregation.idle_timeout),
            metrics=metrics,
            epoch_seconds=keys.rotation_seconds,
        )
    except AggregationConfigError as exc:
        problems.extend(exc.problems)
    try:
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
    except AggregationConfigError as exc:
        problems.extend(exc.problems)
    if problems or stats is None or rules is None:
        raise AggregationConfigError(problems)
    return stats, rules


def stats_configs(policy: Policy) -> tuple[AggregationConfig, ReleaseConfig]:
    """(AggregationConfig, ReleaseConfig) of `policy` (see `engine_configs`)."""
    return engine_configs(
        aggregation=policy.aggregation,
        release=policy.release,
        context=policy.context,
        keys=policy.keys,
    )


_PROBLEM = re.compile(r"^(?P<path>\S+) must be (?P<allowed>.*?)(?:; got (?P<given>.*))?$")
_METRIC_PATH = re.compile(r"^aggregation\.metrics\.(?P<name>[^.\s]+)(?P<rest>\..*)?$")


def engine_issues(sections: Mapping[str, Any]) -> list[PolicyIssue]:
    """What the aggregation engine refuses in otherwise valid policy sections (a metric that
    rolls up another, windows that do not nest, caps beyond the engine's counters...), as
    policy issues whose paths name the policy's own settings."""
    try:
        engine_configs(
            aggregation=sections["aggregation"],
            release=sections["release"],
            context=sections["context"],
            keys=sections["keys"],
        )
    except AggregationConfigError as exc:
        index = {m.name: i for i, m in enumerate(sections["aggregation"].metrics)}
        return [_issue(problem, index) for problem in exc.problems]
    return []


def _issue(problem: str, metric_index: Mapping[str, int]) -> PolicyIssue:
    match = _PROBLEM.match(problem)
    if match is None:  # every engine message has that form; keep any other one whole
        return PolicyIssue("aggregation", problem, None)
    path = match["path"]
    named = _METRIC_PATH.match(path)
    if named is not None and named["name"] in metric_index:
        path = f"aggregation.metrics[{metric_index[named['name']]}]{named['rest'] or ''}"
    return PolicyIssue(path, match["allowed"], match["given"])
