"""What the engine refuses is a policy error; specs derive from the policy; records match
their JSON Schemas; keys are canonical and unambiguous."""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import pytest

import schemas
from anonymizers.exceptions import PolicyError
from anonymizers.policy import default_policy, parse_policy
from anonymizers.stats.config import ReleaseSpec, stats_specs
from anonymizers.stats.records import aggregate_key, dims_part
from anonymizers.stats.release import release_events

from .conftest import SMALL_RELEASE, run_partitions, small_config
from .test_release import traffic


def _metric(name: str, types: list[str], dims: list[str], **extra: Any) -> dict[str, Any]:
    return {"name": name, "event_types": types, "dimensions": dims, **extra}


# What the statistics engine needs is checked by the policy, in the same pass as the rest:
# each case is a policy the engine could not run, with the start of the message it gets.
ENGINE_RULES = [
    pytest.param(
        {"aggregation": {"windows": ["1m", "90s"]}, "release": {"mode": "exact"}},
        "aggregation.windows must be nested durations, each dividing the next",
        id="not-nested",
    ),
    pytest.param(
        {"aggregation": {"windows": ["2m", "1m"]}, "release": {"mode": "exact"}},
        "aggregation.windows must be a list of durations in increasing order",
        id="not-increasing",
    ),
    pytest.param(
        {"aggregation": {"windows": ["7s"]}},
        "aggregation.windows[0] must be a window that divides keys.rotation",
        id="not-dividing-epoch",
    ),
    pytest.param(
        {"aggregation": {"windows": []}},
        "aggregation.windows must be a non-empty list",
        id="no-windows",
    ),
    pytest.param(
        {"aggregation": {"allowed_lateness": "-1s"}},
        "aggregation.allowed_lateness must be a duration",
        id="negative-lateness",
    ),
    pytest.param(
        {"aggregation": {"metrics": [_metric("x", ["page_view"], ["user_id"])]}},
        'aggregation.metrics[0].dimensions[0] must be one of "event_type"',
        id="identifier-dimension",
    ),
    pytest.param(
        {"aggregation": {"metrics": [_metric("x", ["click"], ["page_url"])]}},
        "aggregation.metrics[0].event_types[0] must be one of",
        id="unknown-event-type",
    ),
    pytest.param(
        {"aggregation": {"metrics": [_metric("x", ["page_view"], ["page_url"], aggregate="sum")]}},
        "aggregation.metrics[0].aggregate must be one of",
        id="unknown-aggregate",
    ),
    pytest.param(
        {
            "aggregation": {
                "metrics": [_metric("x", ["page_leave"], ["page_url"], aggregate="summary")]
            }
        },
        "aggregation.metrics[0].value_field must be set for a summary",
        id="summary-without-field",
    ),
    pytest.param(
        {"aggregation": {"metrics": [_metric("X", ["page_view"], [])]}},
        "aggregation.metrics[0].name must be a name of lower-case letters",
        id="bad-name",
    ),
    pytest.param(
        {
            "aggregation": {
                "metrics": [
                    _metric("a", ["page_view"], ["country"]),
                    _metric("b", ["page_view"], ["country", "region"]),
                ]
            },
            "release": {"mode": "exact"},
        },
        "aggregation.metrics[0].dimensions must be more than a subset of metric 'b'",
        id="roll-up",
    ),
    pytest.param(
        {
            "aggregation": {
                "metrics": [
                    _metric("a", ["page_view"], ["browser", "os"]),
                    _metric("b", ["page_view"], ["browser", "hardware"]),
                ]
            },
            "release": {"mode": "exact"},
        },
        "aggregation.metrics[1].dimensions must be in exact mode, no common marginal with "
        "metric 'a'",
        id="shared-marginal",
    ),
    pytest.param(
        {
            "aggregation": {
                "metrics": [
                    _metric("views", ["page_view"], ["page_url"]),
                    _metric("views_and_leaves", ["page_view", "page_leave"], ["page_url"]),
                ]
            },
            "release": {"mode": "exact"},
        },
        "aggregation.metrics[1].dimensions must be in exact mode, no common marginal with "
        "metric 'views'",
        id="overlapping-events",
    ),
    pytest.param(
        {"aggregation": {"metrics": [_metric("a", ["page_view"], [])] * 2}},
        "aggregation.metrics[1].name must be a name no other metric has",
        id="duplicate",
    ),
    pytest.param(
        {"release": {"k_min_subjects": 1}},
        "release.k_min_subjects must be an integer >= 2; got 1",
        id="k",
    ),
    pytest.param(
        {"release": {"max_cells_per_metric": 0}},
        "release.max_cells_per_metric must be an integer from 1 to 65535; got 0",
        id="m",
    ),
    pytest.param(
        {"release": {"max_contributions_per_cell": 70_000}},
        "release.max_contributions_per_cell must be an integer from 1 to 65535; got 70000",
        id="l-beyond-the-engine-counters",
    ),
    pytest.param(
        {"release": {"suppression": "hide"}},
        "release.suppression must be one of",
        id="suppression",
    ),
    pytest.param(
        {"release": {"mode": "laplace"}},
        'release.mode must be one of "dp", "exact"',
        id="mode",
    ),
    pytest.param(
        {"release": {"epsilon_per_day": 0}},
        "release.epsilon_per_day must be a number > 0",
        id="epsilon",
    ),
    pytest.param(
        {
            "aggregation": {
                "metrics": [
                    _metric(
                        "time_on_page",
                        ["page_leave"],
                        ["page_url"],
                        aggregate="summary",
                        value_field="time_on_page_ms",
                        statistics=["count", "p50"],
                    )
                ]
            }
        },
        "aggregation.metrics[0].statistics must be a list without percentiles while "
        'release.mode is "dp"',
        id="percentiles-with-noise",
    ),
    pytest.param(
        {"release": {"max_windows_per_day": {"1m": 60, "1d": 1}}},
        "release.max_windows_per_day must be a table with an entry for 1h",
        id="windows-per-day-missing",
    ),
    pytest.param(
        {"release": {"max_windows_per_day": {"1m": 60, "1h": 25, "1d": 1}}},
        'release.max_windows_per_day."1h" must be an integer from 1 to 24',
        id="windows-per-day-beyond-a-day",
    ),
    pytest.param(
        {"aggregation": {"metrics": [_metric("a", ["page_view"], [], windows=["5m"])]}},
        "aggregation.metrics[0].windows[0] must be one of aggregation.windows",
        id="metric-window-unknown",
    ),
    pytest.param(
        {"context": {"time_on_page_max": "1d"}},
        "context.time_on_page_max must be at most 65535s while a metric summarises",
        id="summary-bins",
    ),
]


