"""The anonymize stage's per-message work (`AnonymizeStage.process`, no broker) on hostile
input: it never raises, and consumed = forwarded + dead-lettered + dropped after every
message, whatever it holds."""

from __future__ import annotations

import base64
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas
from anonymizers import reasons
from anonymizers.intake import first_violation
from stream.stages.anonymize import AnonymizeStage
from tests.anonymizers.test_hostile_input import (
    Exploding,
    batch,
    everything_pipeline,
    fixed_pipeline,
    with_unit,
)
from tests.support.hostile import Message, hostile_messages

MAX_BYTES = 256 * 1024
STAGE = AnonymizeStage(pipeline=everything_pipeline(), partitions=4, max_message_bytes=MAX_BYTES)


def totals(stage: AnonymizeStage) -> tuple[int, int, int, int]:
    """(consumed, forwarded, dead-lettered, dropped) of a stage's counters."""
    c = stage.counters
    return c.consumed, c.forwarded, sum(c.deadlettered.values()), sum(c.dropped.values())


@settings(max_examples=300)
@given(messages=st.lists(hostile_messages(), min_size=1, max_size=5))
def test_stage_reconciles_after_every_hostile_message(messages: list[Message]) -> None:
    """Each message adds the items it holds to `consumed`; what it forwards and dead-letters
    is what the stage sends; the counters reconcile after every message."""
    for offset, message in enumerate(messages):
        before = totals(STAGE)
        routed = STAGE.process(message.value, topic="events.raw", partition=0, offset=offset)
        after = totals(STAGE)
        consumed, forwarded, dead, _ = (a - b for a, b in zip(after, before, strict=True))
        assert consumed == message.items
        assert forwarded == sum(len(events) for events in routed.forward.values())
        assert dead == len(routed.deadletter)
        assert STAGE.counters.reconciles()
        for record in routed.deadletter:
            body = orjson.loads(record)
            assert first_violation(body, schema_name=schemas.DEADLETTER_RECORD_V1) is None
            assert base64.b64decode(body["original_b64"]) or message.value == b""
        for _, payload, _ in routed.forward_payloads():
            for event in orjson.loads(payload):
                assert first_violation(event, schema_name=schemas.PSEUDONYMIZED_EVENT_V1) is None
    assert STAGE.counters.dropped[reasons.UNPROCESSABLE] == 0


def test_stage_counts_an_unprocessable_event_and_forwards_the_rest() -> None:
    """A unit raising on one event of a batch message: the stage forwards the two others,
    counts the one as dropped `unprocessable`, and reconciles."""
    stage = AnonymizeStage(
        pipeline=with_unit(fixed_pipeline(), Exploding("e-1")),
        partitions=4,
        max_message_bytes=MAX_BYTES,
    )
    events: list[Any] = batch()
    routed = stage.process(orjson.dumps(events), topic="events.raw", partition=0, offset=0)
    assert sum(len(v) for v in routed.forward.values()) == 2
    assert stage.counters.dropped == {reasons.UNPROCESSABLE: 1}
    assert (stage.counters.consumed, stage.counters.forwarded) == (3, 2)
    assert stage.counters.reconciles()
    assert not routed.deadletter
