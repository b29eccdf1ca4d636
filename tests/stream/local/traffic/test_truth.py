"""Truth accounting on hand-built messages (expected counts worked out by hand)."""

from __future__ import annotations

from typing import Any

import orjson

from stream.local.traffic import Item, Message
from stream.local.traffic.truth import Truth


def _event(event_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "event_type": "page_view",
        "occurred_at": f"2025-03-01T09:00:0{event_id}.000Z",
        **fields,
    }


def _raw(*documents: dict[str, Any], reasons: tuple[str, ...] = ()) -> Message:
    items = [Item(d, orjson.dumps(d)) for d in documents]
    items += [Item(None, b"42", reason) for reason in reasons]
    return Message("raw", None, b"[" + b",".join(i.data for i in items) + b"]", tuple(items))


def _consent(record: dict[str, Any]) -> Message:
    value = orjson.dumps(record)
    return Message(
        "consent",
        f"{record['subject_type']}:{record['subject_id']}".encode(),
        value,
        (Item(record, value),),
    )


def test_counts_without_visit_numbers() -> None:
    """Items built by hand (no visit, person or country) are counted one by one; the state
    of a cookie changes with each record (opt-out, advertising-only opt-out, erase)."""
    truth = Truth(keep_log=True)
    truth.add(_raw(_event("1", cookie_id="c1", gpc=True), _event("2"), reasons=("not_object",)))
    truth.add(_consent({"subject_type": "cookie_id", "subject_id": "c1", "action": "opt_out"}))
    truth.add(_raw(_event("3", cookie_id="c1"), _event("4", user_id="u", cookie_id="c1")))
    truth.add(
        _consent(
            {
                "subject_type": "cookie_id",
                "subject_id": "c1",
                "action": "opt_out",
                "purposes": ["advertising"],
            }
        )
    )
    truth.add(_raw(_event("5", cookie_id="c1")))
    truth.add(_consent({"subject_type": "user_id", "subject_id": "u", "action": "erase"}))
    truth.add(_raw(_event("6", user_id="u", consent={"analytics": False}), _event("7", mac="m")))
    summary = truth.summary()
    assert summary["messages"] == {"raw": 4, "consent": 3}
    assert summary["items"] == 8 and summary["events"] == 7
    assert summary["malformed_by_reason"]["not_object"] == 1
    assert summary["events_after_consent_record"] == {"child": 0, "erase": 1, "opt_out": 2}
    assert summary["events_without_identifiers"] == 1  # event 2 (event 7 has a MAC)
    assert summary["events_with_gpc"] == 1
    assert summary["events_consent_analytics_false"] == 1
    assert summary["distinct_subjects"] == 2  # cookie_id:c1, user_id:u
    assert summary["consent_records_by_action"] == {
        "opt_out": 2,
        "opt_in": 0,
        "erase": 1,
        "child": 0,
    }
    assert summary["batches"]["array_sizes"] == {"1": 1, "2": 2, "3": 1}
    assert [entry["seq"] for entry in summary["log"]] == list(range(7))
    assert truth.summary()["events"] == 7  # summarising twice changes nothing
