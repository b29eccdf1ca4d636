"""What the statistics engine runs on, derived from a checked policy and never re-validated.

`AggregationSpec.from_policy(policy)` and `ReleaseSpec.from_policy(policy)` (both at once:
`stats_specs(policy)`) turn the policy's `aggregation`, `release`, `context` and `keys`
sections into the engine's units: every duration in whole seconds, values of summary
metrics in the unit of their `value_field` (milliseconds for `time_on_page_ms`). Every rule
the engine relies on (windows nest and divide the key epoch, no metric is a roll-up of
another, bounds fit the engine's 16-bit counters, summaries fit their histogram) is a policy
check (`anonymizers.policy.checks`), so a policy the engine would refuse fails
`anonstream policy check`, not a worker's start. The specs can be built directly too, as
tests do, and are then taken as given.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from anonymizers.exceptions import AggregationError
from anonymizers.policy import Policy, duration_seconds
from anonymizers.policy.budget import Budget, allocate
from anonymizers.policy.checks import SUMMARY_BIN_MS
from anonymizers.policy.model import (
    AggregationConfig,
    ContextConfig,
    KeysConfig,
    MetricConfig,
    ReleaseConfig,
)

AggregateKind = Literal["count", "distinct_subjects", "summary"]
SuppressionMode = Literal["other", "suppress_total"]
ReleaseMode = Literal["dp", "exact"]

# Defaults of specs built directly (tests) are the policy's own defaults: one definition.
_AGGREGATION: Final = AggregationConfig()
_RELEASE: Final = ReleaseConfig()
DEFAULT_SUMMARY_STATISTICS: Final[tuple[str, ...]] = ("count", "mean", "p50", "p90")
"""What a summary publishes when a spec built directly (tests) names no statistics."""


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One released statistic: which events, broken down by which dimensions, aggregated how.

    - `name`: metric name on the wire.
    - `event_types`: events that feed it.
    - `dimensions`: event fields that form a cell, in this order (empty: one total cell). An
      event missing any of them (absent, None or "") does not contribute to this metric and
      is counted as `missing_dimension`.
    - `aggregate`: `count` (events, at most L per subject and cell), `distinct_subjects`
      (exact distinct pseudonyms) or `summary` (of `value_field`).
    - `value_field`: the summarised field, summary metrics only.
    - `statistics`: what a summary publishes, exactly (count, sum, mean, p50 ... p99).
    - `sensitive`: the release applies the search-term k (`k_search_terms`) instead of k.
    - `value_max`: summary values are clamped to [0, value_max] (default 1,800,000: 30 min).
    - `bin_width`: histogram bin width of summary values (default 1,000: one second);
      percentiles are reported as the lower edge of the bin that holds them.
    - `windows`: window sizes (seconds) it is released at; empty: all.
    - `max_cells`: M for this metric; None: the release's `max_cells_per_metric`.
    - `max_contributions`: L for this metric; None: `max_contributions_per_cell`.
    """

    name: str
    event_types: tuple[str, ...]
    dimensions: tuple[str, ...]
    aggregate: AggregateKind
    value_field: str | None = None
    statistics: tuple[str, ...] = DEFAULT_SUMMARY_STATISTICS
    sensitive: bool = False
    value_max: int = ContextConfig().time_on_page_max_ms
    bin_width: int = SUMMARY_BIN_MS
    windows: tuple[int, ...] = ()
    max_cells: int | None = None
    max_contributions: int | None = None

    @classmethod
    def from_policy(cls, metric: MetricConfig, *, value_max_ms: int) -> MetricSpec:
        """The spec of a policy metric; summary values are clamped to `value_max_ms`."""
        return cls(
            name=metric.name,
            event_types=tuple(metric.event_types),
            dimensions=tuple(metric.dimensions),
            aggregate=metric.aggregate,
            value_field=metric.value_field,
            statistics=tuple(metric.statistics) if metric.aggregate == "summary" else (),
            sensitive=metric.sensitive,
            value_max=value_max_ms,
            windows=tuple(sorted(duration_seconds(w) for w in metric.windows)),
            max_cells=metric.max_cells,
            max_contributions=metric.max_contributions,
        )

    def released_at(self, window_seconds: int) -> bool:
        """True when this metric is released at that window size."""
        return not self.windows or window_seconds in self.windows

    @property
    def space_key(self) -> tuple[object, ...]:
        """Metrics with equal keys share one per-subject state (same events, same cells,
        same bound on cells)."""
        kind = "values" if self.aggregate == "summary" else "pairs"
        return (
            kind,
            tuple(sorted(self.event_types)),
            self.dimensions,
            self.value_field,
            self.max_cells,
            self.max_contributions,
        )

    @property
    def nbins(self) -> int:
        """Number of histogram bins of a summary metric: bin i holds [i*w, (i+1)*w)."""
        return self.value_max // self.bin_width + 1


