"""The `anonstream` command line.

One module per command group in this package; the laptop tools' commands live in
`stream.local`. `COMMANDS` names each by "module:attribute", imported only when called, so
that `anonstream broker start` does not pay for importing Faust, a broken optional module
never takes the whole CLI down, and production code never imports a laptop tool.
"""

from __future__ import annotations

import importlib
import os
import sys
from enum import IntEnum
from typing import Any

import click

from anonymizers.exceptions import AnonstreamError
from stream.exceptions import BrokerSecurityError, BrokerUnreachableError

BOOTSTRAP_VARIABLE = "ANONSTREAM_BOOTSTRAP_SERVERS"


class ExitCode(IntEnum):
    """Exit statuses of every `anonstream` command (docs/reference/cli.md lists them)."""

    OK = 0
    PROBLEMS_FOUND = 1  # the command ran and found problems (a check failed, rows invalid)
    USAGE = 2  # a bad option or argument, an invalid setting, policy or input; a missing topic
    NOT_ACKNOWLEDGED = 3  # the broker did not acknowledge every record (consent import)
    BROKER_UNREACHABLE = 4  # no Kafka broker answered at the bootstrap address
    BROKER_REFUSED = 5  # a broker answered but refused the TLS handshake or SASL credentials
    INTERRUPTED = 130  # Ctrl-C


# name -> "module:attribute" of a click command or group.
COMMANDS: dict[str, str] = {
    "bench": "stream.local.bench.cli:bench_cli",
    "budget": "stream.cli.budget:budget_cli",
    "broker": "stream.local.broker:broker_cli",
    "topics": "stream.cli.topics:topics_cli",
    "worker": "stream.cli.worker:worker_cli",
    "policy": "stream.cli.policy:policy_cli",
    "preview": "stream.cli.preview:preview_cli",
    "consent": "stream.cli.consent:consent_cli",
    "generate": "stream.local.traffic:generate_cli",
    "demo": "stream.local.demo:demo_cli",
    "dashboard": "stream.local.dashboard:dashboard_cli",
    "tail": "stream.cli.tail:tail_cli",
    "settings": "stream.cli.settings:settings_cli",
    "deadletter": "stream.cli.deadletter:deadletter_cli",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, _, attribute = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            return None
        command: click.Command = getattr(module, attribute)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="anonstream", prog_name="anonstream")
@click.option(
    "--bootstrap-server",
    "bootstrap_server",
    metavar="HOST:PORT[,...]",
    default=None,
    help="Kafka brokers for this command and the processes it starts; overrides "
    f"{BOOTSTRAP_VARIABLE}.",
)
def cli(bootstrap_server: str | None) -> None:
    """anonstream: identifying event data in, aggregated non-identifying statistics out.

    Exit status: 0 ok; 1 problems found (a check failed, some rows invalid); 2 usage or
    configuration error; 3 records not acknowledged; 4 no broker reachable; 5 the broker
    refused the TLS handshake or the SASL credentials; 130 interrupted.
    """
    apply_bootstrap(bootstrap_server)


def apply_bootstrap(bootstrap_server: str | None) -> None:
    """Make `--bootstrap-server` the address every settings object of this process (and of
    the processes it starts) reads: the one place the option takes effect."""
    if bootstrap_server is not None:
        os.environ[BOOTSTRAP_VARIABLE] = bootstrap_server


def bootstrap_option(command: Any) -> Any:
    """`--bootstrap-server` on a subcommand that talks to Kafka (same as the root option);
    decorates a command function or extends a built `click.Command`."""

    def apply(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
        apply_bootstrap(value)

    option = click.Option(
        ["--bootstrap-server"],
        metavar="HOST:PORT[,...]",
        default=None,
        expose_value=False,
        is_eager=True,
        callback=apply,
        help=f"Kafka brokers; overrides {BOOTSTRAP_VARIABLE}.",
    )
    if isinstance(command, click.Command):
        command.params.append(option)
        return command
    params: list[click.Parameter] = command.__dict__.setdefault("__click_params__", [])
    params.append(option)
    return command


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point: expected errors become one line on stderr and an
    `ExitCode` (2 for usage and configuration errors, 4 and 5 for the broker)."""
    from stream.logs import clamp_library_loggers

    clamp_library_loggers()
    try:
        return cli.main(args=argv, prog_name="anonstream", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except BrokerUnreachableError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(ExitCode.BROKER_UNREACHABLE)
    except BrokerSecurityError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(ExitCode.BROKER_REFUSED)
    except AnonstreamError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(ExitCode.USAGE)
    except KeyboardInterrupt:
        sys.exit(ExitCode.INTERRUPTED)
