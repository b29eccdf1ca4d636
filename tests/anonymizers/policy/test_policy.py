# ruff: noqa: E501  (long literal tables of test data)
"""The policy model: defaults, TOML round trip, collected errors, cross checks, schema file."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import schemas
from anonymizers.exceptions import PolicyError
from anonymizers.policy import (
    SECTIONS,
    Policy,
    default_policy,
    duration_seconds,
    load_policy,
    parse_policy,
    policy_json_schema,
    render_default_policy_toml,
)


def test_default_equals_privacy_md_table() -> None:
    """The shipped default matches PRIVACY.md's defaults table, row by row."""
    policy = default_policy()
    assert policy.geo.granularity == "region"
    assert policy.geo.keep_ip_prefix is False
    assert (policy.geo.ipv4_prefix, policy.geo.ipv6_prefix) == (24, 48)
    assert policy.keys.rotation_seconds == 86400
    assert policy.keys.retention_seconds == 48 * 3600
    assert (policy.identifiers.mac, policy.identifiers.imei, policy.identifiers.ad_id) == (
        "drop",
    ) * 3
    assert policy.release.k_min_subjects == 10
    assert policy.release.k_search_terms == 20
    # Release mode dp, a budget of at most 8 per person-day (the privacy docs' table).
    assert policy.release.mode == "dp"
    assert 0 < policy.release.epsilon_per_day <= 8
    assert 0 < policy.release.delta_per_day <= 1e-6
    assert policy.context.time_on_page_max_ms == 30 * 60 * 1000
    assert policy.consent.honour_gpc is True
    assert policy.consent.honour_dnt is False
    assert policy.urls.query_allowlist == ("utm_source", "utm_medium", "utm_campaign")
    assert policy.aggregation.windows == ("1m", "1h", "1d")
    names = {m.name for m in policy.aggregation.metrics}
    assert {
        "page_views",
        "unique_visitors",
        "visitors",
        "searches",
        "time_on_page",
        "referrals",
        "link_clicks",
    } <= names
    searches = next(m for m in policy.aggregation.metrics if m.name == "searches")
    assert searches.sensitive and searches.dimensions == ("search_terms",)


def test_rendered_default_round_trips() -> None:
    """`policy init`'s file parses back to exactly default_policy()."""
    assert parse_policy(tomllib.loads(render_default_policy_toml())) == default_policy()


def _fields(model: type[BaseModel]) -> list[tuple[str, Any]]:
    out = []
    for name, info in model.model_fields.items():
        out.append((f"{model.__name__}.{name}", info))
        nested = info.annotation
        for candidate in (nested, *getattr(nested, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                out.extend(_fields(candidate))
    return out


def test_every_setting_documented_in_rendered_file() -> None:
    """Every setting has a description and an allowed-values phrase, and the file shows them."""
    text = render_default_policy_toml()
    for path, info in _fields(Policy):
        assert info.description, path
        assert isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get(
            "x-allowed"
        ), path
        assert info.description.split()[0] in text, path


def test_committed_schema_matches_model() -> None:
    """schemas/policy.v1.json is exactly what the model exports (regenerate: anonstream policy schema)."""
    committed = schemas.load(schemas.POLICY_V1)
    assert committed == policy_json_schema()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("30m", 1800), ("1h", 3600), ("48h", 172800), ("1d", 86400)],
)
def test_durations(text: str, seconds: int) -> None:
    """Durations are a whole number and a unit."""
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "0m", "1 d", "1.5h", "-1h", "1w", "h", "1H", "01h"])
def test_bad_durations(text: str) -> None:
    """Anything else is refused."""
    with pytest.raises(ValueError):
        duration_seconds(text)


def _issues(mapping: dict[str, Any]) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        parse_policy(mapping)
    return [str(issue) for issue in caught.value.issues]