@pytest.mark.parametrize(("override", "message"), ENGINE_RULES)
def test_what_the_engine_refuses_is_a_policy_error(override: dict[str, Any], message: str) -> None:
    """Every problem names the path, the allowed values and the value given."""
    with pytest.raises(PolicyError) as caught:
        parse_policy({"schema_version": 1, **override})
    issues = [str(issue) for issue in caught.value.issues]
    assert any(issue.startswith(message) for issue in issues), issues


def test_engine_and_section_problems_are_reported_in_one_pass() -> None:
    """A typo in one section does not hide what the engine refuses in another."""
    with pytest.raises(PolicyError) as caught:
        parse_policy(
            {
                "schema_version": 1,
                "geo": {"granularity": "street"},
                "aggregation": {"windows": ["1m", "90s", "1h", "1d"]},
                "release": {"max_cells_per_metric": 0, "mode": "exact"},
            }
        )
    paths = sorted(issue.path for issue in caught.value.issues)
    assert paths == ["aggregation.windows", "geo.granularity", "release.max_cells_per_metric"]


def test_shared_marginals_are_refused_in_exact_mode_only() -> None:
    """Metrics over shared events with a common marginal are an exact-mode problem (the
    audit does not model it); dp mode releases them, and the shipped metrics have none."""
    metrics = [
        _metric("a", ["page_view"], ["browser", "os"]),
        _metric("b", ["page_view"], ["browser", "hardware"]),
        _metric("c", ["page_leave"], ["browser", "hardware"]),  # other events: no identity
        _metric("d", ["page_view"], ["browser", "os"], aggregate="distinct_subjects"),
    ]
    with pytest.raises(PolicyError) as caught:
        parse_policy(
            {"schema_version": 1, "aggregation": {"metrics": metrics}, "release": {"mode": "exact"}}
        )
    assert [issue.path for issue in caught.value.issues] == [
        "aggregation.metrics[1].dimensions",
        "aggregation.metrics[3].dimensions",
    ]
    parse_policy({"schema_version": 1, "aggregation": {"metrics": metrics}})
    parse_policy({"schema_version": 1, "release": {"mode": "exact"}})


def test_defaults_are_valid() -> None:
    """The default policy's specs: windows, twelve metrics; search terms use the search k."""
    config, release = stats_specs(default_policy())
    assert config.windows == (60, 3600, 86400)
    searches = config.metric("searches")
    assert release.k_for(searches) == 20
    assert len(config.metrics) == 12
    assert ReleaseSpec().k_for(searches) == 20


def validator(name: str) -> Any:
    return jsonschema_rs.validator_for(schemas.load(name))


