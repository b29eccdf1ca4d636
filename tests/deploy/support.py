"""What the deployment tests read of the code and of the deployment files.

Each helper reads the code's own registries (the click CLI, the settings class, the metric
names in the source) so that a deployment file naming something the code lacks fails.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import click

from stream.cli import cli
from stream.settings import ENV_PREFIX, Settings
from tests.support.paths import ROOT

DEPLOY = ROOT / "deploy"
KUBE = DEPLOY / "kubernetes"
SCHEMAS = Path(__file__).resolve().parent / "schemas"


def parse_cli(args: list[str]) -> click.Context:
    """Parse `anonstream ARGS` as the CLI would, without running it: a `click.UsageError`
    (unknown command or option, invalid value) when the code has no such command line."""
    command: click.Command = cli
    parent: click.Context | None = None
    rest = list(args)
    while isinstance(command, click.Group):
        ctx = click.Context(command, info_name=command.name, parent=parent)
        if not rest:
            raise click.UsageError(f"{command.name} needs a subcommand", ctx)
        sub = command.get_command(ctx, rest[0])
        if sub is None:
            raise click.UsageError(f"no such command {rest[0]!r}", ctx)
        command, parent, rest = sub, ctx, rest[1:]
    return command.make_context(command.name, rest, parent=parent)


def setting_variables() -> set[str]:
    """Every environment variable the settings class reads, plus ANONSTREAM_SECRETS_DIR."""
    names = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    return names | {f"{ENV_PREFIX}SECRETS_DIR"}


def exported_metric_names() -> set[str]:
    """Metric family names written in stream/ (the collectors build families from literals),
    with the suffixes Prometheus exposes: `_total` for counters, `_bucket`, `_sum` and
    `_count` for histograms."""
    families: set[str] = set()
    for path in (ROOT / "stream").rglob("*.py"):
        families.update(re.findall(r'"(anonstream_[a-z0-9_]+)"', path.read_text()))
    suffixes = ("", "_total", "_bucket", "_sum", "_count")
    return {family + suffix for family in families for suffix in suffixes}


def metric_names_in(expression: str) -> set[str]:
    """The anonstream metric names a PromQL expression reads."""
    return set(re.findall(r"\banonstream_[a-z0-9_]+\b", expression))


def dockerfile_stages(text: str) -> list[list[tuple[str, str]]]:
    """The Dockerfile's build stages, each a list of (INSTRUCTION, arguments), continuation
    lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    stages: list[list[tuple[str, str]]] = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, arguments = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM" or not stages:
            stages.append([])
        stages[-1].append((instruction, arguments.strip()))
    return stages


def dockerfile_env(stage: list[tuple[str, str]]) -> dict[str, str]:
    """The ENV variables a stage sets (`ENV A=1 B=2` form)."""
    env: dict[str, str] = {}
    for instruction, arguments in stage:
        if instruction == "ENV":
            for pair in shlex.split(arguments):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def containers(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The containers of a Deployment's or Job's pod template."""
    pod: dict[str, Any] = document["spec"]["template"]["spec"]
    return list(pod.get("initContainers", [])) + list(pod["containers"])
