"""Configuration of the aggregation and release engine: frozen, validated once.

The policy model (`anonymizers.policy`, sections `aggregation` and `release`) maps into these
classes; the field names are the policy's. Every validation problem is collected and raised
at once as `AggregationConfigError`, each naming the path, the allowed values and the value
given, so a bad policy fails before a worker joins its group (fail closed).

Units: every duration is an integer number of seconds; values of summary metrics are in the
unit of their `value_field` (milliseconds for `time_on_page_ms`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from anonymizers.exceptions import AnonstreamError

EVENT_TYPES: frozenset[str] = frozenset({"page_view", "page_leave", "search", "link_click"})
"""Event types of the anonymized event (docs/internals.md, "Event shapes")."""

DIMENSIONS: frozenset[str] = frozenset(
    {
        "page_url",
        "country",
        "region",
        "city",
        "browser",
        "browser_major",
        "os",
        "os_major",
        "hardware",
        "language",
        "referrer_host",
        "referrer_internal",
        "link_url",
        "search_terms",
    }
)
"""Fields of the anonymized event a metric may be broken down by. Identifiers, pseudonyms,
the subject and IP prefixes are deliberately absent: they can never be a dimension."""

VALUE_FIELDS: frozenset[str] = frozenset({"time_on_page_ms"})
"""Numeric fields a summary metric may summarise."""

AggregateKind = Literal["count", "distinct_subjects", "summary"]
SuppressionMode = Literal["other", "suppress_total"]
MechanismName = Literal["geometric", "discrete_gaussian"]

MAX_CELL_BOUND = 65_535
"""Upper limit of L (contributions per cell) and M (cells per metric): counters are uint16."""

MAX_SUMMARY_BINS = 65_536


class AggregationError(AnonstreamError):
    """Root of the aggregation and release engine's exceptions (misuse of its API)."""


class AggregationConfigError(AggregationError):
    """The aggregation or release configuration is invalid; `problems` lists every issue."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__("; ".join(self.problems))


def _raise_if(problems: list[str]) -> None:
    if problems:
        raise AggregationConfigError(problems)


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One released statistic: which events, broken down by which dimensions, aggregated how.

    - `name`: metric name on the wire (lower-case letters, digits and `_`).
    - `event_types`: events that feed it (subset of `EVENT_TYPES`).
    - `dimensions`: event fields that form a cell, in this order (subset of `DIMENSIONS`;
      empty for a single total cell). An event missing any of them (absent, None or "")
      does not contribute to this metric and is counted as `missing_dimension`.
    - `aggregate`: `count` (events, at most L per subject and cell), `distinct_subjects`
      (exact distinct pseudonyms) or `summary` (count, mean, p50, p90 of `value_field`).
    - `value_field`: the summarised field, summary metrics only.
    - `sensitive`: the release applies the search-term k (`k_search_terms`) instead of k.
    - `value_max`: summary values are clamped to [0, value_max] (default 1,800,000: 30 min).
    - `bin_width`: histogram bin width of summary values (default 1,000: one second);
      p50/p90 are reported as the lower edge of the bin that holds them.
    """

    name: str
    event_types: tuple[str, ...]
    dimensions: tuple[str, ...]
    aggregate: AggregateKind
    value_field: str | None = None
    sensitive: bool = False
    value_max: int = 1_800_000
    bin_width: int = 1_000

    def problems(self, path: str) -> list[str]:
        """Every validation problem of this metric, each prefixed with `path`."""
        out: list[str] = []
        if not self.name or not all(c.islower() or c.isdigit() or c == "_" for c in self.name):
            out.append(f"{path}.name must match [a-z0-9_]+; got {self.name!r}")
        if not self.event_types:
            out.append(
                f"{path}.event_types must name at least one of {sorted(EVENT_TYPES)}; got []"
            )
        for event_type in self.event_types:
            if event_type not in EVENT_TYPES:
                out.append(
                    f"{path}.event_types must be among {sorted(EVENT_TYPES)}; got {event_type!r}"
                )
        if len(set(self.dimensions)) != len(self.dimensions):
            out.append(f"{path}.dimensions must not repeat a field; got {list(self.dimensions)}")
        for dimension in self.dimensions:
            if dimension not in DIMENSIONS:
                out.append(
                    f"{path}.dimensions must be among {sorted(DIMENSIONS)}; got {dimension!r}"
                )
        if self.aggregate not in ("count", "distinct_subjects", "summary"):
            out.append(
                f"{path}.aggregate must be one of ['count', 'distinct_subjects', 'summary']; "
                f"got {self.aggregate!r}"
            )
        if self.aggregate == "summary":
            if self.value_field not in VALUE_FIELDS:
                out.append(
                    f"{path}.value_field must be one of {sorted(VALUE_FIELDS)} for a summary; "
                    f"got {self.value_field!r}"
                )
            if not isinstance(self.value_max, int) or self.value_max < 1:
                out.append(f"{path}.value_max must be an integer >= 1; got {self.value_max!r}")
            elif not isinstance(self.bin_width, int) or self.bin_width < 1:
                out.append(f"{path}.bin_width must be an integer >= 1; got {self.bin_width!r}")
            elif self.value_max // self.bin_width + 1 > MAX_SUMMARY_BINS:
                out.append(
                    f"{path}.bin_width must leave at most {MAX_SUMMARY_BINS} bins up to "
                    f"value_max={self.value_max}; got {self.bin_width}"
                )
        elif self.value_field is not None:
            out.append(
                f"{path}.value_field is only allowed for a summary; got {self.value_field!r}"
            )
        return out

    @property
    def space_key(self) -> tuple[object, ...]:
        """Metrics with equal keys share one per-subject state (same events, same cells)."""
        kind = "values" if self.aggregate == "summary" else "pairs"
        return (kind, tuple(sorted(self.event_types)), self.dimensions, self.value_field)

    @property
    def nbins(self) -> int:
        """Number of histogram bins of a summary metric: bin i holds [i*w, (i+1)*w)."""
        return self.value_max // self.bin_width + 1


