"""`anonstream demo`: the whole pipeline on a local broker, with generated traffic.

Starts a fresh local Kafka broker, creates the topics, starts each stage as its own worker
process (as in production) and the traffic generator, shows what flows, and stops
everything on Ctrl-C or after `--duration` seconds, leaving no process behind.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import click

from stream import processes
from stream.broker import free_port, running_broker
from stream.settings import Settings, load_settings

DEMO_STAGES: tuple[str, ...] = ("anonymize",)
"""Stages the demo runs, in start order."""


@dataclass
class DemoProcess:
    """A child of the demo: a stage worker or the generator."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    web_port: int | None = None


@dataclass
class Demo:
    """The running demo's children."""

    settings: Settings
    children: list[DemoProcess] = field(default_factory=list)

    def workers(self) -> list[DemoProcess]:
        return [child for child in self.children if child.web_port is not None]

    def check_alive(self) -> None:
        for child in self.children:
            code = child.process.poll()
            if code is not None and child.web_port is not None:
                tail = child.log.read_text(errors="replace")[-2000:]
                raise click.ClickException(
                    f"{child.name} exited with {code}; its log ends:\n{tail}"
                )

    def stop_all(self) -> None:
        # The generator first (flush), then workers in reverse start order.
        for child in reversed(self.children):
            processes.stop(child.process, timeout_s=20)


def scrape(port: int) -> dict[str, float]:
    """A worker's /metrics as {"name{labels}": value}; {} when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as response:
            text = response.read().decode()
    except OSError:
        return {}
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                values[name] = float(value)
    return values


def _labelled(values: dict[str, float], prefix: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, value in values.items():
        if name.startswith(prefix + "{"):
            label = name[len(prefix) + 1 : -1].partition("=")[2].strip('"')
            out[label] = out.get(label, 0) + int(value)
    return out


def status_line(
    elapsed_s: float, metrics: list[dict[str, float]], previous: dict[str, float]
) -> str:
    """One line: events in and out per second, drops and dead letters by reason."""
    total: dict[str, float] = {}
    for values in metrics:
        for name, value in values.items():
            total[name] = total.get(name, 0.0) + value
    consumed = total.get("anonstream_events_consumed_total", 0.0)
    forwarded = total.get("anonstream_events_forwarded_total", 0.0)
    dt = max(1e-9, elapsed_s - previous.get("t", 0.0))
    rate_in = (consumed - previous.get("in", 0.0)) / dt
    rate_out = (forwarded - previous.get("out", 0.0)) / dt
    previous.update({"t": elapsed_s, "in": consumed, "out": forwarded})
    dropped = _labelled(total, "anonstream_events_dropped_total")
    dead = _labelled(total, "anonstream_events_deadlettered_total")
    return (
        f"[{elapsed_s:6.0f}s] in {int(consumed):>8} ({rate_in:7.0f}/s)  out {int(forwarded):>8} "
        f"({rate_out:7.0f}/s)  dropped {sum(dropped.values()):>6} {_brief(dropped)}  "
        f"dead-letter {sum(dead.values()):>5} {_brief(dead)}"
    )


def _brief(counts: dict[str, int]) -> str:
    return "{" + ", ".join(f"{k}:{v}" for k, v in sorted(counts.items())) + "}" if counts else ""


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C so the demo always cleans up its children."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_demo(*, duration_s: float, rate: int, home: Path, partitions: int = 4) -> int:
    """Run the demo; return the process exit status (0 when it ran and stopped cleanly)."""
    with _sigterm_as_interrupt(), running_broker(home / "broker", partitions=partitions) as broker:
        settings = load_settings(
            bootstrap_servers=broker.bootstrap, data_dir=home / "state", partitions=partitions
        )
        click.echo(f"broker   {broker.bootstrap} (log {broker.log_file})")
        from stream.topics import create_topics, topic_specs

        create_topics(settings, topic_specs(settings))
        demo = Demo(settings)
        try:
            for stage in DEMO_STAGES:
                port = free_port()
                log = home / "logs" / f"{stage}.log"
                process = processes.spawn_worker(settings, stage, web_port=port, log=log)
                demo.children.append(DemoProcess(stage, process, log, port))
                click.echo(
                    f"worker   {stage:<10} pid {process.pid}  http://127.0.0.1:{port}/metrics"
                )
            gen_log = home / "logs" / "generate.log"
            gen_args = ["generate", "--to", "kafka", "--rate", str(rate)]
            if duration_s:
                gen_args += ["--duration", str(duration_s)]
            generator = processes.spawn(settings, gen_args, log=gen_log)
            demo.children.append(DemoProcess("generate", generator, gen_log))
            click.echo(f"traffic  {rate} events/s (log {gen_log})")
            _watch(demo, duration_s=duration_s)
        except KeyboardInterrupt:
            click.echo("stopping ...")
        finally:
            demo.stop_all()
    click.echo("demo stopped; nothing left running")
    return 0


def _watch(demo: Demo, *, duration_s: float) -> None:
    started = time.monotonic()
    previous: dict[str, float] = {}
    while True:
        time.sleep(2.0)
        demo.check_alive()
        elapsed = time.monotonic() - started
        metrics = [scrape(child.web_port) for child in demo.workers() if child.web_port]
        click.echo(status_line(elapsed, metrics, previous))
        if duration_s and elapsed >= duration_s:
            return


@click.command("demo")
@click.option(
    "--duration",
    type=click.FloatRange(min=0),
    default=0.0,
    help="Stop after this many seconds (0: run until Ctrl-C).",
)
@click.option(
    "--rate", type=click.IntRange(min=1), default=200, help="Generated events per second."
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".anonstream/demo"),
    help="Where the demo's broker and logs live.",
)
def demo_cli(duration: float, rate: int, data_dir: Path) -> None:
    """Run the pipeline end to end on a local broker with generated traffic."""
    raise SystemExit(run_demo(duration_s=duration, rate=rate, home=data_dir))
