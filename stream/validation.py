"""TEMPORARY stand-in for the foundation's `stream/validation.py` (lands on main separately).

Only `validate_event` and `SchemaViolation`, with the same names and shapes as announced, so
that `anonstream preview` can be written and tested before the real module lands. Delete
this file when merging main (the real one replaces it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import schemas

_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "boolean": (bool,),
    "object": (dict,),
    "number": (int, float),
    "integer": (int,),
}


@dataclass(frozen=True, slots=True)
class SchemaViolation:
    """Where (`path`, like "$.occurred_at") and which rule (like "format date-time")."""

    path: str
    rule: str
    reason: str = "schema_violation"


def _check(value: Any, schema: dict[str, Any], path: str) -> SchemaViolation | None:
    kind = schema.get("type")
    if kind is not None:
        allowed = _TYPES[kind]
        if not isinstance(value, allowed) or (kind != "boolean" and isinstance(value, bool)):
            return SchemaViolation(path, f"type {kind}")
    if "enum" in schema and value not in schema["enum"]:
        return SchemaViolation(path, "enum")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            return SchemaViolation(path, f"minLength {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return SchemaViolation(path, f"maxLength {schema['maxLength']}")
        if schema.get("format") == "date-time":
            try:
                valid = bool(_DATE_TIME.match(value)) and datetime.fromisoformat(value) is not None
            except ValueError:
                valid = False
            if not valid:
                return SchemaViolation(path, "format date-time")
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and "minimum" in schema and value < schema["minimum"]:
        return SchemaViolation(path, f"minimum {schema['minimum']}")
    if isinstance(value, dict):
        for name in schema.get("required", ()):
            if name not in value:
                return SchemaViolation(f"{path}.{name}", "required")
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                found = _check(value[name], sub, f"{path}.{name}")
                if found is not None:
                    return found
    return None


def validate_event(event: object) -> SchemaViolation | None:
    """The first violation of `schemas/raw-event.v1.json` by `event`, or None."""
    return _check(event, schemas.load(schemas.RAW_EVENT_V1), "$")