def default_metrics(*, geo: tuple[str, ...] = ("country", "region")) -> tuple[MetricSpec, ...]:
    """The issue's default metric set; `geo` is the visitors breakdown the policy allows."""
    pv = ("page_view",)
    return (
        MetricSpec("page_views", pv, ("page_url",), "count"),
        MetricSpec("unique_visitors", pv, ("page_url",), "distinct_subjects"),
        MetricSpec("visitors", pv, geo, "distinct_subjects"),
        MetricSpec("page_views_by_browser", pv, ("browser",), "count"),
        MetricSpec("page_views_by_os", pv, ("os",), "count"),
        MetricSpec("page_views_by_hardware", pv, ("hardware",), "count"),
        MetricSpec("page_views_by_language", pv, ("language",), "count"),
        MetricSpec("referrals", pv, ("referrer_host",), "count"),
        MetricSpec("link_clicks", ("link_click",), ("link_url",), "count"),
        MetricSpec("searches", ("search",), ("search_terms",), "count", sensitive=True),
        MetricSpec(
            "time_on_page", ("page_leave",), ("page_url",), "summary", value_field="time_on_page_ms"
        ),
    )


def _rollup_problems(metrics: Sequence[MetricSpec]) -> list[str]:
    """Reject roll-ups: a metric whose non-empty dimensions are a strict subset of another's
    over shared event types would let `coarse - sum(fine cells)` reveal suppressed fine
    cells; the suppression audit (anonymizers.stats.suppression) does not model such identities."""
    out: list[str] = []
    for a in metrics:
        for b in metrics:
            if a is b or not a.dimensions or not set(a.event_types) & set(b.event_types):
                continue
            if set(a.dimensions) < set(b.dimensions):
                out.append(
                    f"aggregation.metrics.{a.name}.dimensions must be more than a subset of "
                    f"metric {b.name!r}'s {list(b.dimensions)} over the same events (a roll-up "
                    "could reveal suppressed cells: define one metric at the finest level the "
                    f"policy allows); got {list(a.dimensions)}"
                )
    return out


