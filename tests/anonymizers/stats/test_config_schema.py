"""Configuration fails closed with precise messages; records match their JSON Schemas;
keys are canonical and unambiguous."""

from __future__ import annotations

import json
from typing import Any

import jsonschema_rs
import pytest

from anonymizers.stats.config import (
    AggregationConfig,
    AggregationConfigError,
    MetricSpec,
    NoiseConfig,
    ReleaseConfig,
    aggregation_from_mapping,
    default_metrics,
    release_from_mapping,
)
from anonymizers.stats.records import aggregate_key, dims_part
from anonymizers.stats.release import release_events
from tests.support.paths import ROOT

from .conftest import SMALL_RELEASE, run_partitions, small_config
from .test_release import traffic

SCHEMAS = ROOT / "schemas"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"windows": (60, 90)}, "aggregation.windows must be nested, each size dividing the next"),
        ({"windows": (120, 60)}, "aggregation.windows must be strictly increasing"),
        ({"windows": (7,)}, "must divide the pseudonym epoch"),
        ({"windows": ()}, "aggregation.windows must list at least one"),
        ({"allowed_lateness": -1}, "aggregation.allowed_lateness must be an integer >= 0"),
        (
            {"metrics": (MetricSpec("x", ("page_view",), ("user_id",), "count"),)},
            "aggregation.metrics.x.dimensions must be among",
        ),
        (
            {"metrics": (MetricSpec("x", ("click",), ("page_url",), "count"),)},
            "aggregation.metrics.x.event_types must be among",
        ),
        (
            {"metrics": (MetricSpec("x", ("page_view",), ("page_url",), "sum"),)},
            "aggregation.metrics.x.aggregate must be one of",
        ),  # type: ignore[arg-type]
        (
            {"metrics": (MetricSpec("x", ("page_leave",), ("page_url",), "summary"),)},
            "aggregation.metrics.x.value_field must be one of",
        ),
        (
            {"metrics": (MetricSpec("X", ("page_view",), (), "count"),)},
            "aggregation.metrics.X.name must match",
        ),
        (
            {
                "metrics": (
                    MetricSpec("a", ("page_view",), ("country",), "count"),
                    MetricSpec("b", ("page_view",), ("country", "region"), "count"),
                )
            },
            "a roll-up could reveal suppressed cells",
        ),
        ({"metrics": (MetricSpec("a", ("page_view",), (), "count"),) * 2}, "names must be unique"),
    ],
    ids=[
        "not-nested",
        "not-increasing",
        "not-dividing-epoch",
        "no-windows",
        "negative-lateness",
        "identifier-dimension",
        "unknown-event-type",
        "unknown-aggregate",
        "summary-without-field",
        "bad-name",
        "roll-up",
        "duplicate",
    ],
)
def test_invalid_aggregation_config_names_path_and_value(
    kwargs: dict[str, Any], message: str
) -> None:
    """Every problem names the path, the allowed values and the value given."""
    with pytest.raises(AggregationConfigError, match=message):
        AggregationConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k_min_subjects": 1}, r"release.k_min_subjects must be an integer >= 2; got 1"),
        (
            {"max_cells_per_metric": 0},
            r"release.max_cells_per_metric must be an integer in \[1, 65535\]; got 0",
        ),
        ({"suppression": "hide"}, "release.suppression must be one of"),
        ({"noise": NoiseConfig(True, "laplace", 1.0)}, "release.noise.mechanism must be one of"),  # type: ignore[arg-type]
        ({"noise": NoiseConfig(True, "geometric", 0)}, "release.noise.epsilon must be a number in"),
    ],
    ids=["k", "m", "suppression", "mechanism", "epsilon"],
)
def test_invalid_release_config(kwargs: dict[str, Any], message: str) -> None:
    """Release settings are validated with precise messages."""
    with pytest.raises(AggregationConfigError, match=message):
        ReleaseConfig(**kwargs)