def busy_traffic(people: int = 3000, views: int = 5) -> list[dict[str, Any]]:
    """Page views of many people over one hour (two pages), with every default dimension."""
    events = []
    for index in range(people * views):
        second = index * 3600 // (people * views)
        events.append(
            {
                "event_type": "page_view",
                "occurred_at": f"2024-05-01T10:{second // 60:02d}:{second % 60:02d}Z",
                "subject": f"p{index % people}",
                "page_url": ["https://shop.example/a", "https://shop.example/b"][index % 2],
                "country": "FR",
                "region": "IDF",
                "browser": "Firefox",
                "os": "Linux",
                "hardware": "desktop",
                "language": "fr",
                "referrer_host": "www.google.com",
            }
        )
    return events


def test_released_records_match_aggregate_schema() -> None:
    """Released records of every kind (cells, other, total, summaries; exact and dp)
    validate against aggregate.v2."""
    aggregation = small_config()
    check = validator(schemas.AGGREGATE_V2)
    kinds = set()
    for mode in ("other", "suppress_total"):
        release = ReleaseSpec(k_min_subjects=2, k_search_terms=2, suppression=mode)  # type: ignore[arg-type]
        out, _ = release_events(traffic(3, subjects=30), aggregation, release, policy_version="v1")
        for record in out:
            check.validate(record.value)
            kinds.add((record.value["mode"], record.value["cell"], record.value["statistic"]))
    dp_aggregation, dp_release = stats_specs(
        parse_policy({"schema_version": 1, "release": {"epsilon_per_day": 8.0}})
    )
    out, _ = release_events(busy_traffic(), dp_aggregation, dp_release, policy_version="v1")
    for record in out:
        check.validate(record.value)
        kinds.add((record.value["mode"], record.value["cell"], record.value["statistic"]))
    assert {
        ("exact", "cell", "mean"),
        ("exact", "other", "count"),
        ("exact", "total", "count"),
    } <= kinds
    assert ("dp", "cell", "count") in kinds


def test_partial_records_match_partial_schema() -> None:
    """Partial and progress records validate; a broken one does not."""
    check = validator(schemas.PARTIAL_V1)
    records = run_partitions([traffic(5)], small_config(), SMALL_RELEASE)
    assert {r.value["kind"] for r in records} == {"partial", "progress"}
    for record in records:
        check.validate(record.value)
    broken = dict(records[0].value, unexpected=1)
    assert not check.is_valid(broken)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"page_url": "/a,b=c"}, {"page_url": "/a", "b": "c"}),
        ({"x": "1|2"}, {"x": "1", "y": "2"}),
        ({"page_url": "\\"}, {"page_url": "\\\\"}),
    ],
    ids=["comma-equals", "pipe", "backslash"],
)
def test_keys_are_unambiguous(a: dict[str, str], b: dict[str, str]) -> None:
    """Values containing separators never collide with other cells."""
    key_a = aggregate_key("m", "s", "e", dims_part(a), "count")
    assert key_a != aggregate_key("m", "s", "e", dims_part(b), "count")


def test_key_order_is_canonical() -> None:
    """Dimension order does not change the key."""
    assert dims_part({"b": "1", "a": "2"}) == dims_part({"a": "2", "b": "1"}) == "a=2,b=1"


def test_policy_maps_into_specs() -> None:
    """A policy's durations become seconds and its metrics the engine's specs."""
    policy = parse_policy(
        {
            "schema_version": 1,
            "aggregation": {
                "windows": ["1m", "1h", "1d"],
                "allowed_lateness": "90s",
                "idle_timeout": "30s",
                "metrics": [
                    _metric("page_views", ["page_view"], ["page_url"]),
                    _metric("searches", ["search"], ["search_terms"], sensitive=True),
                    _metric(
                        "time_on_page",
                        ["page_leave"],
                        ["page_url"],
                        aggregate="summary",
                        value_field="time_on_page_ms",
                        statistics=["sum", "p99"],
                    ),
                ],
            },
            "context": {"time_on_page_max": "10m"},
            "release": {
                "k_min_subjects": 11,
                "k_search_terms": 21,
                "mode": "exact",
            },
        }
    )
    aggregation, release = stats_specs(policy)
    assert aggregation.windows == (60, 3600, 86400)
    assert aggregation.allowed_lateness == 90 and aggregation.idle_timeout == 30
    assert aggregation.metric("searches").sensitive
    summary = aggregation.metric("time_on_page")
    assert summary.statistics == ("sum", "p99") and summary.value_max == 600_000
    assert aggregation.metric("page_views").statistics == ()
    assert release.k_min_subjects == 11 and release.mode == "exact" and release.budget is None
