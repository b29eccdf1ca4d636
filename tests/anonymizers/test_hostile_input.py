"""Hostile input through the real decode -> validate -> chain path: every item ends in exactly
one outcome, no unit raises on validated data, and an exception one event causes never costs
the other events of its batch."""

from __future__ import annotations

import logging
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas
from anonymizers import reasons
from anonymizers.chain import Pipeline
from anonymizers.exceptions import GeoDatabaseError
from anonymizers.fields import IDENTIFIER_FIELDS, OUTPUT_FIELDS
from anonymizers.geo import GeoLookup
from anonymizers.intake import REASONS, SCHEMA_VIOLATION, TIME_RULE, decode_message, first_violation
from anonymizers.keys import GeneratedKeyProvider
from anonymizers.outcome import Anonymized, Draft, Dropped
from anonymizers.policy import Policy, default_policy, parse_policy
from tests.anonymizers.conftest import build_mmdb, static_keys
from tests.support.hostile import (
    FIELD_VALUES,
    RAW_PROPERTIES,
    edge_times,
    hostile_messages,
    json_values,
    local_time,
    rfc3339,
    utc_in_range,
)

MAX_BYTES = 256 * 1024
ROTATION = 86_400
GOOD: dict[str, Any] = {
    "event_id": "e-1",
    "event_type": "page_view",
    "occurred_at": "2024-05-01T10:00:00Z",
    "user_id": "alice-1234",
    "ip": "81.2.69.160",
}


def everything_policy() -> Policy:
    """The default policy with every output field, city granularity, a kept prefix and every
    identifier pseudonymized: every unit of the chain runs and writes."""
    document = default_policy().model_dump(mode="json")
    document["output"]["fields"] = list(OUTPUT_FIELDS)
    document["geo"].update(granularity="city", keep_ip_prefix=True)
    document["identifiers"].update({name: "pseudonymize" for name in IDENTIFIER_FIELDS})
    return parse_policy(document)


def everything_pipeline() -> Pipeline:
    """A chain of every unit, keys for any epoch (as preview has), on the fixture database."""
    database = build_mmdb(Path(tempfile.mkdtemp()) / "hostile.mmdb")
    return Pipeline.from_policy(
        everything_policy(),
        keys=GeneratedKeyProvider(rotation_seconds=ROTATION),
        geo=GeoLookup(str(database)),
    )


PIPELINE = everything_pipeline()


def check_outcomes(values: list[bytes]) -> list[Any]:
    """Decode, validate and run each message through PIPELINE; assert the invariants every
    input must keep; return the outcomes."""
    outcomes: list[Any] = []
    for value in values:
        decoded = decode_message(value, max_bytes=MAX_BYTES)
        assert all(item.reason in REASONS for item in decoded.invalid)
        result = PIPELINE.process_batch(decoded.events)
        assert len(result) == len(decoded.events), "one outcome per valid event"
        outcomes.extend(result)
    for outcome in outcomes:
        if isinstance(outcome, Dropped):
            assert outcome.reason in reasons.ALL
            assert outcome.reason != reasons.UNPROCESSABLE, dict(PIPELINE.failures)
        else:
            assert isinstance(outcome, Anonymized)
            violation = first_violation(outcome.event, schema_name=schemas.PSEUDONYMIZED_EVENT_V1)
            assert violation is None, violation
    assert not PIPELINE.failures, "no unit raised"
    return outcomes


@settings(max_examples=400)
@given(message=hostile_messages())
def test_every_item_of_any_message_has_exactly_one_outcome(message: Any) -> None:
    """Any raw message (one event, a batch mixing events and non-objects, junk) counts for
    the items it holds, each dead-lettered with a reason or given one outcome, never an
    exception; every anonymized event follows the output schema."""
    decoded = decode_message(message.value, max_bytes=MAX_BYTES)
    assert decoded.consumed == message.items
    check_outcomes([message.value])


@pytest.mark.parametrize("field", sorted(RAW_PROPERTIES))
@settings(max_examples=60)
@given(data=st.data())
def test_each_field_hostile_value_never_raises(field: str, data: st.DataObject) -> None:
    """A good event with one field set to an extreme, malformed or wrongly typed value is
    dead-lettered, dropped with a reason or anonymized, never raises, and never becomes
    `unprocessable`."""
    value = data.draw(st.one_of(FIELD_VALUES[field], json_values), label=field)
    check_outcomes([orjson.dumps({**GOOD, field: value})])


def expected_utc(text: str) -> tuple[str, int]:
    """(UTC text to the second, epoch) of an in-range RFC 3339 `text`, from its own fields."""
    local, offset = local_time(text)
    utc = local - timedelta(minutes=offset)
    seconds = (utc - datetime(1970, 1, 1)) // timedelta(seconds=1)
    text_utc = (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}"
        f"T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}Z"
    )
    return text_utc, seconds // ROTATION


