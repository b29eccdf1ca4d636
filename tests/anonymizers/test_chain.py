# ruff: noqa: E501  (long literal tables of test data)
"""The whole chain: drop reasons, output shape, and no identifier leaks (hypothesis)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import schemas
from anonymizers import reasons
from anonymizers.chain import Pipeline
from anonymizers.consent import ConsentState
from anonymizers.fields import pseudonymized_event_schema
from anonymizers.keys import GeneratedKeyProvider
from anonymizers.outcome import Anonymized, Dropped
from anonymizers.policy import default_policy
from tests.anonymizers.conftest import EPOCH_MAY_1, build_mmdb, static_keys, unkeyed_hashes

UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
BASE = {"event_id": "e-1", "event_type": "page_view", "occurred_at": "2024-05-01T10:00:00Z"}


def test_full_event(make_pipeline: Callable[..., Pipeline]) -> None:
    """A rich event becomes the documented flat output, nothing else."""
    event = {
        **BASE,
        "occurred_at": "2024-05-01T12:34:56.789+02:00",
        "user_id": "alice-1234",
        "ip": "81.2.69.160",
        "user_agent": UA,
        "browser_language": "en-GB,en;q=0.8",
        "page_url": "https://shop.example/p/1?utm_source=nl&sid=9#x",
        "referrer_url": "https://www.google.com/?q=a",
        "time_on_page_ms": 4_000_000,
        "mac": "00:1a:2b:3c:4d:5e",
        "imei": "490154203237518",
        "ad_id": "38400000-8cf0-11bd-b23e-10b96e40000d",
        "secret_field": "leak",
    }
    result = make_pipeline()(event)
    assert isinstance(result, Anonymized)
    out = result.event
    assert out["occurred_at"] == "2024-05-01T10:34:56Z"
    assert out["epoch"] == EPOCH_MAY_1 == result.epoch
    assert out["subject"] == result.subject and len(result.subject) == 22
    assert (out["country"], out["region"]) == ("GB", "ENG") and "city" not in out
    assert out["page_url"] == "https://shop.example/p/1?utm_source=nl"
    assert (out["referrer_host"], out["referrer_internal"]) == ("www.google.com", False)
    assert (out["browser"], out["browser_major"], out["os"], out["hardware"], out["language"]) == (
        "Chrome",
        120,
        "Windows",
        "desktop",
        "en",
    )
    assert out["time_on_page_ms"] == 1_800_000
    assert set(out) <= set(default_policy().output.fields)


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        pytest.param(
            {**BASE, "user_id": "u", "occurred_at": "2031-01-01T00:00:00Z"},
            reasons.NO_KEY,
            id="no-key",
        ),
        pytest.param({**BASE}, reasons.NO_SUBJECT, id="no-subject"),
        pytest.param({**BASE, "ip": "010.1.1.1"}, reasons.NO_SUBJECT, id="malformed-ip-no-subject"),
        pytest.param(
            {**BASE, "user_id": "u", "occurred_at": "2024-05-01T10:00:00"},
            reasons.INVALID_EVENT,
            id="naive-time",
        ),
        pytest.param(
            {**BASE, "user_id": "u", "occurred_at": None}, reasons.INVALID_EVENT, id="None-time"
        ),
        pytest.param(
            {**BASE, "user_id": "u", "occurred_at": "soon"},
            reasons.INVALID_EVENT,
            id="garbage-time",
        ),
        pytest.param(
            {**BASE, "user_id": "u", "event_type": "purchase"},
            reasons.INVALID_EVENT,
            id="unknown-type",
        ),
        pytest.param(
            {**BASE, "user_id": "u", "age_under_16": True}, reasons.UNDER_16, id="under-16"
        ),
        pytest.param({**BASE, "user_id": "u", "gpc": True}, reasons.GPC, id="gpc"),
        pytest.param({**BASE, "user_id": "opted"}, reasons.OPTED_OUT, id="opted-out"),
    ],
)
def test_drop_reasons(
    make_pipeline: Callable[..., Pipeline], event: dict[str, Any], reason: str
) -> None:
    """Events that cannot be anonymized safely are dropped with their reason."""
    state = ConsentState()
    state.apply({"subject_type": "user_id", "subject_id": "opted", "action": "opt_out"})
    assert make_pipeline(consent=state)(event) == Dropped(reason)


def test_pseudonyms_change_with_epoch(make_pipeline: Callable[..., Pipeline]) -> None:
    """The same user on two days (two epochs, two keys) gets two unrelated subjects."""
    pipeline = make_pipeline()
    day1 = pipeline({**BASE, "user_id": "alice"})
    day2 = pipeline({**BASE, "user_id": "alice", "occurred_at": "2024-05-02T10:00:00Z"})
    same_day = pipeline({**BASE, "user_id": "alice", "occurred_at": "2024-05-01T23:59:59Z"})
    assert (
        isinstance(day1, Anonymized)
        and isinstance(day2, Anonymized)
        and isinstance(same_day, Anonymized)
    )
    assert day1.subject == same_day.subject != day2.subject
    assert (day1.epoch, day2.epoch) == (EPOCH_MAY_1, EPOCH_MAY_1 + 1)


def test_visitor_id_computed_from_ip_before_drop(make_pipeline: Callable[..., Pipeline]) -> None:
    """Without identifiers, the same IP+UA is one visitor; another IP is another."""
    pipeline = make_pipeline()
    a = pipeline({**BASE, "ip": "81.2.69.160", "user_agent": UA})
    b = pipeline({**BASE, "ip": " ::ffff:81.2.69.160 ", "user_agent": UA})
    c = pipeline({**BASE, "ip": "81.2.69.161", "user_agent": UA})
    assert isinstance(a, Anonymized) and isinstance(b, Anonymized) and isinstance(c, Anonymized)
    assert a.subject == b.subject != c.subject
    assert "ip" not in a.event and "ip_prefix" not in a.event


def test_rotation_mismatch_refused() -> None:
    """A key provider whose rotation differs from the policy's cannot build a pipeline."""
    with pytest.raises(ValueError):
        Pipeline.from_policy(
            default_policy(), keys=GeneratedKeyProvider(rotation_seconds=3600), geo=None
        )


