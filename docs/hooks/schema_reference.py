"""mkdocs hook: the wire schema reference, generated from the files in `schemas/*.json`.

Replaces the marker `<!-- anonstream:schemas -->` with, per file: its title, `$id` and
description, a table of its fields (nested objects flattened as `source.topic`, list items as
`windows[].report`, map values as `metrics.<name>.cells`), one table per variant of a
`oneOf` record, and the file itself in a collapsed block. The policy schema is listed but
described on the policy reference page.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _render import cell, code  # noqa: E402

MARKER = "<!-- anonstream:schemas -->"
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
DESCRIBED_ELSEWHERE = {"policy.v1.json": "policy.md"}


def _type(node: Any) -> str:
    if node is True:
        return "(as above)"
    if not isinstance(node, dict):
        return ""
    if "const" in node:
        return "always " + code(json.dumps(node["const"]))
    if "enum" in node:
        return "one of " + ", ".join(code(json.dumps(v)) for v in node["enum"])
    for key in ("oneOf", "anyOf"):
        if key in node:
            return " or ".join(_type(v) for v in node[key])
    if "$ref" in node:
        return code(node["$ref"].rsplit("/", 1)[-1])
    kinds = node.get("type", "any")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    words = []
    for kind in kinds:
        if kind == "array":
            words.append("array of " + (_type(node.get("items", {})) or "values"))
        elif kind == "object" and isinstance(node.get("additionalProperties"), dict):
            words.append("map of " + (_type(node["additionalProperties"]) or "values"))
        else:
            words.append(str(kind))
    text = " or ".join(words)
    if "format" in node:
        text += f" ({node['format']})"
    bounds = []
    for key, template in (("minimum", ">= {}"), ("maximum", "<= {}"),
                          ("minLength", "{}+ chars"), ("maxLength", "<= {} chars"),
                          ("minItems", "{}+ items"), ("maxItems", "<= {} items")):
        if key in node:
            bounds.append(template.format(node[key]))
    if node.get("uniqueItems"):
        bounds.append("distinct")
    return text + (", " + ", ".join(bounds) if bounds else "")


def _rows(node: dict[str, Any], prefix: str, out: list[str]) -> None:
    required = set(node.get("required", ()))
    for name, sub in node.get("properties", {}).items():
        if sub is True:  # a variant restating a field of the common part
            continue
        path = prefix + name
        out.append(
            "| {} | {} | {} | {} |".format(
                code(path),
                cell(_type(sub)),
                "yes" if name in required else "",
                cell(sub.get("description", "")) if isinstance(sub, dict) else "",
            )
        )
        if not isinstance(sub, dict):
            continue
        if "properties" in sub:
            _rows(sub, path + ".", out)
        items = sub.get("items")
        if isinstance(items, dict) and "properties" in items:
            _rows(items, path + "[].", out)
        values = sub.get("additionalProperties")
        if isinstance(values, dict) and "properties" in values:
            _rows(values, path + ".<name>.", out)
        for variant in sub.get("oneOf", ()):
            if isinstance(variant, dict) and "properties" in variant:
                _rows(variant, path + ".", out)


def _table(node: dict[str, Any]) -> list[str]:
    rows: list[str] = []
    _rows(node, "", rows)
    if not rows:
        return []
    return ["| field | type | required | description |", "|---|---|---|---|", *rows, ""]


def _variant_name(variant: dict[str, Any]) -> str:
    for name, sub in variant.get("properties", {}).items():
        if isinstance(sub, dict) and "const" in sub:
            return f"{name} = {json.dumps(sub['const'])}"
    return "variant"


def render() -> str:
    """The Markdown of every schema file."""
    out: list[str] = []
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        out += [f"## {schema.get('title', path.stem)}", ""]
        out += [f"File `schemas/{path.name}`, `$id` `{schema.get('$id', '')}`.", ""]
        if schema.get("description"):
            out += [schema["description"], ""]
        if path.name in DESCRIBED_ELSEWHERE:
            out += [f"Every setting is described on the [policy file page]"
                    f"({DESCRIBED_ELSEWHERE[path.name]}).", ""]
        else:
            out += _table(schema)
            for variant in schema.get("oneOf", ()):
                if isinstance(variant, dict) and "properties" in variant:
                    out += [f"Records with {code(_variant_name(variant))} also hold:", ""]
                    out += _table(variant)
        text = json.dumps(schema, indent=2, ensure_ascii=False)
        out += [f'??? abstract "schemas/{path.name}"', "", "    ```json"]
        out += ["    " + line for line in text.splitlines()]
        out += ["    ```", ""]
    return "\n".join(out)


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Replace the schemas marker, where a page has it."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render())
