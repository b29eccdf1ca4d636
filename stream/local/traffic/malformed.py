"""Malformed input of every dead-letter reason, made from a generated event.

Reasons are those of `schemas/deadletter-record.v1.json`, as `anonymizers.intake` assigns
them. `not_utf8`, `not_json`, `too_large` and the empty batch `[]` are whole messages
(`standalone`); schema violations and non-object scalars also occur inside otherwise valid
batches. No malformed item contains a line break, so each is one line of a `.jsonl` file and
decodes there to the same reason as in its Kafka message.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import orjson

from stream.local.traffic.randomness import Draws, Weighted

NOT_UTF8 = "not_utf8"
NOT_JSON = "not_json"
NOT_OBJECT = "not_object"
TOO_LARGE = "too_large"
SCHEMA_VIOLATION = "schema_violation"
REASONS = (NOT_UTF8, NOT_JSON, NOT_OBJECT, TOO_LARGE, SCHEMA_VIOLATION)

# Relative frequency of each reason among malformed items; too_large is rare because each
# one is bigger than the largest accepted message (256 KiB by default).
REASON_MIX: Weighted[str] = Weighted(
    [
        (SCHEMA_VIOLATION, 0.45),
        (NOT_JSON, 0.18),
        (NOT_UTF8, 0.17),
        (NOT_OBJECT, 0.15),
        (TOO_LARGE, 0.05),
    ]
)

ACCENTED = (
    "bague gravée",
    "boucles d'oreilles dorées",
    "collier fête des mères",
    "chevalière homme",
    "bracelet très fin",
    "créoles à l'unité",
)
SCALARS: tuple[Any, ...] = (42, "page_view", None, True, "[object Object]", 0, "")
HTML_ERROR = (
    b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad "
    b"Gateway</h1></center><hr><center>nginx</center></body></html>"
)
FILLER = b"<div class=produit><img src=/media/catalogue/bague-or.jpg alt=bague width=640></div>"

_DELETE = object()
Mutation = Callable[[Any], Any]


def _const(value: Any) -> Mutation:
    return lambda _old: value


def _epoch_ms(stamp: str) -> int:
    return int(datetime.fromisoformat(stamp).timestamp() * 1000)


# (field, new value from the old one or _DELETE, JSON path anonymizers.intake reports)
VIOLATIONS: tuple[tuple[str, Mutation, str], ...] = (
    ("event_id", _const(_DELETE), "$"),
    ("event_type", _const(_DELETE), "$"),
    ("occurred_at", _const(_DELETE), "$"),
    ("event_type", _const("pageview"), "$.event_type"),
    ("event_type", _const("PAGE_VIEW"), "$.event_type"),
    ("event_type", _const("click"), "$.event_type"),
    ("occurred_at", lambda s: s[:-1], "$.occurred_at"),  # no zone
    ("occurred_at", lambda s: s[:-1].replace("T", " "), "$.occurred_at"),
    ("occurred_at", lambda s: f"{s[8:10]}/{s[5:7]}/{s[0:4]} {s[11:16]}", "$.occurred_at"),
    ("occurred_at", _epoch_ms, "$.occurred_at"),  # a number, not a string
    ("occurred_at", lambda s: s[:5] + "02-30" + s[10:], "$.occurred_at"),  # no such day
    ("occurred_at", lambda s: s[:11] + "25" + s[13:], "$.occurred_at"),  # no such hour
    ("gpc", _const("true"), "$.gpc"),
    ("dnt", _const(1), "$.dnt"),  # the DNT header's value, unconverted
    ("age_under_16", _const("false"), "$.age_under_16"),
    ("time_on_page_ms", _const("5230"), "$.time_on_page_ms"),
    ("time_on_page_ms", _const(-120), "$.time_on_page_ms"),
    ("consent", _const({"analytics": "yes"}), "$.consent.analytics"),
    ("consent", _const("granted"), "$.consent"),
    ("event_id", _const(123456), "$.event_id"),
    ("event_id", _const(""), "$.event_id"),
    ("cookie_id", _const(""), "$.cookie_id"),
    ("search_terms", _const("bague or " * 300), "$.search_terms"),  # > 2048 chars
    ("ip", _const(3232235777), "$.ip"),
    ("user_agent", _const(None), "$.user_agent"),
)


@dataclass(frozen=True, slots=True)
class Malformed:
    """One malformed item: its reason and bytes, and where it may travel."""

    reason: str
    data: bytes
    document: dict[str, Any] | None  # the (invalid) object, when it is one
    path: str | None  # JSON path of a planted schema violation
    standalone: bool  # True: must be a Kafka message of its own, never inside a batch


def make_malformed(
    reason: str, event: dict[str, Any], draws: Draws, *, max_message_bytes: int
) -> Malformed:
    """A malformed item of `reason` derived from the valid `event` (not modified)."""
    if reason == SCHEMA_VIOLATION:
        return _schema_violation(event, draws)
    if reason == NOT_OBJECT:
        return _not_object(draws)
    if reason == NOT_JSON:
        return Malformed(NOT_JSON, _not_json(event, draws), None, None, True)
    if reason == NOT_UTF8:
        return Malformed(NOT_UTF8, _not_utf8(event, draws), None, None, True)
    if reason == TOO_LARGE:
        return Malformed(TOO_LARGE, _too_large(event, draws, max_message_bytes), None, None, True)
    raise ValueError(f"reason must be one of {', '.join(REASONS)}; got {reason!r}")


def _schema_violation(event: dict[str, Any], draws: Draws) -> Malformed:
    field, mutate, path = draws.pick(VIOLATIONS)
    broken = dict(event)
    value = mutate(broken.get(field))
    if value is _DELETE:
        del broken[field]
    else:
        broken[field] = value
    return Malformed(SCHEMA_VIOLATION, orjson.dumps(broken), broken, path, False)


def _not_object(draws: Draws) -> Malformed:
    if draws.chance(0.2):
        return Malformed(NOT_OBJECT, b"[]", None, None, True)  # an empty batch
    return Malformed(NOT_OBJECT, orjson.dumps(draws.pick(SCALARS)), None, None, False)


def _not_json(event: dict[str, Any], draws: Draws) -> bytes:
    text = orjson.dumps(event).decode()
    variant = draws.below(6)
    if variant == 0:  # cut off in transit
        return text[: draws.between(1, len(text) - 2)].encode()
    if variant == 1:  # Python repr instead of JSON
        return repr(event).encode()
    if variant == 2:  # form-encoded body
        return urlencode({k: v for k, v in event.items() if isinstance(v, str)}).encode()
    if variant == 3:
        return HTML_ERROR
    if variant == 4:  # JavaScript NaN
        return (text[:-1] + ',"scroll_depth":NaN}').encode()
    return f"{text} {text}".encode()  # two objects, no array


def _not_utf8(event: dict[str, Any], draws: Draws) -> bytes:
    accented = dict(event, search_terms=draws.pick(ACCENTED))
    text = orjson.dumps(accented).decode()
    variant = draws.below(4)
    if variant == 0:  # Latin-1 instead of UTF-8
        return text.encode("latin-1", errors="replace")
    if variant == 1:  # UTF-16 with byte-order mark
        return b"\xff\xfe" + text.encode("utf-16-le")
    if variant == 2:  # cut inside a multi-byte character
        data = text.encode()
        cut = next(i for i, byte in enumerate(data) if byte >= 0xC0) + 1
        return data[:cut]
    compressed = gzip.compress(text.encode(), mtime=0)  # gzip body without Content-Encoding
    if b"\n" in compressed or b"\r" in compressed:
        return text.encode("latin-1", errors="replace")
    return compressed


def _too_large(event: dict[str, Any], draws: Draws, max_message_bytes: int) -> bytes:
    target = max_message_bytes + 1 + draws.below(4096)
    head = orjson.dumps(event)[:-1] + b',"dom_snapshot":"'
    room = target - len(head) - 2
    filler = (FILLER * (room // len(FILLER) + 1))[:room]
    return head + filler + b'"}'
