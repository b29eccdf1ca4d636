"""mkdocs hook: the settings reference, generated from `stream.settings.Settings`.

Replaces the marker `<!-- anonstream:settings -->` in a page with one table per group of
settings (the `# --- group ---` comments of the class body, when it has them): environment
variable, type, default, allowed values and the field's description. Secret fields show that
they exist and how they are given, never a value.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path
from typing import Any

import pydantic

sys.path.insert(0, str(Path(__file__).parent))

from _render import cell, code, constraints, human_ms, toml_value, type_text  # noqa: E402

MARKER = "<!-- anonstream:settings -->"
_GROUP = re.compile(r"^\s+#\s*-+\s*(?P<name>[^-].*?)\s*-+\s*$")
_FIELD = re.compile(r"^    (?P<name>[a-z_][a-z0-9_]*)\s*:")


def _is_secret(annotation: Any) -> bool:
    return "SecretStr" in repr(annotation) or annotation is pydantic.SecretStr


def _groups(settings_class: type) -> dict[str, str]:
    """Field name -> the group comment above it in the class body ({} if none)."""
    try:
        source = inspect.getsource(settings_class)
    except (OSError, TypeError):
        return {}
    group = ""
    found: dict[str, str] = {}
    for line in source.splitlines():
        if match := _GROUP.match(line):
            group = match["name"]
        elif (match := _FIELD.match(line)) and group:
            found[match["name"]] = group
    return found


def _default(name: str, field: Any) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, pydantic.SecretStr):
        return "(secret)"
    text = code(toml_value(value))
    if name.endswith("_ms") and isinstance(value, int) and not isinstance(value, bool):
        text += f" ({human_ms(value)})"
    return text


def render() -> str:
    """The Markdown of every settings table."""
    module = importlib.import_module("stream.settings")
    settings_class = module.Settings
    prefix = str(settings_class.model_config.get("env_prefix", "")).upper()
    groups = _groups(settings_class)
    tables: dict[str, list[str]] = {}
    secrets: list[str] = []
    for name, field in settings_class.model_fields.items():
        variable = prefix + name.upper()
        kind, optional = type_text(field.annotation)
        if optional:
            kind += " (optional)"
        bounds = constraints(field.metadata)
        secret = _is_secret(field.annotation)
        if secret:
            secrets.append(variable)
        description = field.description or ""
        if secret:
            description = (description + " Secret: a file in the secrets directory (below) "
                           "or an environment variable.").strip()
        row = "| {} | {} | {} | {} |".format(
            code(variable),
            cell(kind + (f"; {bounds}" if bounds else "")),
            _default(name, field),
            cell(description) or " ",
        )
        tables.setdefault(groups.get(name, ""), []).append(row)
    out: list[str] = []
    for group, rows in tables.items():
        if group:
            out += [f"## {group[:1].upper() + group[1:]}", ""]
        out += ["| variable | type | default | description |", "|---|---|---|---|", *rows, ""]
    if secrets:
        out += [
            "## Secrets",
            "",
            "These settings are secrets: " + ", ".join(code(s) for s in secrets) + ". "
            "Give each as a file named after its variable (any case) in the directory "
            f"{code(prefix + 'SECRETS_DIR')}, such as a mounted Kubernetes secret volume, or "
            "as an environment variable (which wins over the file). Inside the process they are "
            "held as pydantic `SecretStr` values, which print as `**********`.",
            "",
        ]
    return "\n".join(out)


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Replace the settings marker, where a page has it."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render())
