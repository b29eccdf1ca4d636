"""`anonstream bench --compare LABEL=DIR`: which code a compared worker row runs is checked,
not assumed (the working directory comes first on `-m`'s sys.path, so a tree on PYTHONPATH
alone would silently run the installed project)."""

from __future__ import annotations

import shutil
from pathlib import Path

import click
import pytest

from stream.local.bench.cli import _tree
from stream.local.bench.exceptions import BenchError
from stream.local.bench.rows import Tree

ROOT = Path(__file__).parents[4]


def _copy_tree(into: Path) -> Path:
    for package in ("anonymizers", "stream", "schemas"):
        shutil.copytree(
            ROOT / package, into / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    return into


def test_a_compared_tree_runs_its_own_chain(tmp_path: Path) -> None:
    tree = _tree(f"copy={_copy_tree(tmp_path / 'copy')}")
    assert tree.label == "copy"
    assert tree.chain_module() == "anonymizers/chain.py"


def test_a_tree_that_is_not_imported_first_is_refused(tmp_path: Path) -> None:
    """A directory whose anonymizers.chain would not be the one imported: the row refuses."""
    (tmp_path / "anonymizers").mkdir()
    (tmp_path / "anonymizers" / "__init__.py").write_text("raise ImportError('not this one')\n")
    with pytest.raises(BenchError, match="not imported from"):
        Tree("empty", tmp_path).chain_module()


@pytest.mark.parametrize("spec", ["nolabel", "=dir", "bad label=/tmp", "x=/nonexistent/dir"])
def test_bad_compare_specs_are_refused(spec: str) -> None:
    with pytest.raises(click.BadParameter):
        _tree(spec)
