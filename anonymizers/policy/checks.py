"""Every rule of a policy that spans settings, and everything the statistics engine needs.

`check_sections(sections)` takes the sections that validated on their own (a section that
did not is absent) and returns every problem at once: each rule runs as soon as the
sections it reads are valid, so one pass reports the statistics engine's refusals beside a
typo in another section. Nothing else validates a policy: the engine's configuration
(`anonymizers.stats.config`) is derived from a checked policy and never re-validated.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, get_args

from anonymizers.fields import IDENTIFIER_FIELDS, REQUIRED_OUTPUT_FIELDS
from anonymizers.policy.budget import allocate_sections
from anonymizers.policy.issues import PolicyIssue, render_value
from anonymizers.policy.model import (
    DURATION_ALLOWED,
    AggregationConfig,
    ContextConfig,
    GeoConfig,
    IdentifiersConfig,
    KeysConfig,
    MetricConfig,
    OutputConfig,
    ReleaseConfig,
    Statistic,
    duration_seconds,
)

DAY_SECONDS: Final = 86_400
SUMMARY_BIN_MS: Final = 1_000
"""Histogram bin width of summary values (milliseconds): percentiles are bin edges."""
MAX_SUMMARY_BINS: Final = 65_536
"""Bins the engine keeps per summary cell: values are clamped below bins * bin width."""
PERCENTILES: Final = frozenset({"p50", "p75", "p90", "p95", "p99"})
"""Summary statistics that are percentiles (read from the histogram)."""
_GEO_NEEDS: Final = {
    "country": ("country", "region", "city"),
    "region": ("region", "city"),
    "city": ("city",),
}
"""Output field -> the geo granularities that produce it."""


def check_sections(sections: Mapping[str, Any]) -> list[PolicyIssue]:
    """Every problem of the rules below, for the sections present in `sections`."""
    issues: list[PolicyIssue] = []
    for rule in _RULES:
        issues.extend(rule(sections))
    return issues


# ------------------------------------------------------------------ one section


def _duration_ranges(sections: Mapping[str, Any]) -> list[PolicyIssue]:
    """Durations whose range the pattern alone cannot express."""
    ranges: list[tuple[str, str, str, int, int]] = [
        ("keys", "rotation", "from 1m to 31d", 60, 31 * DAY_SECONDS),
        ("keys", "retention", "from 1m to 31d", 60, 31 * DAY_SECONDS),
        ("context", "time_on_page_max", "from 1s to 1d", 1, DAY_SECONDS),
        ("aggregation", "allowed_lateness", "up to 1d", 0, DAY_SECONDS),
        ("aggregation", "idle_timeout", "up to 1d", 0, DAY_SECONDS),
    ]
    issues = []
    for section_name, name, phrase, low, high in ranges:
        section = sections.get(section_name)
        if section is None:
            continue
        text = getattr(section, name)
        if not low <= duration_seconds(text) <= high:
            path = f"{section_name}.{name}"
            issues.append(PolicyIssue(path, f"{DURATION_ALLOWED} {phrase}", render_value(text)))
    return issues


def _search_k(sections: Mapping[str, Any]) -> list[PolicyIssue]:
    release: ReleaseConfig | None = sections.get("release")
    if release is None or release.k_search_terms >= release.k_min_subjects:
        return []
    return [
        PolicyIssue(
            "release.k_search_terms",
            f"an integer >= release.k_min_subjects ({release.k_min_subjects})",
            render_value(release.k_search_terms),
        )
    ]


MODE_KEY: Final = "release.mode"
"""Where `check_sections` finds the release mode when the release section itself failed to
validate (the mode alone being valid): rules that depend on the mode still run."""


def _mode(sections: Mapping[str, Any]) -> str | None:
    release: ReleaseConfig | None = sections.get("release")
    return release.mode if release is not None else sections.get(MODE_KEY)


def _exact(sections: Mapping[str, Any]) -> bool:
    return _mode(sections) == "exact"


def _window_nesting(sections: Mapping[str, Any]) -> list[PolicyIssue]:
    """exact mode: windows increase and nest (each divides the next), as the suppression
    audit models a coarse window against its finer ones."""
    agg: AggregationConfig | None = sections.get("aggregation")
    if agg is None or not _exact(sections):
        return []
    sizes = [duration_seconds(w) for w in agg.windows]
    given = render_value(list(agg.windows))
    issues = []
    if sizes != sorted(sizes):
        issues.append(
            PolicyIssue("aggregation.windows", "a list of durations in increasing order", given)
        )
    ordered = sorted(sizes)
    for small, large in itertools.pairwise(ordered):
        if large % small:
            issues.append(
                PolicyIssue(
                    "aggregation.windows",
                    f"nested durations, each dividing the next ({large}s is not a multiple "
                    f"of {small}s)",
                    given,
                )
            )
    return issues


# ------------------------------------------------------------------ across sections


def _windows_fit_keys(sections: Mapping[str, Any]) -> list[PolicyIssue]:
    """Every window lies within one key epoch; keys outlive their epoch plus the lateness."""
    keys: KeysConfig | None = sections.get("keys")
    agg: AggregationConfig | None = sections.get("aggregation")
    if keys is None or agg is None:
        return []
    rotation = keys.rotation_seconds
    issues = [
        PolicyIssue(
            f"aggregation.windows[{index}]",
            f"a window that divides keys.rotation ({keys.rotation} = {rotation}s), so a "
            "window never spans two keys",
            render_value(window),
        )
        for index, window in enumerate(agg.windows)
        if rotation % duration_seconds(window)
    ]
    needed = rotation + duration_seconds(agg.allowed_lateness)
    if keys.retention_seconds < needed:
        issues.append(
            PolicyIssue(
                "keys.retention",
                f"at least keys.rotation + aggregation.allowed_lateness ({needed}s), so late "
                "events still find their key",
                render_value(keys.retention),
            )
        )
    return issues


def _output_fields(sections: Mapping[str, Any]) -> list[PolicyIssue]:
    """The allowlist holds the required fields, and nothing the other sections remove."""
    output: OutputConfig | None = sections.get("output")
    if output is None:
        return []
    fields = set(output.fields)
    given = list(output.fields)
    issues = [
        PolicyIssue(
            "output.fields",
            f"a list that includes {', '.join(REQUIRED_OUTPUT_FIELDS)} (missing {required})",
            render_value(given),
        )
        for required in REQUIRED_OUTPUT_FIELDS
        if required not in fields
    ]
    geo: GeoConfig | None = sections.get("geo")
    if geo is not None:
        issues.extend(_geo_field_issues(geo, fields, "output.fields", given))
    ids: IdentifiersConfig | None = sections.get("identifiers")
    if ids is not None:
        issues.extend(
            PolicyIssue(
                "output.fields",
                f'a list without {name}, since identifiers.{name} is "drop"',
                render_value(given),
            )
            for name in IDENTIFIER_FIELDS
            if name in fields and getattr(ids, name) != "pseudonymize"
        )
    return issues


def _geo_field_issues(
    geo: GeoConfig, fields: Iterable[str], path: str, given: Any
) -> list[PolicyIssue]:
    """Geolocation fields the granularity does not produce, and a prefix not kept."""
    issues = [
        PolicyIssue(
            path,
            f'a list without {name}, since geo.granularity is "{geo.granularity}"',
            render_value(given),
        )
        for name, granularities in _GEO_NEEDS.items()
        if name in fields and geo.granularity not in granularities
    ]
    if "ip_prefix" in fields and not geo.keep_ip_prefix:
        issues.append(
            PolicyIssue(
                path,
                "a list without ip_prefix, since geo.keep_ip_prefix is false",
                render_value(given),
            )
        )
    return issues


# ------------------------------------------------------------------ metrics


def _metrics(sections: Mapping[str, Any]) -> list[PolicyIssue]:
    """Each metric against the rest of the policy, then the metrics against each other."""
    agg: AggregationConfig | None = sections.get("aggregation")
    if agg is None:
        return []
    output: OutputConfig | None = sections.get("output")
    geo: GeoConfig | None = sections.get("geo")
    release: ReleaseConfig | None = sections.get("release")
    issues: list[PolicyIssue] = []
    seen: set[str] = set()
    for index, metric in enumerate(agg.metrics):
        base = f"aggregation.metrics[{index}]"
        if metric.name in seen:
            issues.append(
                PolicyIssue(f"{base}.name", "a name no other metric has", render_value(metric.name))
            )
        seen.add(metric.name)
        issues.extend(_metric_fields(metric, base, output, geo))
        issues.extend(_metric_shape(metric, base, release))
        issues.extend(
            PolicyIssue(
                f"{base}.windows[{position}]",
                f"one of aggregation.windows ({', '.join(agg.windows)})",
                render_value(size),
            )
            for position, size in enumerate(metric.windows)
            if size not in agg.windows
        )
    if _exact(sections):
        issues.extend(_rollups(agg.metrics))
        issues.extend(_shared_marginals(agg.metrics))
    return issues


def _metric_fields(
    metric: MetricConfig, base: str, output: OutputConfig | None, geo: GeoConfig | None
) -> list[PolicyIssue]:
    """A metric reads only fields the output keeps and the geo granularity produces."""
    issues = []
    if output is not None:
        missing = [d for d in metric.dimensions if d not in output.fields]
        if missing:
            issues.append(
                PolicyIssue(
                    f"{base}.dimensions",
                    f"fields that output.fields keeps (not {', '.join(missing)})",
                    render_value(list(metric.dimensions)),
                )
            )
        if metric.value_field is not None and metric.value_field not in output.fields:
            issues.append(
                PolicyIssue(
                    f"{base}.value_field",
                    "a field that output.fields keeps",
                    render_value(metric.value_field),
                )
            )
    if geo is not None:
        given = list(metric.dimensions)
        issues.extend(_geo_field_issues(geo, set(given), f"{base}.dimensions", given))
    if "search_terms" in metric.dimensions and not metric.sensitive:
        issues.append(
            PolicyIssue(
                f"{base}.sensitive",
                "true for a metric grouped by search_terms (search k applies)",
                render_value(metric.sensitive),
            )
        )
    return issues


def _metric_shape(
    metric: MetricConfig, base: str, release: ReleaseConfig | None
) -> list[PolicyIssue]:
    """value_field and statistics belong to summaries, and a summary publishes what it lists."""
    if metric.aggregate != "summary":
        return [
            PolicyIssue(
                f"{base}.{name}",
                f'absent for aggregate "{metric.aggregate}" (summary only)',
                render_value(value),
            )
            for name, value in (
                ("value_field", metric.value_field),
                ("statistics", list(metric.statistics)),
            )
            if value
        ]
    issues = []
    if metric.value_field is None:
        allowed = 'set for a summary: "time_on_page_ms"'
        issues.append(PolicyIssue(f"{base}.value_field", allowed, None))
    if not metric.statistics:
        issues.append(
            PolicyIssue(
                f"{base}.statistics",
                "a non-empty list for a summary: " + ", ".join(get_args(Statistic)),
                "[]",
            )
        )
    noisy = release is not None and release.mode == "dp"
    asked = sorted(PERCENTILES.intersection(metric.statistics))
    if noisy and asked:
        issues.append(
            PolicyIssue(
                f"{base}.statistics",
                'a list without percentiles while release.mode is "dp" (only count, sum and '
                "mean are released with noise)",
                render_value(list(metric.statistics)),
            )
        )
    return issues


def _rollups(metrics: Sequence[MetricConfig]) -> list[PolicyIssue]:
    """No metric is a roll-up of another over shared events: `coarse - sum(fine cells)`
    would reveal suppressed fine cells, which the suppression audit does not model."""
    issues = []
    for index, a in enumerate(metrics):
        for b in metrics:
            if a is b or not a.dimensions or not set(a.event_types) & set(b.event_types):
                continue
            if set(a.dimensions) < set(b.dimensions):
                issues.append(
                    PolicyIssue(
                        f"aggregation.metrics[{index}].dimensions",
                        f"more than a subset of metric {b.name!r}'s {list(b.dimensions)} over "
                        "the same events (a roll-up could reveal suppressed cells: define one "
                        "metric at the finest level the policy allows)",
                        render_value(list(a.dimensions)),
                    )
                )
    return issues


def _shared_marginals(metrics: Sequence[MetricConfig]) -> list[PolicyIssue]:
    """exact mode: no two metrics over shared events whose cells add up to a common marginal
    the audit does not model, which one's released cells minus the other's could turn into
    a suppressed cell: dimensions that share some but neither holds all of the other's
    (by browser and OS beside by browser and hardware), or the same dimensions over
    different events that overlap (page views beside views and leaves). A roll-up (one set
    inside the other) is `_rollups`'s; the same dimensions over the same events give the
    same cells and are allowed."""
    issues = []
    for j, b in enumerate(metrics):
        for a in metrics[:j]:
            events_a, events_b = set(a.event_types), set(b.event_types)
            dims_a, dims_b = set(a.dimensions), set(b.dimensions)
            if not events_a & events_b or not dims_a & dims_b:
                continue
            if dims_a < dims_b or dims_b < dims_a:
                continue
            if dims_a == dims_b and events_a == events_b:
                continue
            issues.append(
                PolicyIssue(
                    f"aggregation.metrics[{j}].dimensions",
                    f"in exact mode, no common marginal with metric {a.name!r} "
                    f"({list(a.dimensions)} over {list(a.event_types)}): the difference of "
                    "their cells could reveal a suppressed one, which the audit does not "
                    "model (use dp mode, or metrics that share no events or no dimension)",
                    render_value(list(b.dimensions)),
                )
            )
    return issues


def _summary_bins(sections: Mapping[str, Any]) -> list[PolicyIssue]:
    """Summary values are clamped to context.time_on_page_max and binned by the second: the
    engine holds at most `MAX_SUMMARY_BINS` bins per cell."""
    agg: AggregationConfig | None = sections.get("aggregation")
    context: ContextConfig | None = sections.get("context")
    if agg is None or context is None:
        return []
    if not any(m.aggregate == "summary" for m in agg.metrics):
        return []
    bins = context.time_on_page_max_ms // SUMMARY_BIN_MS + 1
    if bins <= MAX_SUMMARY_BINS:
        return []
    longest = (MAX_SUMMARY_BINS - 1) * SUMMARY_BIN_MS // 1000
    return [
        PolicyIssue(
            "context.time_on_page_max",
            f"at most {longest}s while a metric summarises time_on_page_ms (one-second "
            f"histogram bins, at most {MAX_SUMMARY_BINS})",
            render_value(context.time_on_page_max),
        )
    ]


def _windows_per_day(sections: Mapping[str, Any]) -> list[PolicyIssue]:
    """dp mode: W for every window size a metric is released at, and only for those; at
    most the windows of that size in a key epoch."""
    agg: AggregationConfig | None = sections.get("aggregation")
    release: ReleaseConfig | None = sections.get("release")
    keys: KeysConfig | None = sections.get("keys")
    if agg is None or release is None or release.mode != "dp":
        return []
    caps = release.max_windows_per_day
    used = {size for m in agg.metrics for size in (m.windows or agg.windows)}
    given = render_value(dict(caps))
    issues = [
        PolicyIssue(
            "release.max_windows_per_day",
            f"a table with an entry for {size}, a window size a metric is released at",
            given,
        )
        for size in sorted(used - set(caps), key=duration_seconds)
    ]
    rotation = keys.rotation_seconds if keys is not None else DAY_SECONDS
    for size, count in caps.items():
        if size not in agg.windows:
            allowed = f"a table whose keys are among aggregation.windows (not {size})"
            issues.append(PolicyIssue("release.max_windows_per_day", allowed, given))
            continue
        most = max(1, rotation // duration_seconds(size))
        if not 1 <= count <= most:
            issues.append(
                PolicyIssue(
                    f'release.max_windows_per_day."{size}"',
                    f"an integer from 1 to {most} (the {size} windows of a key epoch)",
                    render_value(count),
                )
            )
    return issues


def _budget(sections: Mapping[str, Any]) -> list[PolicyIssue]:
    """dp mode: the mechanisms the allocation calibrates keep a person-day within
    epsilon_per_day and delta_per_day."""
    agg: AggregationConfig | None = sections.get("aggregation")
    release: ReleaseConfig | None = sections.get("release")
    context: ContextConfig | None = sections.get("context")
    if agg is None or release is None or context is None or release.mode != "dp":
        return []
    if _windows_per_day(sections) or any(
        size not in agg.windows for m in agg.metrics for size in m.windows
    ):
        return []  # reported by their own rules
    try:
        budget = allocate_sections(aggregation=agg, release=release, context=context)
    except ValueError as exc:
        return [
            PolicyIssue(
                "release.delta_per_day",
                f"a delta the thresholds can meet ({exc})",
                render_value(release.delta_per_day),
            )
        ]
    if budget.epsilon_day > release.epsilon_per_day * (1 + 1e-9):
        return [
            PolicyIssue(
                "release.epsilon_per_day",
                f"at least the worst-case loss of a person-day, {budget.epsilon_day:.4f}",
                render_value(release.epsilon_per_day),
            )
        ]
    return []


_RULES: Final[tuple[Callable[[Mapping[str, Any]], list[PolicyIssue]], ...]] = (
    _duration_ranges,
    _windows_fit_keys,
    _window_nesting,
    _search_k,
    _output_fields,
    _metrics,
    _summary_bins,
    _windows_per_day,
    _budget,
)