@dataclass(frozen=True, slots=True)
class AggregationConfig:
    """Section `aggregation` of the policy.

    - `windows`: tumbling window sizes in seconds (default 60, 3600, 86400), on event time,
      aligned to the Unix epoch. Each must divide the next (windows nest, so the release can
      audit coarse-minus-fine subtractions) and divide `epoch_seconds`.
    - `allowed_lateness`: seconds an event may trail the latest event time of its partition
      and still count (default 60).
    - `idle_timeout`: seconds without events after which a partition's watermark follows
      processing time (default 60).
    - `metrics`: the released metrics (default `default_metrics()`).
    - `epoch_seconds`: pseudonym key rotation (default 86400): a subject's pseudonym is
      constant within an epoch, and every window lies within one epoch.
    """

    windows: tuple[int, ...] = (60, 3600, 86400)
    allowed_lateness: int = 60
    idle_timeout: int = 60
    metrics: tuple[MetricSpec, ...] = field(default_factory=default_metrics)
    epoch_seconds: int = 86_400

    def __post_init__(self) -> None:
        out: list[str] = []
        if not self.windows:
            out.append("aggregation.windows must list at least one window size; got []")
        for i, size in enumerate(self.windows):
            if not isinstance(size, int) or isinstance(size, bool) or size < 1:
                out.append(
                    f"aggregation.windows[{i}] must be an integer >= 1 (seconds); got {size!r}"
                )
        sizes_ok = not out
        if sizes_ok:
            if list(self.windows) != sorted(set(self.windows)):
                out.append(
                    f"aggregation.windows must be strictly increasing; got {list(self.windows)}"
                )
            for small, large in zip(self.windows, self.windows[1:], strict=False):
                if large % small:
                    out.append(
                        "aggregation.windows must be nested, each size dividing the next; "
                        f"got {small} and {large}"
                    )
            for size in self.windows:
                if isinstance(self.epoch_seconds, int) and self.epoch_seconds % size:
                    out.append(
                        f"aggregation.windows must divide the pseudonym epoch of "
                        f"{self.epoch_seconds} s; got {size}"
                    )
        for name, value in (
            ("allowed_lateness", self.allowed_lateness),
            ("idle_timeout", self.idle_timeout),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                out.append(f"aggregation.{name} must be an integer >= 0 (seconds); got {value!r}")
        if not isinstance(self.epoch_seconds, int) or self.epoch_seconds < 1:
            out.append(
                f"aggregation.epoch_seconds must be an integer >= 1; got {self.epoch_seconds!r}"
            )
        if not self.metrics:
            out.append("aggregation.metrics must list at least one metric; got []")
        names = [m.name for m in self.metrics]
        for name in sorted({n for n in names if names.count(n) > 1}):
            out.append(f"aggregation.metrics names must be unique; got {name!r} twice")
        for metric in self.metrics:
            out.extend(metric.problems(f"aggregation.metrics.{metric.name}"))
        out.extend(_rollup_problems(self.metrics))
        _raise_if(out)

    def metric(self, name: str) -> MetricSpec:
        """The metric called `name`; `AggregationConfigError` if there is none."""
        for metric in self.metrics:
            if metric.name == name:
                return metric
        raise AggregationConfigError(
            [f"unknown metric {name!r}; known: {[m.name for m in self.metrics]}"]
        )


@dataclass(frozen=True, slots=True)
class NoiseConfig:
    """Section `release.noise`: off by default; `epsilon` is the budget of one window's whole
    release (all metrics), split evenly over the metrics (see anonymizers.stats.noise)."""

    enabled: bool = False
    mechanism: MechanismName = "geometric"
    epsilon: float = 1.0


@dataclass(frozen=True, slots=True)
class ReleaseConfig:
    """Section `release` of the policy.

    - `k_min_subjects`: a released cell has at least this many distinct subjects (default 10).
    - `k_search_terms`: the same for `sensitive` metrics such as search terms (default 20).
    - `max_contributions_per_cell` (L): a subject adds at most L to a cell's count, and at
      most L values to a summary cell, per window (default 5).
    - `max_cells_per_metric` (M): a subject touches at most M cells of a metric per window,
      the first M in partition order (default 10).
    - `suppression`: `other` folds suppressed cells into an `other` cell that needs k itself;
      `suppress_total` publishes a total cell only when no cell is suppressed.
    - `noise`: see `NoiseConfig`.
    """

    k_min_subjects: int = 10
    k_search_terms: int = 20
    max_contributions_per_cell: int = 5
    max_cells_per_metric: int = 10
    suppression: SuppressionMode = "other"
    noise: NoiseConfig = field(default_factory=NoiseConfig)

    def __post_init__(self) -> None:
        out: list[str] = []
        for name in ("k_min_subjects", "k_search_terms"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 2:
                out.append(f"release.{name} must be an integer >= 2; got {value!r}")
        for name in ("max_contributions_per_cell", "max_cells_per_metric"):
            value = getattr(self, name)
            if (
                not isinstance(value, int)
                or isinstance(value, bool)
                or not 1 <= value <= MAX_CELL_BOUND
            ):
                out.append(
                    f"release.{name} must be an integer in [1, {MAX_CELL_BOUND}]; got {value!r}"
                )
        if self.suppression not in ("other", "suppress_total"):
            out.append(
                "release.suppression must be one of ['other', 'suppress_total']; "
                f"got {self.suppression!r}"
            )
        if self.noise.mechanism not in ("geometric", "discrete_gaussian"):
            out.append(
                "release.noise.mechanism must be one of ['geometric', 'discrete_gaussian']; "
                f"got {self.noise.mechanism!r}"
            )
        eps = self.noise.epsilon
        if isinstance(eps, bool) or not isinstance(eps, int | float) or not 0 < eps <= 100:
            out.append(f"release.noise.epsilon must be a number in (0, 100]; got {eps!r}")
        _raise_if(out)

    def k_for(self, metric: MetricSpec) -> int:
        """The minimum distinct subjects of a released cell of `metric`."""
        return self.k_search_terms if metric.sensitive else self.k_min_subjects


_DURATION = re.compile(r"^([0-9]+)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: object, *, path: str) -> int:
    """Seconds of a policy duration: an integer of seconds, or text such as "90s", "1m",
    "1h", "1d"; `AggregationConfigError` naming `path` otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        match = _DURATION.match(value.strip())
        if match:
            return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    raise AggregationConfigError(
        [f'{path} must be seconds or a duration like "90s", "1m", "1h", "1d"; got {value!r}']
    )


def _unknown_keys(data: Mapping[str, Any], allowed: set[str], path: str) -> list[str]:
    return [
        f"{path}.{key} is not a known setting; known: {sorted(allowed)}"
        for key in sorted(set(data) - allowed)
    ]


def aggregation_from_mapping(data: Mapping[str, Any]) -> AggregationConfig:
    """Build the config from the policy's `aggregation` section as plain data (e.g. a
    pydantic model's `model_dump()`): `windows` (durations), `allowed_lateness`,
    `idle_timeout` (durations), `metrics` (list of {name, event_types, dimensions, aggregate,
    value_field, sensitive, value_max, bin_width}), `epoch_seconds`. Unknown keys and every
    invalid value are reported at once."""
    problems = _unknown_keys(
        data,
        {"windows", "allowed_lateness", "idle_timeout", "metrics", "epoch_seconds"},
        "aggregation",
    )
    kwargs: dict[str, Any] = {}
    try:
        if "windows" in data:
            kwargs["windows"] = tuple(
                parse_duration(w, path=f"aggregation.windows[{i}]")
                for i, w in enumerate(data["windows"])
            )
        for name in ("allowed_lateness", "idle_timeout", "epoch_seconds"):
            if name in data:
                kwargs[name] = parse_duration(data[name], path=f"aggregation.{name}")
    except AggregationConfigError as exc:
        problems.extend(exc.problems)
    if "metrics" in data:
        metric_fields = {f.name for f in fields(MetricSpec)}
        metrics = []
        for i, raw in enumerate(data["metrics"]):
            path = f"aggregation.metrics[{i}]"
            unknown = _unknown_keys(raw, metric_fields, path)
            missing = [
                f"{path}.{k} is required"
                for k in ("name", "event_types", "aggregate")
                if k not in raw
            ]
            problems.extend(unknown + missing)
            if unknown or missing:
                continue
            values = dict(raw)
            values["event_types"] = tuple(values["event_types"])
            values["dimensions"] = tuple(values.get("dimensions", ()))
            metrics.append(MetricSpec(**values))
        kwargs["metrics"] = tuple(metrics)
    if problems:
        raise AggregationConfigError(problems)
    return AggregationConfig(**kwargs)


def release_from_mapping(data: Mapping[str, Any]) -> ReleaseConfig:
    """Build the config from the policy's `release` section as plain data: the
    `ReleaseConfig` field names, `noise` as {enabled, mechanism, epsilon}."""
    allowed = {f.name for f in fields(ReleaseConfig)}
    problems = _unknown_keys(data, allowed, "release")
    values = {k: v for k, v in data.items() if k in allowed}
    noise = values.get("noise")
    if isinstance(noise, Mapping):
        problems.extend(_unknown_keys(noise, {"enabled", "mechanism", "epsilon"}, "release.noise"))
        values["noise"] = NoiseConfig(
            **{k: v for k, v in noise.items() if k in {"enabled", "mechanism", "epsilon"}}
        )
    if problems:
        raise AggregationConfigError(problems)
    return ReleaseConfig(**values)
