"""mkdocs hook: the drop reasons, generated from `anonymizers.reasons`.

Replaces the marker `<!-- anonstream:drop-reasons -->` with a table of every drop reason, in
the order the pipeline checks them (`ALL`), each with the docstring written under its
constant and the comment of its group (`# Consent and rights ...`). If the module cannot be
imported, the page says so instead of failing the build.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import logging
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _render import cell, code  # noqa: E402

MARKER = "<!-- anonstream:drop-reasons -->"
log = logging.getLogger("mkdocs.hooks.reasons_reference")
_GROUP = re.compile(r"^#\s*(?P<text>[^#].*?)\s*$")


def _documented_constants(source: str) -> dict[str, tuple[str, str, str]]:
    """Constant value -> (name, docstring, group comment) for `NAME: Final = "value"`."""
    tree = ast.parse(source)
    lines = source.splitlines()
    found: dict[str, tuple[str, str, str]] = {}
    body = tree.body
    for index, node in enumerate(body):
        target = value = None
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            target, value = node.target.id, node.value
        elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            target, value = node.targets[0].id, node.value
        if not (isinstance(value, ast.Constant) and isinstance(value.value, str)):
            continue
        doc = ""
        following = body[index + 1] if index + 1 < len(body) else None
        if (
            isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            doc = " ".join(following.value.value.split())
        group = ""
        for line in reversed(lines[: node.lineno - 1]):
            if match := _GROUP.match(line.strip()):
                group = match["text"]
                break
        found[value.value] = (target or "", doc, group)
    return found


def render() -> str:
    """The Markdown table of drop reasons."""
    try:
        module = importlib.import_module("anonymizers.reasons")
        source = inspect.getsource(module)
    except Exception as exc:  # the layout is moving: never break the site over it
        log.info("drop reasons not generated: %s", exc)
        return (
            "!!! warning \"Not generated in this build\"\n"
            "    `anonymizers.reasons` could not be read when this site was built.\n"
        )
    documented = _documented_constants(source)
    reasons = list(getattr(module, "ALL", ())) or sorted(documented)
    rows = ["| reason | group | meaning |", "|---|---|---|"]
    for reason in reasons:
        _, doc, group = documented.get(reason, ("", "", ""))
        checked_by = re.sub(r"\s*\(.*?\)", "", group).rstrip(".,")
        rows.append(f"| {code(reason)} | {cell(checked_by)} | {cell(doc)} |")
    return "\n".join(rows) + "\n"


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Replace the drop reasons marker, where a page has it."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render())
