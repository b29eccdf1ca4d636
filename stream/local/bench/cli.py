"""`anonstream bench`: the anonymize worker end to end, beside a ceiling and a peer, in one run.

Starts a local broker (or uses `--bootstrap`), generates traffic with `anonstream generate`
(fixed seed), pre-fills two input topics (6 partitions): one item per message, and valid
events in 50-event JSON arrays. Then measures each row as one process of its own (see
`stream.local.bench.rows`), the aggregate and release stages on the worker rows' output
(`stream.local.bench.stages`) and the worker's latency at half its rate
(`stream.local.bench.latency`), and prints one table: events/s, the ratio to the ceiling, to
the Quix peer and to the anonymize worker of the same input, CPU seconds per 100,000 events,
peak RSS, start-up; the latency row on a line below it. With `--json`, one JSON object on
the last line.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import click
import orjson

from stream.local.bench.exceptions import BenchError
from stream.local.bench.latency import LatencyResult, latency_row
from stream.local.bench.rows import Bench, Input, RowResult, Tree
from stream.local.bench.stages import aggregate_row, release_row
from stream.local.bench.traffic import generate, prefill
from stream.local.bench.venv import default_peer_python, ensure_peer_python
from stream.settings import Settings

FULL_EVENTS = 500_000
QUICK_EVENTS = 100_000
SEED = 17
FAMILIES = ("ceiling", "faust", "quix", "worker", "aggregate", "release", "latency")
NEEDS = {"aggregate": "worker", "release": "aggregate", "latency": "worker"}
"""Rows that read another row's output (or rate)."""
QUICK_LATENCY_S = 20.0
FULL_LATENCY_S = 60.0


def _progress(line: str) -> None:
    click.echo(f"[bench {time.strftime('%H:%M:%S')}] {line}", err=True)


def geo_database(settings: Settings) -> Path:
    """The .mmdb the worker opens by default (`stream.resources.open_geo`)."""
    if settings.geo_db_path is not None:
        return Path(settings.geo_db_path)
    from anonymizers.geo.bundled import default_database_path

    path = default_database_path()
    if path is None:
        raise BenchError("no .mmdb: set ANONSTREAM_GEO_DB_PATH or install maxminddb-geolite2")
    return path


@contextmanager
def broker(bootstrap: str | None, home: Path) -> Iterator[str]:
    """`bootstrap`, or a local broker started for the run (stopped after it)."""
    if bootstrap:
        yield bootstrap
        return
    from stream.local.broker import running_broker

    _progress("starting a local broker ...")
    with running_broker(home / "broker", partitions=6) as state:
        yield state.bootstrap


# ------------------------------------------------------------------------------- output
def ratio(value: float, reference: float | None) -> str:
    return f"{value / reference:.2f}" if reference else "-"


REFERENCES = ("ceiling", "quix", "worker")
"""The rows every row is compared with, on the same input: x ceiling, x peer, x worker."""


def references(results: list[RowResult], row: RowResult) -> list[float | None]:
    """events/s of the ceiling, the Quix peer and the anonymize worker on `row`'s input."""
    by_name = {r.name: r for r in results}
    kind = "batch50" if "batch50" in row.name else "single"
    found = [by_name.get(f"{family}_{kind}") for family in REFERENCES]
    return [reference.events_per_s if reference else None for reference in found]


