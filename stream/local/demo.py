"""`anonstream demo`: the whole pipeline on a local broker, with generated traffic.

Starts a fresh local Kafka broker, creates the topics, starts each stage as its own worker
process (as in production: `anonstream worker --stage S`), the dashboard next to them
(`anonstream dashboard`, its own process, summing the workers' /metrics), then the traffic
generator; shows a live view (released aggregates, events/s in and out, drops by reason,
suppressed cells) and the dashboard's address; stops everything on Ctrl-C or after
`--duration` seconds, leaving no process behind.

The demo runs the shipped default policy with these changes, written to
`<data-dir>/demo-policy.toml` and named in its `policy_version` (`demo`): release mode
exact (k 10; 20 for search terms) with every metric at every window size, and allowed
lateness and idle timeout of 10 s instead of 1 minute, so that a 1-minute window is released
about 10 s after it ends and the first aggregates show within two minutes of the start.
The shipped dp mode releases hourly and daily figures, spending a daily budget per person:
minute windows of a few minutes' traffic would show next to nothing (`anonstream policy
plan` on the demo's traffic says how much). The caps and everything else stay as shipped.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import click
import orjson

from stream.health.metrics import labelled, parse_samples
from stream.local import processes
from stream.local.broker import free_port, running_broker
from stream.settings import Settings, load_settings
from stream.tables.keyring import write_key_encryption_key

DEMO_STAGES: tuple[str, ...] = ("anonymize", "aggregate", "release")
"""Stages the demo runs, in start order."""
DASHBOARD = "dashboard"
"""Name of the demo's dashboard process (`anonstream dashboard`)."""
DEMO_POLICY_CHANGES: dict[str, tuple[str, str]] = {
    "policy_version": ('policy_version = "default"', 'policy_version = "demo"'),
    "aggregation.allowed_lateness": ('allowed_lateness = "1m"', 'allowed_lateness = "10s"'),
    "aggregation.idle_timeout": ('idle_timeout = "1m"', 'idle_timeout = "10s"'),
    "release.mode": ('mode = "dp"', 'mode = "exact"'),
}
DEMO_ALL_WINDOWS: tuple[str, ...] = (
    'windows = ["1h", "1d"]',
    'windows = ["1m"]',
    'windows = ["1d"]',
)
"""Metric window lines of the default the demo drops (every metric at every window size)."""
"""The demo policy: the default's TOML with these lines replaced (see module doc)."""
REFRESH_S = 2.0
"""How often the live view is refreshed."""
PLAIN_STATUS_EVERY_S = 10.0
"""Without a terminal, a status line this often (and each new released window)."""
RELEASE_EXPECTED_WITHIN_S = 120.0
"""A demo running at least this long must have released aggregates, or it exits 1."""