ERROR_CASES = [
    pytest.param(
        {"release": {"k_min_subjects": 1}},
        "release.k_min_subjects must be an integer >= 2; got 1",
        id="k-too-small",
    ),
    pytest.param(
        {"release": {"k_min_subjects": "10"}},
        'release.k_min_subjects must be an integer >= 2; got "10"',
        id="k-string",
    ),
    pytest.param(
        {"geo": {"granularity": "street"}},
        'geo.granularity must be one of "none", "country", "region", "city"; got "street"',
        id="granularity",
    ),
    pytest.param(
        {"geo": {"ipv4_prefix": 32}},
        "geo.ipv4_prefix must be an integer from 0 to 24; got 32",
        id="prefix-too-long",
    ),
    pytest.param(
        {"geo": {"ipv6_prefix": 64}},
        "geo.ipv6_prefix must be an integer from 0 to 48; got 64",
        id="v6-prefix-too-long",
    ),
    pytest.param(
        {"geo": {"granularty": "city"}},
        "geo.granularty is not a known setting; allowed keys: granularity, keep_ip_prefix, ipv4_prefix, ipv6_prefix",
        id="typo-key",
    ),
    pytest.param(
        {"colour": 1},
        "colour is not a known setting; allowed keys: schema_version",
        id="unknown-section",
    ),
    pytest.param({"schema_version": 2}, "schema_version must be 1; got 2", id="schema-version"),
    pytest.param(
        {"keys": {"rotation": "1 day"}}, "keys.rotation must be a duration", id="duration"
    ),
    pytest.param(
        {"keys": {"rotation": "45d"}},
        'keys.rotation must be a duration such as "30s", "30m", "1h" or "1d" (a positive whole number followed by s, m, h or d) from 1m to 31d; got "45d"',
        id="rotation-range",
    ),
    pytest.param(
        {"keys": {"retention": "12h"}},
        "keys.retention must be at least keys.rotation + aggregation.allowed_lateness (86460s)",
        id="retention-short",
    ),
    pytest.param(
        {"aggregation": {"windows": ["7m"]}},
        "aggregation.windows[0] must be a window that divides keys.rotation",
        id="window-divides",
    ),
    pytest.param(
        {"aggregation": {"windows": ["1m", "1m"]}},
        "aggregation.windows must be a non-empty list of distinct durations",
        id="windows-repeat",
    ),
    pytest.param(
        {"release": {"k_search_terms": 5}},
        "release.k_search_terms must be an integer >= release.k_min_subjects (10); got 5",
        id="search-k",
    ),
    pytest.param(
        {"release": {"epsilon_per_day": 0}},
        "release.epsilon_per_day must be a number > 0 and <= 16; got 0",
        id="epsilon",
    ),
    pytest.param(
        {"output": {"fields": ["event_type", "occurred_at", "epoch"]}},
        "output.fields must be a list that includes event_type, occurred_at, epoch, subject (missing subject)",
        id="required-output",
    ),
    pytest.param(
        {"output": {"fields": ["event_type", "occurred_at", "epoch", "subject", "ip"]}},
        'output.fields[4] must be one of "event_type"',
        id="raw-ip-not-an-output",
    ),
    pytest.param(
        {"output": {"fields": ["event_type", "occurred_at", "epoch", "subject", "mac"]}},
        'output.fields must be a list without mac, since identifiers.mac is "drop"',
        id="dropped-identifier-output",
    ),
    pytest.param(
        {"geo": {"granularity": "country"}},
        'output.fields must be a list without region, since geo.granularity is "country"',
        id="granularity-vs-output",
    ),
    pytest.param(
        {
            "aggregation": {
                "metrics": [{"name": "m", "event_types": ["page_view"], "dimensions": ["city"]}]
            }
        },
        "aggregation.metrics[0].dimensions must be fields that output.fields keeps (not city)",
        id="dimension-not-kept",
    ),
    pytest.param(
        {
            "aggregation": {
                "metrics": [
                    {"name": "m", "event_types": ["search"], "dimensions": ["search_terms"]}
                ]
            }
        },
        "aggregation.metrics[0].sensitive must be true for a metric grouped by search_terms",
        id="search-sensitive",
    ),
    pytest.param(
        {
            "aggregation": {
                "metrics": [{"name": "m", "event_types": ["page_leave"], "aggregate": "summary"}]
            }
        },
        "aggregation.metrics[0].value_field must be set for a summary",
        id="summary-value",
    ),
    pytest.param(
        {"aggregation": {"metrics": [{"name": "m", "event_types": ["click"]}]}},
        'aggregation.metrics[0].event_types[0] must be one of "page_view", "page_leave", "search", "link_click"; got "click"',
        id="event-type",
    ),
    pytest.param(
        {
            "aggregation": {
                "metrics": [{"name": "m", "event_types": ["page_view"], "dimensions": ["subject"]}]
            }
        },
        'aggregation.metrics[0].dimensions[0] must be one of "event_type"',
        id="subject-not-a-dimension",
    ),
    pytest.param(
        {
            "aggregation": {
                "metrics": [
                    {"name": "m", "event_types": ["page_view"]},
                    {"name": "m", "event_types": ["search"]},
                ]
            }
        },
        "aggregation.metrics[1].name must be a name no other metric has",
        id="duplicate-metric",
    ),
]


