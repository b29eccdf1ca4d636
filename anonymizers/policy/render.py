"""The policy written out: the default file with every setting explained, and its JSON Schema.

`render_default_policy_toml()` is what `anonstream policy init` writes (parsing it gives
`default_policy()`); `policy_json_schema()` is committed as `schemas/policy.v1.json`.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from anonymizers.policy.issues import allowed_text
from anonymizers.policy.load import default_policy
from anonymizers.policy.model import SECTIONS, Policy


def policy_json_schema() -> dict[str, Any]:
    """The JSON Schema of the policy file, as committed in `schemas/policy.v1.json`."""
    schema = Policy.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://anonstream.dev/schemas/policy.v1.json",
        **schema,
        "description": (
            "The anonstream policy file (TOML), schema version 1. Durations are strings: a "
            "positive whole number followed by s, m, h or d. Settings that span sections "
            "(windows divide keys.rotation, retention covers rotation + lateness, metric "
            "dimensions are kept output fields...) are checked by `anonstream policy check`."
        ),
    }


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        pairs = (f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + ", ".join(pairs) + " }"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _comment(text: str, width: int = 96) -> list[str]:
    lines: list[str] = []
    current = "#"
    for word in text.split():
        if len(current) + 1 + len(word) > width:
            lines.append(current)
            current = "#"
        current += " " + word
    lines.append(current)
    return lines


def _table_lines(model: BaseModel, header: str) -> list[str]:
    lines = [f"[{header}]"]
    nested: list[tuple[str, BaseModel]] = []
    arrays: list[tuple[str, tuple[BaseModel, ...]]] = []
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            nested.append((name, value))
            continue
        if isinstance(value, tuple) and value and isinstance(value[0], BaseModel):
            arrays.append((name, value))
            continue
        lines.extend(_comment(f"{info.description} Allowed: {allowed_text(info)}."))
        if value is None:
            lines.append(f"# {name} = (unset)")
        else:
            lines.append(f"{name} = {_toml_value(value)}")
    for name, sub in nested:
        lines.append("")
        description = type(model).model_fields[name].description or ""
        lines.extend(_comment(f"---- {header}.{name}: {description}"))
        lines.extend(_table_lines(sub, f"{header}.{name}"))
    for name, items in arrays:
        info = type(model).model_fields[name]
        lines.append("")
        lines.extend(_comment(f"{info.description} Each [[{header}.{name}]] table:"))
        item_model = type(items[0])
        for field_name, field_info in item_model.model_fields.items():
            lines.extend(
                _comment(
                    f"  {field_name}: {field_info.description} Allowed: {allowed_text(field_info)}."
                )
            )
        for item in items:
            lines.append("")
            lines.append(f"[[{header}.{name}]]")
            for field_name in item_model.model_fields:
                value = getattr(item, field_name)
                default = item_model.model_fields[field_name].default
                if value is None or (
                    value == default and field_name not in ("name", "event_types", "aggregate")
                ):
                    continue
                lines.append(f"{field_name} = {_toml_value(value)}")
    return lines


def render_default_policy_toml() -> str:
    """The default policy as a commented TOML file; parsing it gives `default_policy()`."""
    policy = default_policy()
    lines = [
        "# anonstream policy file, schema version 1 (JSON Schema: schemas/policy.v1.json).",
        "# Check it with `anonstream policy check PATH`; try it with `anonstream preview`.",
        '# Defaults follow PRIVACY.md. Durations: a whole number and s, m, h or d ("30m", "1d").',
        "",
    ]
    for name in ("schema_version", "policy_version"):
        info = Policy.model_fields[name]
        lines.extend(_comment(f"{info.description} Allowed: {allowed_text(info)}."))
        lines.append(f"{name} = {_toml_value(getattr(policy, name))}")
    for name in SECTIONS:
        lines.append("")
        lines.extend(_comment(f"---- {name}: {Policy.model_fields[name].description}"))
        lines.extend(_table_lines(getattr(policy, name), name))
    return "\n".join(lines) + "\n"
