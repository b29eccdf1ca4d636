"""`anonstream dashboard`: a page of the released aggregates and the pipeline's counters.

A laptop tool in its own process (production never imports it; `anonstream demo` starts it
next to the three workers), fed from memory:

* **Released aggregates**: a follower of `stats.aggregates` (its own consumer, no group:
  every partition, from `FOLLOW_HORIZON_S` back) keeps the latest windows of every metric in
  an `AggregateBoard` (bounded: 30 windows per metric and size, 1000 cells per window). Only
  released records are ever shown.
* **Pipeline counters**: every `SAMPLE_INTERVAL_S` the dashboard reads the /metrics of the
  workers named by `--peers` (base URLs), adds them up and keeps 10 minutes of samples in a
  `PipelineHistory`, from which rates are computed.
* `GET /dashboard` is the page (static HTML, CSS and vanilla JS from this package, no
  external asset), which polls `GET /dashboard/data.json` every 2 s and draws SVG charts.

A follower or peer failure is shown on the page and retried. The process stops cleanly on
SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import logging.config
import signal

import click

from stream.local.dashboard.server import (
    FOLLOW_HORIZON_S,
    SAMPLE_INTERVAL_S,
    AggregateFollower,
    Dashboard,
    PipelineSampler,
    serve,
    web_app,
)

DEFAULT_PORT = 6060
"""Port of `anonstream dashboard` without `--port`."""

__all__ = [
    "DEFAULT_PORT",
    "FOLLOW_HORIZON_S",
    "SAMPLE_INTERVAL_S",
    "AggregateFollower",
    "Dashboard",
    "PipelineSampler",
    "dashboard_cli",
    "parse_peers",
    "web_app",
]


def parse_peers(value: str) -> list[str]:
    """Comma-separated http(s)://host:port base URLs (trailing slashes dropped); ValueError
    naming the first that is not one."""
    peers = [p.strip().rstrip("/") for p in value.split(",") if p.strip()]
    for peer in peers:
        if not peer.startswith(("http://", "https://")):
            raise ValueError(
                f"must be a comma-separated list of http(s)://host:port URLs; got {peer!r}"
            )
    return peers


def _peers_option(ctx: click.Context, param: click.Parameter, value: str) -> list[str]:
    try:
        return parse_peers(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("dashboard")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="Port to serve on (0: any free port).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on.")
@click.option(
    "--peers",
    default="",
    callback=_peers_option,
    help="Comma-separated base URLs (http://host:port) of the workers whose /metrics the "
    "dashboard adds up.",
)
@click.option(
    "--bootstrap-servers",
    default=None,
    help="Kafka brokers (host:port,...) to read stats.aggregates from "
    "(default: ANONSTREAM_BOOTSTRAP_SERVERS).",
)
def dashboard_cli(port: int, host: str, peers: list[str], bootstrap_servers: str | None) -> None:
    """Serve a page of the released aggregates and the workers' counters, until Ctrl-C."""
    from stream.logs import logging_config
    from stream.settings import load_settings

    overrides = {"bootstrap_servers": bootstrap_servers} if bootstrap_servers else {}
    settings = load_settings(**overrides)
    logging.config.dictConfig(logging_config("info"))
    dashboard = Dashboard(settings, peers=peers)

    def listening(bound: int) -> None:
        click.echo(f"dashboard http://{host}:{bound}/dashboard", nl=True)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await serve(dashboard, host=host, port=port, stop=stop, on_listening=listening)

    asyncio.run(run())
