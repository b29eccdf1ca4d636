"""Small helpers the reference hooks share: values and types as Markdown table cells."""

from __future__ import annotations

import enum
import json
import types
import typing
from pathlib import PurePath
from typing import Any, Literal

import pydantic

UNION_TYPES = (typing.Union, types.UnionType)


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell (no pipes, no line breaks)."""
    return " ".join(text.replace("|", "\\|").split())


def code(text: str) -> str:
    """Inline code, with a longer fence when the text holds backticks."""
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def toml_value(value: Any) -> str:
    """A default as a TOML (and environment) reader would write it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return toml_value(value.value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, PurePath):
        return json.dumps(str(value))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return str(value)


def type_text(annotation: Any) -> tuple[str, bool]:
    """(words for the annotation, whether None is allowed)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_text(args[0])
    if origin in UNION_TYPES:
        kept = [arg for arg in args if arg is not type(None)]
        parts = [type_text(arg)[0] for arg in kept]
        return " or ".join(parts), len(kept) < len(args)
    if origin is Literal:
        values = [code(toml_value(arg)) for arg in args]
        return ("one of " + ", ".join(values)) if len(values) > 1 else values[0], False
    if origin in (tuple, list, set, frozenset):
        inner = [arg for arg in args if arg is not Ellipsis]
        return "list of " + (type_text(inner[0])[0] if inner else "values"), False
    if annotation is pydantic.SecretStr:
        return "secret text", False
    if isinstance(annotation, type):
        if issubclass(annotation, PurePath):
            return "path", False
        if issubclass(annotation, bool):
            return "boolean", False
        if issubclass(annotation, int):
            return "integer", False
        if issubclass(annotation, float):
            return "number", False
        if issubclass(annotation, str):
            return "text", False
        if issubclass(annotation, pydantic.BaseModel):
            return "table", False
        return annotation.__name__, False
    return str(annotation).replace("typing.", ""), False


def constraints(metadata: list[Any]) -> str:
    """Bounds and patterns pydantic keeps in a field's metadata, e.g. `>= 1, <= 1024`."""
    words = []
    for item in metadata:
        for attribute, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            bound = getattr(item, attribute, None)
            if bound is not None:
                words.append(f"{sign} {bound}")
        for attribute, template in (("min_length", "at least {} items"),
                                    ("max_length", "at most {} items")):
            bound = getattr(item, attribute, None)
            if bound is not None:
                words.append(template.format(bound))
        pattern = getattr(item, "pattern", None)
        if pattern:
            words.append("matching " + code(pattern))
    return ", ".join(words)


def human_ms(milliseconds: int) -> str:
    """7 d, 3 h, 90 s: a millisecond count in the largest whole unit."""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000)):
        if milliseconds and milliseconds % size == 0:
            return f"{milliseconds // size} {unit}"
    return f"{milliseconds} ms"