@pytest.mark.parametrize(("override", "message"), ERROR_CASES)
def test_error_messages(override: dict[str, Any], message: str) -> None:
    """Each mistake is reported as `<path> must be <allowed>; got <value>` (or unknown key)."""
    mapping = {"schema_version": 1, **override}
    if "schema_version" in override:
        mapping["schema_version"] = override["schema_version"]
    issues = _issues(mapping)
    assert any(issue.startswith(message) for issue in issues), issues


def test_summary_with_value_field_passes_cross_checks() -> None:
    """A summary with the value field set is fine, while value_field on a count is not."""
    ok = {
        "name": "t",
        "event_types": ["page_leave"],
        "aggregate": "summary",
        "value_field": "time_on_page_ms",
        "statistics": ["count", "p50"],
    }
    parse_policy(
        {"schema_version": 1, "aggregation": {"metrics": [ok]}, "release": {"mode": "exact"}}
    )
    bad = {"name": "t", "event_types": ["page_view"], "value_field": "time_on_page_ms"}
    assert any(
        "summary only" in i
        for i in _issues({"schema_version": 1, "aggregation": {"metrics": [bad]}})
    )


def test_all_errors_collected_in_one_run() -> None:
    """Mistakes in several sections are all reported together."""
    issues = _issues(
        {
            "schema_version": 1,
            "geo": {"granularity": "street", "ipv4_prefix": 30},
            "identifiers": {"mac": "hash"},
            "release": {"k_min_subjects": 1, "mode": "laplace"},
            "search_terms": {"on_pii": "keep"},
            "nonsense": True,
        }
    )
    assert len(issues) == 7
    for start in (
        "geo.granularity",
        "geo.ipv4_prefix",
        "identifiers.mac",
        "release.k_min_subjects",
        "release.mode",
        "search_terms.on_pii",
    ):
        assert any(i.startswith(start) for i in issues), start


def test_missing_schema_version_reported() -> None:
    """A file without schema_version is refused."""
    assert any(i.startswith("schema_version is required") for i in _issues({}))


def test_load_policy_errors(tmp_path: Path) -> None:
    """Unreadable and non-TOML files raise PolicyError."""
    with pytest.raises(PolicyError):
        load_policy(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("geo = [", encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        load_policy(bad)
    assert "valid TOML" in str(caught.value)


def test_policy_is_frozen() -> None:
    """Nobody can change a validated policy in place."""
    policy = default_policy()
    with pytest.raises(Exception):  # noqa: B017 (pydantic raises ValidationError)
        policy.geo.granularity = "city"  # type: ignore[misc]


def test_sections_cover_issue_list() -> None:
    """The sections the issue lists all exist."""
    assert set(SECTIONS) == {
        "geo",
        "identifiers",
        "keys",
        "urls",
        "search_terms",
        "context",
        "consent",
        "output",
        "aggregation",
        "release",
    }