def test_committed_output_schema_is_generated_from_the_catalogue() -> None:
    """schemas/pseudonymized-event.v1.json is exactly what anonymizers.fields generates."""
    assert schemas.load(schemas.PSEUDONYMIZED_EVENT_V1) == pseudonymized_event_schema()


def test_outputs_follow_wire_schema(make_pipeline: Callable[..., Pipeline]) -> None:
    """Every output field is declared in schemas/pseudonymized-event.v1.json with its type."""
    schema = schemas.load(schemas.PSEUDONYMIZED_EVENT_V1)
    result = make_pipeline()(
        {
            **BASE,
            "user_id": "u",
            "ip": "81.2.69.160",
            "user_agent": UA,
            "page_url": "https://a.example/",
            "referrer_url": "https://b.example/",
            "search_terms": "x",
            "time_on_page_ms": 5,
            "browser_language": "fr",
        }
    )
    assert isinstance(result, Anonymized)
    assert set(schema["required"]) <= set(result.event) <= set(schema["properties"])
    python_types = {"string": str, "integer": int, "boolean": bool}
    for name, value in result.event.items():
        declared = schema["properties"][name]
        if "type" in declared:
            assert isinstance(value, python_types[declared["type"]]), name
        else:
            assert value in declared["enum"], name


# ------------------------------------------------------------------ hypothesis: no leaks

_ID = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=10, max_size=30).filter(
    lambda s: any(c.isdigit() for c in s) and any(c.isalpha() for c in s)
)
_IPV4 = st.ip_addresses(v=4).map(str)


def _pipeline_for_property() -> Pipeline:
    import tempfile
    from pathlib import Path

    from anonymizers.geo import GeoLookup

    db = build_mmdb(Path(tempfile.mkdtemp()) / "p.mmdb")
    return Pipeline.from_policy(default_policy(), keys=static_keys(), geo=GeoLookup(str(db)))