def table(results: list[RowResult]) -> str:
    """One aligned table; ratios to the ceiling, the Quix peer and the worker of the input."""
    header = (
        "row",
        "events",
        "events/s",
        "x ceiling",
        "x peer(quix)",
        "x worker",
        "CPU s/100k ev",
        "RSS MB",
        "start-up s",
    )
    lines: list[tuple[str, ...]] = [header]
    for r in results:
        lines.append(
            (
                r.name,
                f"{r.events}",
                f"{r.events_per_s:,.0f}",
                *(ratio(r.events_per_s, reference) for reference in references(results, r)),
                f"{r.cpu_s_per_100k:.1f}",
                f"{r.rss_mb:.0f}",
                f"{r.startup_s:.1f}" if r.startup_s is not None else "-",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    )


def notes(results: list[RowResult], latency: LatencyResult | None) -> list[str]:
    """Lines under the table: what the release rows count, the latency row."""
    out = [
        f"{r.name}: events/s counts the {r.events:,} events aggregated into the "
        f"{r.figures['partials']:,} partial records it read ({r.figures['partials_per_s']:,.0f} "
        "partials/s)"
        for r in results
        if r.name.startswith("release_")
    ]
    if latency is not None:
        out.append(latency.line())
    return out


def figures(
    results: list[RowResult],
    inputs: list[Input],
    latency: LatencyResult | None = None,
    **run: Any,
) -> dict[str, Any]:
    """The JSON object: `<row>_events_per_s` etc. for every row, and the run's inputs."""
    out: dict[str, Any] = dict(run)
    for source in inputs:
        out[f"expected_{source.kind}_messages"] = source.messages
        out[f"expected_{source.kind}_items"] = source.items
    for r in results:
        out[f"{r.name}_events"] = r.events
        out[f"{r.name}_seconds"] = round(r.seconds, 3)
        out[f"{r.name}_events_per_s"] = round(r.events_per_s, 1)
        out[f"{r.name}_cpu_s_per_100k_events"] = round(r.cpu_s_per_100k, 2)
        out[f"{r.name}_rss_mb"] = round(r.rss_mb, 1)
        if r.startup_s is not None:
            out[f"{r.name}_startup_s"] = round(r.startup_s, 2)
        if r.consumed is not None:
            out[f"{r.name}_consumed"] = r.consumed
        for family, reference in zip(REFERENCES, references(results, r), strict=True):
            if reference and not r.name.startswith(f"{family}_"):
                out[f"{r.name}_x_{family}"] = round(r.events_per_s / reference, 3)
        for key, value in r.figures.items():
            out[f"{r.name}_{key}"] = value
    if latency is not None:
        out.update(latency.figures())
    return out


# ------------------------------------------------------------------------------- command
@click.command("bench")
@click.option("--quick", is_flag=True, help=f"{QUICK_EVENTS} events.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on the last line.")
@click.option("--bootstrap", default=None, help="Use this broker instead of starting one.")
@click.option(
    "--events",
    type=click.IntRange(min=100),
    default=None,
    help=f"Events to generate (default {FULL_EVENTS}; {QUICK_EVENTS} with --quick).",
)
@click.option("--seed", type=int, default=SEED, show_default=True, help="Traffic seed.")
@click.option(
    "--peer-python",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Interpreter with quixstreams (default build/bench-venv/bin/python, created if absent).",
)
@click.option(
    "--rows",
    "families",
    default=",".join(FAMILIES),
    show_default=True,
    help="Which rows to run (comma-separated of "
    + ", ".join(FAMILIES)
    + "); aggregate and latency need worker, release needs aggregate.",
)
@click.option(
    "--latency-seconds",
    type=click.FloatRange(min=1),
    default=None,
    help=f"Measured period of the latency row (default {FULL_LATENCY_S:.0f}; "
    f"{QUICK_LATENCY_S:.0f} with --quick).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 6),
    default=1,
    show_default=True,
    help="Above 1: also scaling rows, that many anonymize (and aggregate) worker processes "
    "in one group.",
)
@click.option(
    "--compare",
    "compare",
    multiple=True,
    metavar="LABEL=DIR",
    help="Also run the worker rows on another source tree (an earlier checkout, for before "
    "and after in one run), as rows worker-LABEL; repeatable.",
)
@click.option("--keep", is_flag=True, help="Keep the run's directory (logs, figures, traffic).")
def bench_cli(
    quick: bool,
    as_json: bool,
    bootstrap: str | None,
    events: int | None,
    seed: int,
    peer_python: Path | None,
    families: str,
    latency_seconds: float | None,
    workers: int,
    compare: tuple[str, ...],
    keep: bool,
) -> None:
    """Measure the anonymize worker end to end beside a ceiling and a Quix Streams peer.

    Rows (each one process, each its own consumer group, reading the same pre-filled topics):
    ceiling (aiokafka getmany + orjson decode), faust (a bare agent), quix (a Quix Streams
    anonymizer), worker (`anonstream worker --stage anonymize`), on one event per message
    (single) and on 50-event arrays (batch50); aggregate and release (those stages on the
    worker's and then the aggregate stage's output); latency (the worker's, at half the
    worker_single rate). Progress goes to stderr.
    """
    from stream.settings import load_settings

    chosen = _rows(families)
    trees = [_tree(spec) for spec in compare]
    if trees and "worker" not in chosen:
        raise click.BadParameter(
            "compares worker rows: needs worker in --rows", param_hint="--compare"
        )
    count = events or (QUICK_EVENTS if quick else FULL_EVENTS)
    latency_s = latency_seconds or (QUICK_LATENCY_S if quick else FULL_LATENCY_S)
    workdir = Path(tempfile.mkdtemp(prefix="anonstream-bench-"))
    try:
        settings = load_settings()
        peer = None
        if "quix" in chosen:
            peer = ensure_peer_python(
                peer_python or default_peer_python(),
                create=peer_python is None,
                progress=_progress,
            )
        with broker(bootstrap, workdir) as address:
            settings = settings.model_copy(update={"bootstrap_servers": address})
            report = run(
                settings,
                workdir,
                events=count,
                seed=seed,
                families=chosen,
                workers=workers,
                peer_python=peer,
                latency_s=latency_s,
                trees=trees,
            )
    finally:
        if keep:
            _progress(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    click.echo(table(report.results))
    for note in notes(report.results, report.latency):
        click.echo(note)
    for problem in report.problems:
        click.echo(f"problem: {problem}", err=True)
    if as_json:
        payload = figures(
            report.results,
            report.inputs,
            report.latency,
            events=count,
            seed=seed,
            quick=quick,
            problems=report.problems,
        )
        click.echo(orjson.dumps(payload).decode())
    if report.problems:
        sys.exit(1)


def _rows(families: str) -> list[str]:
    """The row families of --rows, checked: known, and each with the rows it reads from."""
    chosen = [f.strip() for f in families.split(",") if f.strip()]
    unknown = sorted(set(chosen) - set(FAMILIES))
    if unknown:
        raise click.BadParameter(
            f"must be among {', '.join(FAMILIES)}; got {', '.join(unknown)}", param_hint="--rows"
        )
    missing = [f"{row} needs {NEEDS[row]}" for row in chosen if NEEDS.get(row, row) not in chosen]
    if missing:
        raise click.BadParameter("; ".join(missing), param_hint="--rows")
    return chosen


def _tree(spec: str) -> Tree:
    """`LABEL=DIR` of --compare: a directory holding anonstream's packages."""
    label, _, directory = spec.partition("=")
    path = Path(directory).expanduser()
    if not label or not directory or not label.replace("-", "").isalnum():
        raise click.BadParameter(
            f"{spec!r}: expected LABEL=DIR, LABEL letters, digits, -", param_hint="--compare"
        )
    if not (path / "anonymizers" / "chain.py").is_file():
        raise click.BadParameter(f"{directory}: no anonymizers/chain in it", param_hint="--compare")
    return Tree(label, path.resolve())


@dataclass
class Report:
    """What a run measured: the rows, the latency row, the inputs, the rows that failed."""

    results: list[RowResult]
    inputs: list[Input]
    problems: list[str]
    latency: LatencyResult | None = None


def run(
    settings: Settings,
    workdir: Path,
    *,
    events: int,
    seed: int,
    families: list[str],
    workers: int,
    peer_python: Path | None,
    latency_s: float = QUICK_LATENCY_S,
    trees: Sequence[Tree] = (),
) -> Report:
    """Generate, pre-fill, run every row (a row that fails is a problem; the rows that read
    its output fail too)."""
    traffic = generate(settings, workdir, events=events, seed=seed, progress=_progress)
    bench = Bench(
        settings=settings,
        workdir=workdir,
        progress=_progress,
        peer_python=peer_python,
        mmdb=geo_database(settings) if "quix" in families else None,
    )
    inputs = []
    for kind, messages in (("single", traffic.single), ("batch50", traffic.batch50)):
        topic = bench.name("in", kind)
        _progress(f"pre-filling {topic} ({len(messages)} messages) ...")
        prefill(settings, topic, messages, progress=_progress)
        inputs.append(Input(kind, topic, len(messages), traffic.items(messages)))
    results: list[RowResult] = []
    problems: list[str] = []
    steps: list[tuple[str, Callable[[], RowResult]]] = []
    consent = traffic.consent_path
    for source in inputs:
        if "ceiling" in families:
            steps.append(("ceiling", partial(bench.ceiling, source)))
        if "faust" in families:
            steps.append(("faust", partial(bench.faust, source)))
        if "quix" in families:
            steps.append(("quix", partial(bench.quix, source)))
        if "worker" in families:
            steps.append(("worker", partial(bench.worker, source, consent=consent)))
            if workers > 1:
                steps.append(
                    ("worker", partial(bench.worker, source, consent=consent, workers=workers))
                )
            for tree in trees:
                steps.append(("worker", partial(bench.worker, source, consent=consent, tree=tree)))
        if "aggregate" in families:
            steps.append(("aggregate", partial(aggregate_row, bench, source.kind)))
            if workers > 1:
                steps.append(
                    ("aggregate", partial(aggregate_row, bench, source.kind, workers=workers))
                )
        if "release" in families:
            steps.append(("release", partial(release_row, bench, source.kind)))
    for family, step in steps:
        try:
            result = step()
        except BenchError as exc:
            problems.append(f"{family}: {exc}")
            _progress(f"  failed: {exc}")
            continue
        results.append(result)
        _progress(f"  {result.name}: {result.events} events, {result.events_per_s:,.0f}/s")
    report = Report(results=results, inputs=inputs, problems=problems)
    if "latency" in families:
        try:
            report.latency = latency_row(bench, traffic.single, consent=consent, seconds=latency_s)
            _progress(f"  {report.latency.line()}")
        except BenchError as exc:
            problems.append(f"latency: {exc}")
            _progress(f"  failed: {exc}")
    return report