@dataclass(frozen=True, slots=True)
class AggregationSpec:
    """The policy's `aggregation` section in seconds.

    - `windows`: tumbling window sizes, increasing, each dividing the next and the epoch;
      on event time, aligned to the Unix epoch.
    - `allowed_lateness`: seconds an event may trail the latest event time of its partition
      and still count.
    - `idle_timeout`: seconds without events after which a partition's watermark follows
      processing time.
    - `metrics`: the released metrics.
    - `epoch_seconds`: pseudonym key rotation: a subject's pseudonym is constant within an
      epoch, and every window lies within one epoch.
    - `windows_per_day`: window size -> W, the windows of that size one subject counts in
      per metric and epoch (dp mode; empty: no such bound).
    - `exclude_bots`: events of hardware class "bot" count in no metric.
    """

    windows: tuple[int, ...]
    metrics: tuple[MetricSpec, ...]
    allowed_lateness: int = duration_seconds(_AGGREGATION.allowed_lateness)
    idle_timeout: int = duration_seconds(_AGGREGATION.idle_timeout)
    epoch_seconds: int = KeysConfig().rotation_seconds
    windows_per_day: Mapping[int, int] = field(default_factory=dict)
    exclude_bots: bool = False

    @classmethod
    def from_policy(cls, policy: Policy) -> AggregationSpec:
        """The aggregation spec of a checked policy."""
        section = policy.aggregation
        value_max_ms = policy.context.time_on_page_max_ms
        return cls(
            windows=tuple(sorted(duration_seconds(w) for w in section.windows)),
            metrics=tuple(
                MetricSpec.from_policy(m, value_max_ms=value_max_ms) for m in section.metrics
            ),
            allowed_lateness=duration_seconds(section.allowed_lateness),
            idle_timeout=duration_seconds(section.idle_timeout),
            epoch_seconds=policy.keys.rotation_seconds,
            windows_per_day=windows_per_day(policy) if policy.release.mode == "dp" else {},
            exclude_bots=section.exclude_bots,
        )

    def metric(self, name: str) -> MetricSpec:
        """The metric called `name`; `AggregationError` if there is none."""
        for metric in self.metrics:
            if metric.name == name:
                return metric
        raise AggregationError(f"unknown metric {name!r}; known: {[m.name for m in self.metrics]}")


@dataclass(frozen=True, slots=True)
class ReleaseSpec:
    """The policy's `release` section.

    - `k_min_subjects`: a released cell has at least this many distinct subjects.
    - `k_search_terms`: the same for `sensitive` metrics such as search terms.
    - `max_contributions_per_cell` (L): a subject adds at most L to a cell's count, and at
      most L values to a summary cell, per window.
    - `max_cells_per_metric` (M): a subject touches at most M cells of a metric per window,
      the first M in partition order.
    - `suppression` (exact mode): `other` folds suppressed cells into an `other` cell that
      needs k itself; `suppress_total` publishes a total cell only when no cell is
      suppressed.
    - `mode`: `dp` or `exact`; `budget`: the dp allocation (None in exact mode).
    """

    k_min_subjects: int = _RELEASE.k_min_subjects
    k_search_terms: int = _RELEASE.k_search_terms
    max_contributions_per_cell: int = _RELEASE.max_contributions_per_cell
    max_cells_per_metric: int = _RELEASE.max_cells_per_metric
    suppression: SuppressionMode = _RELEASE.suppression
    mode: ReleaseMode = "exact"
    budget: Budget | None = None
    policy_hash: str = "0" * 16
    """Of the policy the spec comes from; zeros for a spec built directly."""

    @classmethod
    def from_policy(cls, policy: Policy) -> ReleaseSpec:
        """The release spec of a checked policy."""
        section = policy.release
        return cls(
            k_min_subjects=section.k_min_subjects,
            k_search_terms=section.k_search_terms,
            max_contributions_per_cell=section.max_contributions_per_cell,
            max_cells_per_metric=section.max_cells_per_metric,
            suppression=section.suppression,
            mode=section.mode,
            budget=allocate(policy) if section.mode == "dp" else None,
            policy_hash=policy_hash(policy),
        )

    def k_for(self, metric: MetricSpec) -> int:
        """The minimum distinct subjects of a released cell of `metric`."""
        return self.k_search_terms if metric.sensitive else self.k_min_subjects

    def cells_bound(self, metric: MetricSpec) -> int:
        """M for `metric` (1 without dimension: a window has one cell)."""
        if not metric.dimensions:
            return 1
        return metric.max_cells or self.max_cells_per_metric

    def contributions_bound(self, metric: MetricSpec) -> int:
        """L for `metric`."""
        return metric.max_contributions or self.max_contributions_per_cell


def windows_per_day(policy: Policy) -> dict[int, int]:
    """release.max_windows_per_day in seconds."""
    return {duration_seconds(k): v for k, v in policy.release.max_windows_per_day.items()}


def policy_hash(policy: Policy) -> str:
    """SHA-256 (hex, first 16 characters) of the policy's canonical JSON: which policy
    produced a record."""
    canonical = json.dumps(policy.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def stats_specs(policy: Policy) -> tuple[AggregationSpec, ReleaseSpec]:
    """(AggregationSpec, ReleaseSpec) of a checked policy: what the aggregate and release
    stages, and preview, run."""
    return AggregationSpec.from_policy(policy), ReleaseSpec.from_policy(policy)