def test_all_problems_are_reported_at_once() -> None:
    """Several problems come back together."""
    with pytest.raises(AggregationConfigError) as caught:
        AggregationConfig(windows=(60, 90), allowed_lateness=-1)
    assert len(caught.value.problems) == 2


def test_defaults_are_valid() -> None:
    """The default metric set and windows validate; search terms use the search k."""
    config = AggregationConfig()
    assert config.windows == (60, 3600, 86400)
    searches = config.metric("searches")
    assert ReleaseConfig().k_for(searches) == 20
    assert len(default_metrics()) == 11


def validator(name: str) -> Any:
    return jsonschema_rs.validator_for(json.loads((SCHEMAS / name).read_text()))


@pytest.mark.parametrize("noise", [False, True])
def test_released_records_match_aggregate_schema(noise: bool) -> None:
    """Released records of every kind (cells, other, total, summaries) validate."""
    aggregation = small_config()
    for mode in ("other", "suppress_total"):
        release = ReleaseConfig(
            k_min_subjects=2,
            k_search_terms=2,
            suppression=mode,
            noise=NoiseConfig(noise, "geometric", 1.0),
        )  # type: ignore[arg-type]
        out, _ = release_events(traffic(3, subjects=30), aggregation, release, policy_version="v1")
        check = validator("aggregate.v1.json")
        kinds = set()
        for record in out:
            check.validate(record.value)
            kinds.add((record.value["cell"], record.value["aggregate"]))
        assert ("cell", "summary") in kinds


def test_partial_records_match_partial_schema() -> None:
    """Partial and progress records validate; a broken one does not."""
    check = validator("partial.v1.json")
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
    assert aggregate_key("m", "s", "e", dims_part(a)) != aggregate_key("m", "s", "e", dims_part(b))


def test_key_order_is_canonical() -> None:
    """Dimension order does not change the key."""
    assert dims_part({"b": "1", "a": "2"}) == dims_part({"a": "2", "b": "1"}) == "a=2,b=1"


def test_policy_sections_map_into_configs() -> None:
    """Plain policy data (durations as text) maps into the engine's configs."""
    aggregation = aggregation_from_mapping(
        {
            "windows": ["1m", "1h", "1d"],
            "allowed_lateness": "90s",
            "idle_timeout": 30,
            "metrics": [
                {
                    "name": "page_views",
                    "event_types": ["page_view"],
                    "dimensions": ["page_url"],
                    "aggregate": "count",
                },
                {
                    "name": "searches",
                    "event_types": ["search"],
                    "dimensions": ["search_terms"],
                    "aggregate": "count",
                    "sensitive": True,
                },
            ],
        }
    )
    assert aggregation.windows == (60, 3600, 86400)
    assert aggregation.allowed_lateness == 90 and aggregation.idle_timeout == 30
    assert aggregation.metric("searches").sensitive
    release = release_from_mapping(
        {
            "k_min_subjects": 11,
            "noise": {"enabled": True, "mechanism": "discrete_gaussian", "epsilon": 0.5},
        }
    )
    assert release.k_min_subjects == 11 and release.noise.mechanism == "discrete_gaussian"


def test_policy_mapping_reports_every_problem() -> None:
    """Unknown settings, bad durations and missing metric fields are all reported."""
    with pytest.raises(AggregationConfigError) as caught:
        aggregation_from_mapping(
            {
                "windows": ["1 minute"],
                "lateness": 3,
                "metrics": [{"name": "x", "aggregate": "count"}],
            }
        )
    text = str(caught.value)
    assert "aggregation.windows[0] must be seconds or a duration" in text
    assert "aggregation.lateness is not a known setting" in text
    assert "aggregation.metrics[0].event_types is required" in text
    with pytest.raises(
        AggregationConfigError, match=r"release\.noise\.sigma is not a known setting"
    ):
        release_from_mapping({"noise": {"sigma": 2}})
