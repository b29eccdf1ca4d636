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

from dataclasses import dataclass, field
from typing import Final, Literal

from anonymizers.exceptions import AggregationError
from anonymizers.policy import Policy, duration_seconds
from anonymizers.policy.checks import SUMMARY_BIN_MS
from anonymizers.policy.model import (
    AggregationConfig,
    ContextConfig,
    KeysConfig,
    MetricConfig,
    NoiseConfig,
    ReleaseConfig,
)

AggregateKind = Literal["count", "distinct_subjects", "summary"]
SuppressionMode = Literal["other", "suppress_total"]
MechanismName = Literal["geometric", "discrete_gaussian"]

# Defaults of specs built directly (tests) are the policy's own defaults: one definition.
_AGGREGATION: Final = AggregationConfig()
_RELEASE: Final = ReleaseConfig()
_NOISE: Final = NoiseConfig()
DEFAULT_SUMMARY_STATISTICS: Final[tuple[str, ...]] = next(
    tuple(m.statistics) for m in _AGGREGATION.metrics if m.aggregate == "summary"
)
"""What a summary publishes when a spec built directly names no statistics."""


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
        )

    @property
    def space_key(self) -> tuple[object, ...]:
        """Metrics with equal keys share one per-subject state (same events, same cells)."""
        kind = "values" if self.aggregate == "summary" else "pairs"
        return (kind, tuple(sorted(self.event_types)), self.dimensions, self.value_field)

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
    """

    windows: tuple[int, ...]
    metrics: tuple[MetricSpec, ...]
    allowed_lateness: int = duration_seconds(_AGGREGATION.allowed_lateness)
    idle_timeout: int = duration_seconds(_AGGREGATION.idle_timeout)
    epoch_seconds: int = KeysConfig().rotation_seconds

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
        )

    def metric(self, name: str) -> MetricSpec:
        """The metric called `name`; `AggregationError` if there is none."""
        for metric in self.metrics:
            if metric.name == name:
                return metric
        raise AggregationError(f"unknown metric {name!r}; known: {[m.name for m in self.metrics]}")


@dataclass(frozen=True, slots=True)
class NoiseSpec:
    """The policy's `release.noise`: off by default; `epsilon` is the budget of one window's
    whole release (all metrics), split evenly over the metrics (see anonymizers.stats.noise)."""

    enabled: bool = _NOISE.enabled
    mechanism: MechanismName = _NOISE.mechanism
    epsilon: float = _NOISE.epsilon


@dataclass(frozen=True, slots=True)
class ReleaseSpec:
    """The policy's `release` section.

    - `k_min_subjects`: a released cell has at least this many distinct subjects.
    - `k_search_terms`: the same for `sensitive` metrics such as search terms.
    - `max_contributions_per_cell` (L): a subject adds at most L to a cell's count, and at
      most L values to a summary cell, per window.
    - `max_cells_per_metric` (M): a subject touches at most M cells of a metric per window,
      the first M in partition order.
    - `suppression`: `other` folds suppressed cells into an `other` cell that needs k itself;
      `suppress_total` publishes a total cell only when no cell is suppressed.
    - `noise`: see `NoiseSpec`.
    """

    k_min_subjects: int = _RELEASE.k_min_subjects
    k_search_terms: int = _RELEASE.k_search_terms
    max_contributions_per_cell: int = _RELEASE.max_contributions_per_cell
    max_cells_per_metric: int = _RELEASE.max_cells_per_metric
    suppression: SuppressionMode = _RELEASE.suppression
    noise: NoiseSpec = field(default_factory=NoiseSpec)

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
            noise=NoiseSpec(
                enabled=section.noise.enabled,
                mechanism=section.noise.mechanism,
                epsilon=section.noise.epsilon,
            ),
        )

    def k_for(self, metric: MetricSpec) -> int:
        """The minimum distinct subjects of a released cell of `metric`."""
        return self.k_search_terms if metric.sensitive else self.k_min_subjects


def stats_specs(policy: Policy) -> tuple[AggregationSpec, ReleaseSpec]:
    """(AggregationSpec, ReleaseSpec) of a checked policy: what the aggregate and release
    stages, and preview, run."""
    return AggregationSpec.from_policy(policy), ReleaseSpec.from_policy(policy)
