"""Recount the ground truth from emitted messages alone, independently of the generator.

Only `anonymizers.intake.decode_message` (the pipeline's own reading of a raw message) and
plain JSON parsing are used; nothing is imported from `stream.local.traffic`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from anonymizers.intake import decode_message
from stream.settings import Settings

MAX_BYTES: int = Settings.model_fields["max_message_bytes"].default
SUBJECT_KINDS = ("user_id", "cookie_id", "device_id", "ad_id")
ID_FIELDS = (*SUBJECT_KINDS, "mac", "imei")


@dataclass
class Recount:
    """Counts over (topic_kind, key, value) triples in send order."""

    raw_messages: int = 0
    consent_messages: int = 0
    items: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    records: list[tuple[bytes | None, dict[str, Any]]] = field(default_factory=list)
    array_sizes: Counter[int] = field(default_factory=Counter)
    single_objects: int = 0
    after: Counter[str] = field(default_factory=Counter)


def recount(
    messages: Iterable[tuple[str, bytes | None, bytes]], *, max_bytes: int = MAX_BYTES
) -> Recount:
    """Replay `messages` as the pipeline would see them."""
    result = Recount()
    latest: dict[str, dict[str, Any]] = {}  # compacted consent topic: latest record per key
    for kind, key, value in messages:
        if kind == "consent":
            result.consent_messages += 1
            record = orjson.loads(value)
            result.records.append((key, record))
            latest[f"{record['subject_type']}:{record['subject_id']}"] = record
            continue
        result.raw_messages += 1
        decoded = decode_message(value, max_bytes=max_bytes)
        result.items += decoded.consumed
        for invalid in decoded.invalid:
            result.reasons[invalid.reason] += 1
        _count_shape(result, value)
        for event in decoded.events:
            result.events.append(event)
            state = _state_of(event, latest)
            if state is not None:
                result.after[state] += 1
    return result


def _count_shape(result: Recount, value: bytes) -> None:
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError:
        return  # not JSON: a message of its own
    if isinstance(document, list):
        result.array_sizes[len(document)] += 1
    elif isinstance(document, dict):
        result.single_objects += 1


def _state_of(event: dict[str, Any], latest: dict[str, dict[str, Any]]) -> str | None:
    """child > erase > opt_out (analytics covered), over the event's subject identifiers."""
    states = set()
    for kind in SUBJECT_KINDS:
        record = latest.get(f"{kind}:{event[kind]}") if kind in event else None
        if record is None:
            continue
        action = record["action"]
        if action in ("child", "erase"):
            states.add(action)
        elif action == "opt_out" and "analytics" in record.get("purposes", ["analytics"]):
            states.add("opt_out")
    for state in ("child", "erase", "opt_out"):
        if state in states:
            return state
    return None


def subject_of(event: dict[str, Any]) -> str | None:
    """`type:id` of the first present subject identifier."""
    for kind in SUBJECT_KINDS:
        if kind in event:
            return f"{kind}:{event[kind]}"
    return None


def has_no_identifier(event: dict[str, Any]) -> bool:
    """True when the event carries none of the identifier fields."""
    return not any(kind in event for kind in ID_FIELDS)
