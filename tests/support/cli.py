"""Run the `anonstream` command line in-process against a test's settings."""

from __future__ import annotations

import os

from click.testing import CliRunner, Result

from stream.cli import cli
from stream.local.processes import settings_env
from stream.settings import ENV_PREFIX, Settings


def run_cli(settings: Settings, *args: str, stdin: str | None = None) -> Result:
    """`anonstream ARGS` in-process, with exactly the test's settings in the environment
    (no other ANONSTREAM_* variable leaks in)."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith(ENV_PREFIX)}
    env.update({k: v for k, v in settings_env(settings).items() if k.startswith(ENV_PREFIX)})
    return CliRunner().invoke(cli, list(args), env=env, input=stdin)
