"""Decode a raw Kafka message into events and validate each against the raw event schema.

A message value is one event object or a JSON array of them (collectors batch). Every
problem becomes an `Invalid` with a machine-readable reason from the dead-letter schema;
one bad event in a batch never loses the others. Details name JSON paths and schema rules,
never input values.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Final

import jsonschema_rs
import orjson

import schemas
from anonymizers.event_time import TIME_RANGE, EventTime, in_time_range, zoned_time

NOT_UTF8 = "not_utf8"
NOT_JSON = "not_json"
NOT_OBJECT = "not_object"
TOO_LARGE = "too_large"
SCHEMA_VIOLATION = "schema_violation"
REASONS = (NOT_UTF8, NOT_JSON, NOT_OBJECT, TOO_LARGE, SCHEMA_VIOLATION)


@dataclass(frozen=True, slots=True)
class SchemaViolation:
    """The first rule an event breaks: JSON path (`$.consent.analytics`), rule (`type boolean`)."""

    path: str
    rule: str
    reason: str = SCHEMA_VIOLATION

    @property
    def detail(self) -> str:
        return f"{self.path}: {self.rule}"


@dataclass(frozen=True, slots=True)
class Invalid:
    """One dead-letter-worthy item: a whole message (`index` None) or one event of a batch."""

    reason: str
    detail: str
    original: bytes
    index: int | None = None
    path: str | None = None
    rule: str | None = None


@dataclass(slots=True)
class Decoded:
    """What one message held: its valid events in order, and its invalid items."""

    events: list[dict[str, Any]] = field(default_factory=list)
    invalid: list[Invalid] = field(default_factory=list)
    batched: bool = False

    @property
    def consumed(self) -> int:
        """Events this message counts for: valid + invalid items."""
        return len(self.events) + len(self.invalid)


@functools.cache
def schema_validator(name: str) -> Any:
    """The (cached) jsonschema-rs validator of the schema `name`, formats checked."""
    return jsonschema_rs.validator_for(schemas.load(name), validate_formats=True)


def first_violation(instance: object, *, schema_name: str) -> SchemaViolation | None:
    """The first rule (by JSON path) `instance` breaks in schema `schema_name`, or None."""
    validator = schema_validator(schema_name)
    if validator.is_valid(instance):
        return None
    errors = sorted(
        validator.iter_errors(instance),
        key=lambda e: (list(map(str, e.instance_path)), list(map(str, e.schema_path))),
    )
    return _describe(errors[0], schema_name)


TIME_RULE = f"range {TIME_RANGE} (UTC)"
"""The rule an `occurred_at` breaks when the schema's `date-time` accepts it but its UTC
instant is outside what RFC 3339 (and so the chain) can write: "0001-01-01T00:00:00+01:00"."""


_TIMES: Final = EventTime(rotation_seconds=60)
"""The chain's event-time reader (`anonymizers.event_time`): its day is "" exactly when the
time is unusable, and a time in a minute it has validated is read without parsing. Only
which times are usable is kept (minutes, bounded): no event data."""


def validate_event(event: object) -> SchemaViolation | None:
    """Return the first rule `event` breaks (schema, then an `occurred_at` the chain reads:
    RFC 3339 with a zone, its UTC instant in `anonymizers.event_time.TIME_RANGE`), or None."""
    violation = first_violation(event, schema_name=schemas.RAW_EVENT_V1)
    if violation is not None:
        return violation
    assert isinstance(event, dict)
    raw = event["occurred_at"]
    if _TIMES.read(raw)[2]:
        return None  # usable: the chain's own reader (a dict look-up for a known minute)
    moment = zoned_time(raw)
    if moment is None:
        return SchemaViolation(path="$.occurred_at", rule="format date-time")
    if in_time_range(moment) is None:
        return SchemaViolation(path="$.occurred_at", rule=TIME_RULE)
    return None


def _describe(error: Any, schema_name: str) -> SchemaViolation:
    path = "$" + "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.instance_path
    )
    keyword_path = list(error.schema_path)
    keyword = str(keyword_path[-1]) if keyword_path else "schema"
    kind = error.kind
    if keyword == "required":
        rule = f"required {kind.property}"
    elif keyword == "format":
        rule = f"format {kind.format}"
    elif keyword == "type":
        rule = "type " + "|".join(str(t) for t in kind.types)
    elif keyword == "enum":
        options = _schema_at(schema_name, keyword_path)
        rule = "enum " + "|".join(str(option) for option in options)
    elif keyword in ("minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems"):
        rule = f"{keyword} {kind.limit}"
    else:
        rule = keyword
    return SchemaViolation(path=path, rule=rule)


def _schema_at(schema_name: str, schema_path: list[Any]) -> Any:
    node: Any = schemas.load(schema_name)
    for part in schema_path:
        node = node[part]
    return node


def decode_message(value: bytes | None, *, max_bytes: int) -> Decoded:
    """Split one raw message into valid events and `Invalid` items (see module doc)."""
    decoded = Decoded()
    if value is None:
        decoded.invalid.append(Invalid(NOT_JSON, "$: empty message (null value)", b""))
        return decoded
    if len(value) > max_bytes:
        decoded.invalid.append(
            Invalid(TOO_LARGE, f"$: {len(value)} bytes > max_message_bytes {max_bytes}", value)
        )
        return decoded
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        # orjson reads UTF-8 only: whether that is why is told apart here, on failure only.
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as utf8:
            detail = f"$: invalid UTF-8 at byte {utf8.start}"
            decoded.invalid.append(Invalid(NOT_UTF8, detail, value))
        else:
            decoded.invalid.append(Invalid(NOT_JSON, f"$: not JSON ({exc.msg})", value))
        return decoded
    if isinstance(document, dict):
        _add(decoded, document, index=None, original=value)
    elif isinstance(document, list):
        decoded.batched = True
        if not document:
            decoded.invalid.append(Invalid(NOT_OBJECT, "$: empty batch", value))
        for index, item in enumerate(document):
            _add(decoded, item, index=index, original=None)
    else:
        decoded.invalid.append(
            Invalid(NOT_OBJECT, f"$: {_json_type(document)} is not an object or array", value)
        )
    return decoded


def _add(decoded: Decoded, item: object, *, index: int | None, original: bytes | None) -> None:
    if not isinstance(item, dict):
        decoded.invalid.append(
            Invalid(
                NOT_OBJECT,
                f"$: {_json_type(item)} is not an object",
                original if original is not None else orjson.dumps(item),
                index=index,
            )
        )
        return
    violation = validate_event(item)
    if violation is None:
        decoded.events.append(item)
        return
    decoded.invalid.append(
        Invalid(
            SCHEMA_VIOLATION,
            violation.detail,
            original if original is not None else orjson.dumps(item),
            index=index,
            path=violation.path,
            rule=violation.rule,
        )
    )


def _json_type(item: object) -> str:
    if item is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array"}.get(
        type(item), type(item).__name__
    )