def write_demo_policy(path: Path) -> Path:
    """Write the demo policy (see module doc) to `path`, check it, and return `path`."""
    from anonymizers.policy import load_policy, render_default_policy_toml

    text = render_default_policy_toml()
    for name, (before, after) in DEMO_POLICY_CHANGES.items():
        if text.count(before) != 1:
            raise click.ClickException(f"demo policy: cannot set {name} (default policy changed)")
        text = text.replace(before, after)
    for line in DEMO_ALL_WINDOWS:
        if line not in text:
            raise click.ClickException("demo policy: cannot set metric windows (default changed)")
        text = text.replace(f"{line}\n", "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    load_policy(path)  # raises PolicyError listing every problem
    return path


@dataclass
class DemoProcess:
    """A child of the demo: a stage worker, the dashboard or the generator."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    web_port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"


@dataclass
class Demo:
    """The running pipeline's children (workers, dashboard, generator)."""

    settings: Settings
    home: Path
    children: list[DemoProcess] = field(default_factory=list)

    def workers(self) -> list[DemoProcess]:
        return [child for child in self.children if child.name in DEMO_STAGES]

    def worker(self, stage: str) -> DemoProcess:
        return next(child for child in self.workers() if child.name == stage)

    def dashboard(self) -> DemoProcess | None:
        return next((child for child in self.children if child.name == DASHBOARD), None)

    @property
    def dashboard_url(self) -> str:
        dashboard = self.dashboard()
        return f"{dashboard.url}/dashboard" if dashboard is not None else "(not started)"

    def start_workers(self, *, loglevel: str = "info") -> None:
        """One worker per stage, each serving its endpoints on a port of its own."""
        for stage in DEMO_STAGES:
            port = free_port()
            log = self.home / "logs" / f"{stage}.log"
            process = processes.spawn_worker(
                self.settings, stage, web_port=port, log=log, loglevel=loglevel
            )
            self.children.append(DemoProcess(stage, process, log, port))

    def start_dashboard(self) -> DemoProcess:
        """`anonstream dashboard` on a free port, adding up the workers' /metrics."""
        port = free_port()
        log = self.home / "logs" / "dashboard.log"
        peers = ",".join(worker.url for worker in self.workers())
        args = ["dashboard", "--port", str(port), "--peers", peers]
        child = DemoProcess(DASHBOARD, processes.spawn(self.settings, args, log=log), log, port)
        self.children.append(child)
        return child

    def start_generator(self, *, rate: int, duration_s: float, args: tuple[str, ...] = ()) -> None:
        log = self.home / "logs" / "generate.log"
        gen_args = ["generate", "--to", "kafka", "--rate", str(rate)]
        # The generator's own default is 10 s; 0 means "until stopped" here.
        gen_args += ["--duration", str(duration_s if duration_s else 365 * 86400.0), *args]
        process = processes.spawn(self.settings, gen_args, log=log)
        self.children.append(DemoProcess("generate", process, log))

    def check_alive(self) -> None:
        """ClickException with the end of its log if a worker or the dashboard exited."""
        for child in self.children:
            code = child.process.poll()
            if code is not None and child.web_port is not None:
                what = f"{child.name} worker" if child.name in DEMO_STAGES else child.name
                tail = child.log.read_text(errors="replace")[-2000:]
                raise click.ClickException(f"{what} exited with {code}; its log ends:\n{tail}")

    def stop_all(self) -> None:
        # The generator first (it flushes), then the dashboard, then workers in reverse start
        # order (they commit).
        for child in reversed(self.children):
            processes.stop(child.process, timeout_s=20)

    def running(self) -> list[int]:
        """Pids of children still running (none after `stop_all`)."""
        return [c.process.pid for c in self.children if c.process.poll() is None]


def start_pipeline(settings: Settings, *, home: Path, loglevel: str = "info") -> Demo:
    """Create the topics and start one worker per stage (the caller stops them)."""
    from stream.topics import create_topics, topic_specs

    create_topics(settings, topic_specs(settings))
    demo = Demo(settings, home)
    try:
        demo.start_workers(loglevel=loglevel)
    except BaseException:
        demo.stop_all()
        raise
    return demo


# ------------------------------------------------------------------------------ reading
def _get(url: str, *, timeout_s: float = 1.5) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - loopback
            body: bytes = response.read()
            return body
    except OSError:
        return None


def scrape(port: int) -> dict[str, float]:
    """A worker's /metrics as {"name{labels}": value}; {} when it does not answer."""
    body = _get(f"http://127.0.0.1:{port}/metrics")
    return parse_samples(body.decode()) if body is not None else {}


def dashboard_data(demo: Demo) -> dict[str, Any]:
    """The dashboard's /dashboard/data.json; {} when it does not answer."""
    if demo.dashboard() is None:
        return {}
    body = _get(f"{demo.dashboard_url}/data.json")
    if body is None:
        return {}
    with contextlib.suppress(orjson.JSONDecodeError):
        data = orjson.loads(body)
        if isinstance(data, dict):
            return data
    return {}


@dataclass
class Snapshot:
    """What the view shows at one moment."""

    elapsed_s: float
    metrics: dict[str, dict[str, float]]  # stage -> samples
    data: dict[str, Any]


@dataclass
class Rates:
    """Events/s between two snapshots."""

    previous: dict[str, float] = field(default_factory=dict)

    def update(self, elapsed_s: float, values: Mapping[str, float]) -> dict[str, float]:
        dt = elapsed_s - self.previous.get("t", 0.0)
        out = {
            name: max(0.0, value - self.previous.get(name, 0.0)) / dt if dt > 0 else 0.0
            for name, value in values.items()
        }
        self.previous = {"t": elapsed_s, **values}
        return out


# ------------------------------------------------------------------------------ the view
def _n(value: float) -> str:
    return f"{int(value):,}".replace(",", " ")


def _brief(counts: Mapping[str, float], *, limit: int = 8) -> str:
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    return " · ".join(f"{name} {_n(value)}" for name, value in ranked) or "none"


def _hhmm(iso: str) -> str:
    return iso[11:16]


def _short(label: str) -> str:
    for scheme in ("https://", "http://"):
        if label.startswith(scheme):
            path = label[len(scheme) :].partition("/")[2]
            return "/" + path
    return label


def _cell_text(metric: str, entry: Mapping[str, Any]) -> str:
    value = entry.get("value")
    label = _short(str(entry.get("label")))
    if metric == "searches":
        label = f'"{label}"'
    if isinstance(value, Mapping):
        p50 = value.get("p50") if value.get("p50") is not None else value.get("mean")
        return f"{label} p50 {float(p50 or 0) / 1000:.0f}s"
    return f"{label} {_n(float(value or 0))}"


def aggregate_lines(data: Mapping[str, Any], *, top: int = 3) -> list[str]:
    """The latest released window of each metric: cells, other, top cells."""
    aggregates = data.get("aggregates") or {}
    metrics: dict[str, Any] = aggregates.get("metrics") or {}
    seconds = aggregates.get("window_seconds")
    if not metrics:
        return ["released  nothing yet (a 1-minute window is released ~10 s after it ends)"]
    size = f"{seconds // 60}-minute" if seconds and seconds % 60 == 0 else f"{seconds}-second"
    lines = [f"released  latest {size} windows (UTC) per metric: cells released, other, top"]
    for name, metric in metrics.items():
        windows = metric.get("windows") or []
        if not windows:
            continue
        window = windows[-1]
        other = window.get("other")
        other_text = ""
        if isinstance(other, int | float):
            other_text = f"other {_n(other)}"
        elif isinstance(other, Mapping):
            other_text = f"other n={_n(float(other.get('count') or 0))}"
        cells = " · ".join(_cell_text(name, entry) for entry in window.get("top", [])[:top])
        lines.append(
            f"  {name:<23} {_hhmm(window['start'])} {window['released_cells']:>4} cells "
            f"{other_text:<14} {cells}"
        )
    return lines


def view_lines(
    snapshot: Snapshot, rates: Mapping[str, float], *, duration_s: float, dashboard: str
) -> list[str]:
    """The live view (see module doc), one string per line, not cut to the terminal."""
    total: dict[str, float] = {}
    for samples in snapshot.metrics.values():
        for name, value in samples.items():
            total[name] = total.get(name, 0.0) + value
    limit = f" of {duration_s:.0f}s" if duration_s else " (Ctrl-C stops)"
    workers = []
    for stage, samples in snapshot.metrics.items():
        if not samples:
            workers.append(f"{stage} starting")
            continue
        lag = labelled(samples, "anonstream_consumer_lag", "partition")
        state = "ready" if samples.get("anonstream_ready") == 1.0 else "not ready"
        if samples.get("anonstream_alive", 1.0) != 1.0:
            state = "UNHEALTHY"
        workers.append(f"{stage} {state}, lag {_n(sum(lag.values()))}")
    dropped = labelled(total, "anonstream_events_dropped_total", "reason")
    dead = labelled(total, "anonstream_events_deadlettered_total", "reason")
    suppressed = labelled(total, "anonstream_cells_suppressed_total", "reason")
    consumed = total.get("anonstream_events_consumed_total", 0.0)
    forwarded = total.get("anonstream_events_forwarded_total", 0.0)
    return [
        f"anonstream demo  {snapshot.elapsed_s:.0f}s{limit}   dashboard {dashboard}",
        "workers   " + " · ".join(workers),
        f"events    in {rates.get('in', 0):.0f}/s ({_n(consumed)})   "
        f"anonymized out {rates.get('out', 0):.0f}/s ({_n(forwarded)})   "
        f"dropped {_n(sum(dropped.values()))}   dead-lettered {_n(sum(dead.values()))}",
        f"drops     {_brief(dropped)}",
        f"dead      {_brief(dead)}",
        f"release   {_n(total.get('anonstream_windows_decided_total', 0))} window decisions · "
        f"{_n(total.get('anonstream_cells_released_total', 0))} cells released · "
        f"{_n(suppressed.get('below_k', 0))} suppressed below k · "
        f"{_n(suppressed.get('complementary', 0))} held back to protect them · "
        f"{_n(total.get('anonstream_aggregates_released_total', 0))} records published",
        *aggregate_lines(snapshot.data),
    ]


def latest_window(data: Mapping[str, Any]) -> str | None:
    """Start of the latest released window of any metric, or None."""
    metrics = (data.get("aggregates") or {}).get("metrics") or {}
    starts = [m["windows"][-1]["start"] for m in metrics.values() if m.get("windows")]
    return max(starts, default=None)


class Screen:
    """Redraws the view in place on a terminal; prints now and then otherwise."""

    def __init__(self, *, tty: bool) -> None:
        self.tty = tty
        self._drawn = 0
        self._last_plain = -PLAIN_STATUS_EVERY_S
        self._last_window: str | None = None

    def show(self, lines: list[str], *, elapsed_s: float, window: str | None) -> None:
        if self.tty:
            width = shutil.get_terminal_size((120, 40)).columns
            cut = [line[: width - 1] for line in lines]
            up = f"\x1b[{self._drawn}F" if self._drawn else ""
            sys.stdout.write(up + "\x1b[J" + "\n".join(cut) + "\n")
            sys.stdout.flush()
            self._drawn = len(cut)
            return
        if window is not None and window != self._last_window:
            self._last_window = window
            click.echo("\n".join(lines))
            self._last_plain = elapsed_s
        elif elapsed_s - self._last_plain >= PLAIN_STATUS_EVERY_S:
            click.echo(f"[{elapsed_s:4.0f}s] {lines[1]} | {lines[2]}")
            self._last_plain = elapsed_s


def snapshot(demo: Demo, elapsed_s: float) -> Snapshot:
    metrics = {child.name: scrape(child.web_port) for child in demo.workers() if child.web_port}
    return Snapshot(elapsed_s=elapsed_s, metrics=metrics, data=dashboard_data(demo))


def watch(demo: Demo, *, duration_s: float, screen: Screen) -> Snapshot:
    """Refresh the view until `duration_s` (0: until Ctrl-C); return the last snapshot."""
    started = time.monotonic()
    rates = Rates()
    last = Snapshot(0.0, {}, {})
    while True:
        time.sleep(REFRESH_S)
        demo.check_alive()
        elapsed = time.monotonic() - started
        last = snapshot(demo, elapsed)
        anonymize = last.metrics.get("anonymize", {})
        per_s = rates.update(
            elapsed,
            {
                "in": anonymize.get("anonstream_events_consumed_total", 0.0),
                "out": anonymize.get("anonstream_events_forwarded_total", 0.0),
            },
        )
        lines = view_lines(last, per_s, duration_s=duration_s, dashboard=demo.dashboard_url)
        screen.show(lines, elapsed_s=elapsed, window=latest_window(last.data))
        if duration_s and elapsed >= duration_s:
            return last


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
    """Run the demo; return the exit status: 0 when it ran and stopped cleanly (and, when it
    ran `RELEASE_EXPECTED_WITHIN_S` or longer, released aggregates)."""
    home = home.resolve()
    policy = write_demo_policy(home / "demo-policy.toml")
    last: Snapshot | None = None
    interrupted = False
    with _sigterm_as_interrupt(), running_broker(home / "broker", partitions=partitions) as broker:
        settings = load_settings(
            bootstrap_servers=broker.bootstrap,
            data_dir=home / "state",
            partitions=partitions,
            policy_path=policy,
            # The demo's own key-encryption key (production mounts one from a secret).
            key_encryption_key_file=write_key_encryption_key(home / "key-encryption-key"),
        )
        click.echo(f"broker    {broker.bootstrap} pid {broker.pid} (log {broker.log_file})")
        click.echo(f"policy    {policy} (default, lateness and idle timeout 10 s)")
        demo = start_pipeline(settings, home=home)
        try:
            for child in demo.workers():
                click.echo(
                    f"worker    {child.name:<10} pid {child.process.pid:<7} {child.url}/metrics "
                    f"/healthz /readyz  (log {child.log})"
                )
            dashboard = demo.start_dashboard()
            demo.start_generator(rate=rate, duration_s=duration_s)
            generator = demo.children[-1]
            click.echo(
                f"traffic   {rate} events/s pid {generator.process.pid} (log {generator.log})"
            )
            click.echo(
                f"dashboard {demo.dashboard_url} pid {dashboard.process.pid} (log {dashboard.log})"
            )
            screen = Screen(tty=sys.stdout.isatty())
            last = watch(demo, duration_s=duration_s, screen=screen)
        except KeyboardInterrupt:
            interrupted = True
            click.echo("stopping ...")
        finally:
            demo.stop_all()
            left = demo.running()
    if left:
        click.echo(f"error: processes still running: {left}", err=True)
        return 1
    click.echo("demo stopped; nothing left running")
    if last is not None:
        released = sum(
            last.metrics.get("release", {}).get(name, 0.0)
            for name in ("anonstream_aggregates_released_total",)
        )
        click.echo(
            f"released  {_n(released)} aggregate records; latest window "
            f"{latest_window(last.data) or 'none'}"
        )
        if not interrupted and duration_s >= RELEASE_EXPECTED_WITHIN_S and not released:
            click.echo(
                f"error: no aggregate released within {duration_s:.0f}s; see {home / 'logs'}",
                err=True,
            )
            return 1
    return 0


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
    help="Where the demo's broker, policy and logs live.",
)
def demo_cli(duration: float, rate: int, data_dir: Path) -> None:
    """Run the pipeline end to end on a local broker with generated traffic."""
    raise SystemExit(run_demo(duration_s=duration, rate=rate, home=data_dir))