_PIPELINE = _pipeline_for_property()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ids=st.fixed_dictionaries(
        {n: _ID for n in ("user_id", "cookie_id", "device_id", "ad_id", "mac", "imei")}
    ),
    present=st.sets(st.sampled_from(["user_id", "cookie_id", "device_id", "ad_id", "mac", "imei"])),
    ip=st.one_of(_IPV4, st.ip_addresses(v=6).map(str)),
    email=st.emails(),
    where=st.sampled_from(["path", "query", "search", "referrer"]),
)
def test_no_output_contains_an_input_identifier(
    ids: dict[str, str], present: set[str], ip: str, email: str, where: str
) -> None:
    """No output field holds an input identifier, IP or e-mail, nor their MD5/SHA-1/SHA-256."""
    event: dict[str, Any] = {**BASE, "ip": ip, "user_agent": UA}
    for name in present:
        event[name] = ids[name]
    secrets = [ids[n] for n in present] + [ip, email]
    # An identifier of this event echoed into free text (nothing to echo without one).
    echo = ids[sorted(present)[0]] if present else "plain-words"
    if where == "path":
        event["page_url"] = f"https://shop.example/u/{echo}/{email}/x"
    elif where == "query":
        event["page_url"] = f"https://shop.example/?utm_source={email}&uid={echo}&ip={ip}"
    elif where == "search":
        event["search_terms"] = f"{echo} {email} {ip}"
        event["event_type"] = "search"
    else:
        event["referrer_url"] = f"https://ref.example/{echo}?e={email}"
    result = _PIPELINE(event)
    assert isinstance(result, Anonymized)
    text = orjson.dumps(result.event).decode()
    lowered = text.casefold()
    for value in secrets:
        assert value.casefold() not in lowered, value
        for digest in unkeyed_hashes(value):
            assert digest not in text


def test_no_output_contains_identifier_json_escaped(make_pipeline: Callable[..., Pipeline]) -> None:
    """A unicode identifier is not in the output, raw or JSON-escaped."""
    uid = "ülrich-élève-2024"
    result = make_pipeline()(
        {**BASE, "user_id": uid, "search_terms": f"find {uid}", "event_type": "search"}
    )
    assert isinstance(result, Anonymized)
    assert uid not in json.dumps(result.event, ensure_ascii=False)
    assert json.dumps(uid)[1:-1] not in json.dumps(result.event)


TIME_CASES = [
    pytest.param("2024-05-01T10:00:05Z", "2024-05-01T10:00:05Z", id="utc"),
    pytest.param("2024-05-01T10:00:05.999Z", "2024-05-01T10:00:05Z", id="fraction-truncated"),
    pytest.param("2024-05-01T12:00:05+02:00", "2024-05-01T10:00:05Z", id="offset"),
    pytest.param("2024-05-01T05:30:05-04:30", "2024-05-01T10:00:05Z", id="negative-offset"),
    pytest.param("2024-05-01t10:00:05z", "2024-05-01T10:00:05Z", id="lower-case"),
    pytest.param("2024-05-01T10:00:60Z", None, id="second-60"),
    pytest.param("2024-05-01T10:00:5xZ", None, id="garbage-seconds"),
    pytest.param("2024-05-01T10:00:05.Z", None, id="empty-fraction"),
    pytest.param("2024-05-01T10:00:05", None, id="no-zone"),
    pytest.param("", None, id="empty"),
]


@pytest.mark.parametrize(("raw", "expected"), TIME_CASES)
def test_occurred_at_normalised_to_utc(
    make_pipeline: Callable[..., Pipeline], raw: str, expected: str | None
) -> None:
    """occurred_at becomes UTC RFC 3339 to the second; bad times drop the event (fast path too)."""
    pipeline = make_pipeline()
    for _ in range(2):  # the second pass goes through the per-minute fast path
        warm = pipeline({**BASE, "user_id": "u", "occurred_at": "2024-05-01T10:00:00Z"})
        assert isinstance(warm, Anonymized)
        result = pipeline({**BASE, "user_id": "u", "occurred_at": raw})
        if expected is None:
            assert result == Dropped(reasons.INVALID_EVENT)
        else:
            assert isinstance(result, Anonymized) and result.event["occurred_at"] == expected
