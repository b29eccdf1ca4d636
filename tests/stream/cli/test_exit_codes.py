"""Exit statuses: a usage error (2) and an unreachable broker (4) differ; every command that
talks to Kafka takes `--bootstrap-server` and names the address it could not reach."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from stream.cli import ExitCode

KAFKA_COMMANDS = [
    ["topics", "create", "--check"],
    ["topics", "list"],
    ["deadletter", "inspect"],
    ["deadletter", "replay", "--reason", "too_large", "--dry-run"],
    ["consent", "erase", "--cookie-id", "c-1"],
    ["tail"],
    ["budget"],
]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m stream ARGS` with no ANONSTREAM_* variable of the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANONSTREAM_")}
    return subprocess.run(
        [sys.executable, "-m", "stream", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_documented_numbers() -> None:
    """The table in docs/reference/cli.md, restated."""
    assert {code.name: int(code) for code in ExitCode} == {
        "OK": 0,
        "PROBLEMS_FOUND": 1,
        "USAGE": 2,
        "NOT_ACKNOWLEDGED": 3,
        "BROKER_UNREACHABLE": 4,
        "BROKER_REFUSED": 5,
        "INTERRUPTED": 130,
    }


@pytest.mark.parametrize("command", KAFKA_COMMANDS, ids=lambda c: "-".join(c[:2]))
def test_an_unreachable_broker_is_exit_4_naming_the_address(command: list[str]) -> None:
    """`COMMAND --bootstrap-server` an address where nothing listens: one line, status 4."""
    result = run(*command, "--bootstrap-server", "127.0.0.1:1")
    assert result.returncode == ExitCode.BROKER_UNREACHABLE, result.stdout + result.stderr
    assert result.stderr.strip() == (
        "error: no Kafka broker reachable at ANONSTREAM_BOOTSTRAP_SERVERS=127.0.0.1:1"
        " (start one with `anonstream broker start`)"
    )


def test_a_usage_error_is_exit_2() -> None:
    """An unknown option is a usage error, not a broker problem."""
    result = run("topics", "list", "--no-such-option")
    assert result.returncode == ExitCode.USAGE
    assert "--no-such-option" in result.stderr


def test_an_unknown_setting_is_exit_2_with_a_suggestion() -> None:
    """A mistyped variable stops any command before it talks to Kafka."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANONSTREAM_")}
    env["ANONSTREAM_BOOTSTRAP_SERVER"] = "127.0.0.1:1"
    result = subprocess.run(
        [sys.executable, "-m", "stream", "topics", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == ExitCode.USAGE
    assert "did you mean ANONSTREAM_BOOTSTRAP_SERVERS?" in result.stderr
