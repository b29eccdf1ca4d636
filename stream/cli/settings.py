"""`anonstream settings check`: the effective settings, secrets masked, and every problem.

Run it where a worker would run (same environment, same secrets directory) before a deploy:
it prints each setting as `ANONSTREAM_NAME=value` (secrets as `********`), then the problems
found, one per line, and exits 1 when there is any: an invalid value, an unknown
`ANONSTREAM_*` variable or secret file (with the closest setting), a file setting that
names no readable file, a TLS file that does not load. `--connect` also connects to the
broker as the workers would (TLS handshake, SASL authentication).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from stream.exceptions import BrokerError, SettingsError
from stream.settings import Settings, load_settings

# Settings naming a file that must exist and be readable when set.
FILE_SETTINGS = ("policy_path", "geo_db_path", "ssl_cafile", "ssl_certfile", "ssl_keyfile")


@click.group("settings")
def settings_cli() -> None:
    """Show and check the settings every anonstream process reads."""


@settings_cli.command("check")
@click.option("--connect", is_flag=True, help="Also connect to the broker (TLS handshake, SASL).")
def settings_check(connect: bool) -> None:
    """Print the effective settings (secrets masked); exit 1 on any problem."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        for problem in exc.problems:
            click.echo(f"problem: {problem}", err=True)
        sys.exit(1)
    for name, value in settings.masked().items():
        click.echo(f"{name}={'' if value is None else value}")
    problems = file_problems(settings)
    if not problems:
        try:
            settings.ssl_context()
        except SettingsError as exc:
            problems.append(str(exc))
    if connect and not problems:
        from stream.kafka import require_reachable

        try:
            require_reachable(settings)
        except BrokerError as exc:
            problems.append(str(exc))
    for problem in problems:
        click.echo(f"problem: {problem}", err=True)
    if problems:
        sys.exit(1)
    click.echo("settings ok" + (" (broker connected)" if connect else ""), err=True)


def file_problems(settings: Settings) -> list[str]:
    """One line per file setting that is set but names no readable file."""
    problems = []
    for name in FILE_SETTINGS:
        path: Path | None = getattr(settings, name)
        if path is not None and not (path.is_file() and os.access(path, os.R_OK)):
            problems.append(
                f"ANONSTREAM_{name.upper()} must name a readable file; got {str(path)!r}"
            )
    return problems
