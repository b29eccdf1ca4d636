"""anonymizers/ is pure: no Kafka, no sockets, no environment, no I/O but the geo database."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import ROOT

PACKAGE = ROOT / "anonymizers"
# Modules of other issues may land here too; they are held to the same rule.
FORBIDDEN_MODULES = {
    "faust",
    "aiokafka",
    "kafka",
    "confluent_kafka",
    "socket",
    "ssl",
    "http",
    "urllib.request",
    "requests",
    "httpx",
    "asyncio",
    "subprocess",
    "stream",
    "os",
    "shutil",
    "dotenv",
}
FORBIDDEN_NAMES = {"environ", "getenv", "putenv", "system", "popen"}
# open() is allowed only where the policy file is read (policy/load.py); the geo database is
# opened by maxminddb and read by numpy.
OPEN_ALLOWED = {"policy/load.py"}


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    """The path of a module relative to the package, as posix text (`policy/model.py`)."""
    return path.relative_to(PACKAGE).as_posix()


def _module(path: Path) -> str:
    """The dotted module name of a source file (`anonymizers.policy.model`)."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize("path", _sources(), ids=_name)
def test_no_forbidden_imports_or_names(path: Path) -> None:
    """No module imports Kafka, sockets, os or stream, or names the environment."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                assert alias.name.split(".")[0] not in FORBIDDEN_MODULES | {"os"}, (
                    path.name,
                    alias.name,
                )
                assert alias.name not in FORBIDDEN_MODULES, (path.name, alias.name)
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.module.split(".")[0] not in FORBIDDEN_MODULES, (path.name, node.module)
            assert node.module not in FORBIDDEN_MODULES, (path.name, node.module)
        elif isinstance(node, ast.Attribute):
            assert node.attr not in FORBIDDEN_NAMES, (path.name, node.attr)
        elif isinstance(node, ast.Name):
            assert node.id not in FORBIDDEN_NAMES, (path.name, node.id)
            if node.id == "open":
                assert _name(path) in OPEN_ALLOWED, (_name(path), "open")


def test_importing_pulls_in_no_kafka_or_network() -> None:
    """A fresh interpreter importing every module of anonymizers loads no Kafka or HTTP client.

    (`socket` itself is imported by the standard library's importlib.metadata, which pydantic
    and maxminddb use; the AST scan above forbids anonymizers from using it.)
    """
    modules = [_module(p) for p in _sources()]
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        + "{'faust','aiokafka','kafka','confluent_kafka','requests','httpx','stream','mode'})\n"
        + "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=PACKAGE.parent,
        timeout=120,
    )
    assert result.stdout.strip() == ""