@settings(max_examples=400)
@given(occurred_at=st.one_of(rfc3339(), st.sampled_from(edge_times())))
def test_any_zoned_time_is_anonymized_or_refused_by_its_utc_range(occurred_at: str) -> None:
    """An RFC 3339 time from year 0001 to 9999 with any offset: when its UTC instant is in
    years 0001-9999 it is anonymized to that UTC second (four-digit year) and its epoch,
    else validation dead-letters it with the range rule; the chain never raises."""
    decoded = decode_message(
        orjson.dumps({**GOOD, "occurred_at": occurred_at}), max_bytes=MAX_BYTES
    )
    if not utc_in_range(occurred_at):
        (invalid,) = decoded.invalid
        assert (invalid.reason, invalid.path, invalid.rule) == (
            SCHEMA_VIOLATION,
            "$.occurred_at",
            TIME_RULE,
        )
        return
    (outcome,) = check_outcomes([orjson.dumps({**GOOD, "occurred_at": occurred_at})])
    assert isinstance(outcome, Anonymized)
    text, epoch = expected_utc(occurred_at)
    assert (outcome.event["occurred_at"], outcome.event["epoch"]) == (text, epoch)


@pytest.mark.parametrize("occurred_at", edge_times())
def test_chain_alone_never_raises_on_edge_times(occurred_at: str) -> None:
    """Called without validation (as a caller that skips it would), the chain drops an event
    whose UTC instant is out of range as `invalid_event` and anonymizes the others."""
    outcome = PIPELINE({**GOOD, "occurred_at": occurred_at})
    if utc_in_range(occurred_at):
        assert isinstance(outcome, Anonymized)
    else:
        assert outcome == Dropped(reasons.INVALID_EVENT)
    assert not PIPELINE.failures


class Exploding:
    """A unit that raises on the event whose id it was given, quoting the event's user id
    in its message, as a careless defect could."""

    def __init__(self, event_id: str, error: type[Exception] = ZeroDivisionError) -> None:
        self.event_id = event_id
        self.error = error

    def __call__(self, event: dict[str, Any], out: Draft) -> str | None:
        if event.get("event_id") == self.event_id:
            raise self.error(f"cannot handle {event.get('user_id')}")
        return None


def with_unit(pipeline: Pipeline, unit: Any) -> Pipeline:
    """`pipeline` with `unit` inserted after its event-time unit."""
    pipeline.units = (*pipeline.units[:2], unit, *pipeline.units[2:])
    return pipeline


def batch() -> list[dict[str, Any]]:
    """Three events of different people; the middle one is the one to explode."""
    return [
        {**GOOD, "event_id": f"e-{i}", "user_id": f"person-{i}-secret", "ip": f"81.2.69.{i}"}
        for i in range(3)
    ]


def fixed_pipeline() -> Pipeline:
    """A chain of every unit under one fixed key per epoch, so two pipelines agree."""
    database = build_mmdb(Path(tempfile.mkdtemp()) / "fixed.mmdb")
    return Pipeline.from_policy(
        everything_policy(), keys=static_keys(rotation=ROTATION), geo=GeoLookup(str(database))
    )


def test_exception_of_one_event_drops_it_alone(caplog: pytest.LogCaptureFixture) -> None:
    """A unit raising on the middle event of a batch drops that event as `unprocessable`; the
    others get exactly the outcomes they get without it; the log names the unit and the
    exception type, never the event's values or the exception's message."""
    events = batch()
    expected = fixed_pipeline().process_batch([events[0], events[2]])
    pipeline = with_unit(fixed_pipeline(), Exploding("e-1"))
    with caplog.at_level(logging.DEBUG, logger="anonymizers.chain"):
        outcomes = pipeline.process_batch(events)
    assert outcomes == [expected[0], Dropped(reasons.UNPROCESSABLE), expected[1]]
    assert dict(pipeline.failures) == {("Exploding", "ZeroDivisionError"): 1}
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    assert "Exploding" in record.getMessage() and "ZeroDivisionError" in record.getMessage()
    for value in events[1].values():
        assert str(value) not in caplog.text
    assert "cannot handle" not in caplog.text


def test_repeated_failures_counted_and_logged_once_at_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The same defect on 50 events drops the 50, counts 50, and logs one ERROR line (the
    repeats at DEBUG): a hostile sender cannot flood the log."""
    pipeline = with_unit(fixed_pipeline(), Exploding("e-1"))
    with caplog.at_level(logging.DEBUG, logger="anonymizers.chain"):
        for _ in range(50):
            pipeline.process_batch(batch())
    assert pipeline.failures[("Exploding", "ZeroDivisionError")] == 50
    levels = [record.levelno for record in caplog.records]
    assert levels.count(logging.ERROR) == 1 and levels.count(logging.DEBUG) == 49


def test_infrastructure_errors_propagate() -> None:
    """An unreadable geolocation database is not the event's doing: it propagates, so that
    the orchestrator restarts the worker."""
    pipeline = with_unit(fixed_pipeline(), Exploding("e-1", GeoDatabaseError))
    with pytest.raises(GeoDatabaseError):
        pipeline.process_batch(batch())
