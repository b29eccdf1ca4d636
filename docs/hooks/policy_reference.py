"""mkdocs hook: the policy file reference, generated from `anonymizers.policy.Policy`.

Replaces the marker `<!-- anonstream:policy -->` with one table per TOML table of the policy
file (`[geo]`, `[release]`, `[[aggregation.metrics]]`...): setting, default, allowed
values and description, all read from the pydantic model, plus the default metrics. Only
`Policy` is imported, from `anonymizers.policy`; if that import fails, the page says so
instead of failing the build, and points at `anonstream policy schema`.
"""

from __future__ import annotations

import logging
import sys
import typing
from pathlib import Path
from typing import Any

import pydantic

sys.path.insert(0, str(Path(__file__).parent))

from _render import cell, code, constraints, toml_value, type_text  # noqa: E402

MARKER = "<!-- anonstream:policy -->"
log = logging.getLogger("mkdocs.hooks.policy_reference")


def _model_of(annotation: Any) -> type[pydantic.BaseModel] | None:
    """The model of a table (`GeoConfig`) or of a list of tables (`tuple[MetricConfig, ...]`)."""
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _model_of(typing.get_args(annotation)[0])
    if origin in (tuple, list):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        if args and isinstance(args[0], type) and issubclass(args[0], pydantic.BaseModel):
            return args[0]
    return None


def _is_list(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _is_list(typing.get_args(annotation)[0])
    return origin in (tuple, list)


def _allowed(field: Any) -> str:
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    allowed = extra.get("x-allowed")
    if isinstance(allowed, str) and allowed:
        return allowed
    kind, optional = type_text(field.annotation)
    bounds = constraints(field.metadata)
    return kind + (" or unset" if optional else "") + (f"; {bounds}" if bounds else "")


def _default(field: Any) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, pydantic.BaseModel):
        return "(table)"
    if isinstance(value, tuple) and value and isinstance(value[0], pydantic.BaseModel):
        return f"{len(value)} tables (below)"
    return code(toml_value(value))


def _tables(model: type[pydantic.BaseModel], path: str, out: list[str], *, heading: str) -> None:
    """Rows of `model`'s own settings under `heading`, then its sub-tables."""
    rows: list[str] = []
    nested: list[tuple[str, type[pydantic.BaseModel], bool, Any]] = []
    for name, field in model.model_fields.items():
        sub = _model_of(field.annotation)
        full = f"{path}.{name}" if path else name
        if sub is not None:
            nested.append((full, sub, _is_list(field.annotation), field))
            if not _is_list(field.annotation):
                continue
        rows.append(
            "| {} | {} | {} | {} |".format(
                code(full), _default(field), cell(_allowed(field)), cell(field.description or "")
            )
        )
    if rows:
        out += [heading, ""]
        doc = (model.__doc__ or "").strip()
        if doc and path:
            out += [cell(doc), ""]
        out += ["| setting | default | allowed | description |", "|---|---|---|---|", *rows, ""]
    for full, sub, many, field in nested:
        title = f"[[{full}]]" if many else f"[{full}]"
        _tables(sub, full + ("[]" if many else ""), out, heading=f"## `{title}`")
        if many:
            _default_items(full, field, out)


def _default_items(path: str, field: Any, out: list[str]) -> None:
    """The default entries of a list of tables (the shipped metrics), one row each."""
    items = field.get_default(call_default_factory=True) or ()
    if not items:
        return
    names = list(type(items[0]).model_fields)
    out += [f"Default `{path}` ({len(items)} entries):", ""]
    out += ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for item in items:
        values = [getattr(item, name) for name in names]
        out.append(
            "| "
            + " | ".join(
                cell(code(toml_value(v))) if v not in (None, ()) else " " for v in values
            )
            + " |"
        )
    out.append("")


def render() -> str:
    """The Markdown of the policy reference, or a note when the model cannot be imported."""
    try:
        from anonymizers.policy import Policy
    except Exception as exc:  # the layout is moving: never break the site over it
        log.info("policy reference not generated: %s", exc)
        return (
            "!!! warning \"Not generated in this build\"\n"
            "    The policy model could not be imported from `anonymizers.policy` when this "
            "site was built. `anonstream policy schema` prints the file's JSON Schema and "
            "`anonstream policy init` writes the default file with every setting explained.\n"
        )
    out: list[str] = []
    _tables(Policy, "", out, heading="## Top level")
    return "\n".join(out)


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Replace the policy marker, where a page has it."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render())
