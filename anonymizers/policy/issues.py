"""Problems in a policy: where (a path), what is allowed, what was given.

Every message reads `<path> must be <allowed>; got <value>` (or names an unknown or missing
setting). `issues_from` turns pydantic's validation errors into such issues, using each
setting's own allowed-values phrase (`x-allowed` in the model's JSON Schema).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo


@dataclass(frozen=True, slots=True)
class PolicyIssue:
    """One problem in a policy: where, what is allowed, what was given (JSON text or None)."""

    path: str
    allowed: str
    given: str | None
    kind: Literal["invalid", "unknown", "missing"] = "invalid"

    def __str__(self) -> str:
        if self.kind == "unknown":
            return f"{self.path} is not a known setting; allowed keys: {self.allowed}"
        if self.kind == "missing":
            return f"{self.path} is required: {self.allowed}"
        return f"{self.path} must be {self.allowed}; got {self.given}"


def render_value(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _join_path(parts: Iterable[str | int]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _locate(
    model: type[BaseModel], loc: tuple[str | int, ...]
) -> tuple[type[BaseModel], FieldInfo | None, bool]:
    """Walk `loc` through nested models: (owner model, field or None, loc ended on a list item)."""
    owner: type[BaseModel] = model
    field: FieldInfo | None = None
    item = False
    for part in loc:
        if isinstance(part, int):
            item = True
            continue
        item = False
        if field is not None:
            nested = _model_of(field)
            if nested is None:
                return owner, None, item
            owner = nested
        field = owner.model_fields.get(part)
        if field is None:
            return owner, None, item
    return owner, field, item


def _model_of(field: FieldInfo) -> type[BaseModel] | None:
    annotation = field.annotation
    candidates = [annotation, *get_args(annotation)]
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def allowed_text(field: FieldInfo | None) -> str | None:
    extra = field.json_schema_extra if field is not None else None
    if isinstance(extra, dict):
        allowed = extra.get("x-allowed")
        if isinstance(allowed, str):
            return allowed
    return None


def issues_from(
    exc: ValidationError, model: type[BaseModel], prefix: tuple[str | int, ...]
) -> list[PolicyIssue]:
    issues: list[PolicyIssue] = []
    errors = exc.errors(include_url=False)
    failed_locs = [tuple(error["loc"]) for error in errors]
    for error in errors:
        loc = tuple(error["loc"])
        if error["type"] == "too_short" and any(
            len(other) > len(loc) and other[: len(loc)] == loc for other in failed_locs
        ):
            # "too short after validation" only because its items failed: already reported.
            continue
        path = _join_path(prefix + loc)
        kind = error["type"]
        ctx = error.get("ctx") or {}
        owner, field, item = _locate(model, loc)
        if kind == "extra_forbidden":
            parent_owner, parent_field, _ = (
                _locate(model, loc[:-1]) if len(loc) > 1 else (model, None, False)
            )
            nested = _model_of(parent_field) if parent_field is not None else parent_owner
            keys = ", ".join((nested or owner).model_fields)
            issues.append(PolicyIssue(path, keys, None, "unknown"))
            continue
        allowed = allowed_text(field)
        if item and kind == "literal_error":
            expected = str(ctx.get("expected", ""))
            allowed = "one of " + expected.replace("'", '"').replace(" or ", ", ")
        if kind == "missing":
            issues.append(PolicyIssue(path, allowed or "a value", None, "missing"))
            continue
        if allowed is None:
            allowed = (
                str(error["msg"]).removeprefix("Input should be ").removeprefix("Value error, ")
            )
        issues.append(PolicyIssue(path, allowed, render_value(error.get("input"))))
    return issues
