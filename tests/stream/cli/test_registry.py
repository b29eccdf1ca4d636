"""The lazy command registry (`stream.cli.COMMANDS`): every entry is a real click command,
the console script and `python -m stream` list them all, and the production worker never
loads a laptop tool (stream.local) at run time."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from stream.cli import COMMANDS, cli

EXPECTED_COMMANDS = {
    "bench",
    "broker",
    "budget",
    "consent",
    "dashboard",
    "deadletter",
    "demo",
    "generate",
    "policy",
    "preview",
    "settings",
    "tail",
    "topics",
    "worker",
}
"""The command line's commands (docs/reference/cli.md and the issue's list)."""
LOCAL_COMMANDS = {"bench", "broker", "dashboard", "demo", "generate"}
"""Laptop tools: they live in stream.local."""


def test_registry_names_every_command() -> None:
    """COMMANDS holds exactly the expected commands; laptop tools point into stream.local,
    every other command into stream.cli."""
    assert set(COMMANDS) == EXPECTED_COMMANDS
    for name, target in COMMANDS.items():
        module = target.partition(":")[0]
        package = "stream.local" if name in LOCAL_COMMANDS else "stream.cli"
        assert module.startswith(package + "."), (name, target)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_entry_imports_and_is_a_click_command(name: str) -> None:
    """Each "module:attribute" imports, names a click command of that name, and the group
    returns that very object."""
    module_name, _, attribute = COMMANDS[name].partition(":")
    command = getattr(importlib.import_module(module_name), attribute)
    assert isinstance(command, click.Command)
    assert command.name == name
    assert cli.get_command(click.Context(cli), name) is command


def _paths(command: click.Command, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path under `command` (groups and their subcommands)."""
    paths = [prefix]
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None, (prefix, name)
            paths.extend(_paths(sub, (*prefix, name)))
    return paths


def test_every_command_and_subcommand_answers_help() -> None:
    """`anonstream [COMMAND [SUBCOMMAND]] --help` exits 0 for the whole tree."""
    paths = _paths(cli)
    assert ("consent", "import") in paths and ("broker", "start") in paths
    for path in paths:
        result = CliRunner().invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)


def test_console_script_and_module_list_every_command() -> None:
    """The `anonstream` console script and `python -m stream` print every command."""
    script = Path(sys.executable).parent / "anonstream"
    for argv in ([str(script)], [sys.executable, "-m", "stream"]):
        result = subprocess.run(
            [*argv, "--help"], capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stderr
        listed = {line.split()[0] for line in result.stdout.split("Commands:")[1].splitlines()[1:]}
        assert listed == EXPECTED_COMMANDS, argv


def test_worker_loads_no_laptop_tool() -> None:
    """Importing the CLI, the worker command and the composition root (as `anonstream
    worker` does) loads no module of stream.local."""
    code = (
        "import sys, stream.cli, stream.cli.worker, stream.worker\n"
        "print(sorted(m for m in sys.modules if m.startswith('stream.local')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
