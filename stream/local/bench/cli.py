"""`anonstream bench`: the anonymize worker end to end, beside a ceiling and a peer, in one run.

Starts a local broker (or uses `--bootstrap`), generates traffic with `anonstream generate`
(fixed seed), pre-fills two input topics (6 partitions): one item per message, and valid
events in 50-event JSON arrays. Then measures each row as one process of its own (see
`stream.local.bench.rows`) and prints one table: events/s, the ratio to the ceiling and to
the Quix peer of the same input, CPU seconds per 100,000 events, peak RSS, the worker's
start-up. With `--json`, one JSON object on the last line.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import click
import orjson

from stream.local.bench.exceptions import BenchError
from stream.local.bench.rows import Bench, Input, RowResult
from stream.local.bench.traffic import generate, prefill
from stream.local.bench.venv import default_peer_python, ensure_peer_python
from stream.settings import Settings

FULL_EVENTS = 500_000
QUICK_EVENTS = 100_000
SEED = 17
FAMILIES = ("ceiling", "faust", "quix", "worker")


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


def table(results: list[RowResult]) -> str:
    """One aligned table; ratios to the ceiling and the Quix peer of the same input."""
    by_name = {r.name: r for r in results}
    header = (
        "row",
        "events",
        "events/s",
        "x ceiling",
        "x peer(quix)",
        "CPU s/100k ev",
        "RSS MB",
        "start-up s",
    )
    lines = [header]
    for r in results:
        kind = "batch50" if "batch50" in r.name else "single"
        ceiling = by_name.get(f"ceiling_{kind}")
        peer = by_name.get(f"quix_{kind}")
        lines.append(
            (
                r.name,
                f"{r.events}",
                f"{r.events_per_s:,.0f}",
                ratio(r.events_per_s, ceiling.events_per_s if ceiling else None),
                ratio(r.events_per_s, peer.events_per_s if peer else None),
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


def figures(results: list[RowResult], inputs: list[Input], **run: Any) -> dict[str, Any]:
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
    help="Which rows to run (comma-separated of ceiling, faust, quix, worker).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 6),
    default=1,
    show_default=True,
    help="Above 1: also a scaling row, that many worker processes in one group.",
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
    workers: int,
    keep: bool,
) -> None:
    """Measure the anonymize worker end to end beside a ceiling and a Quix Streams peer.

    Rows (each one process, each its own consumer group, reading the same pre-filled topics):
    ceiling (aiokafka getmany + orjson decode), faust (a bare agent), quix (a Quix Streams
    anonymizer), worker (`anonstream worker --stage anonymize`), on one event per message
    (single) and on 50-event arrays (batch50). Progress goes to stderr.
    """
    from stream.settings import load_settings

    chosen = [f.strip() for f in families.split(",") if f.strip()]
    unknown = sorted(set(chosen) - set(FAMILIES))
    if unknown:
        raise click.BadParameter(
            f"must be among {', '.join(FAMILIES)}; got {', '.join(unknown)}", param_hint="--rows"
        )
    count = events or (QUICK_EVENTS if quick else FULL_EVENTS)
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
            results, inputs, problems = run(
                settings,
                workdir,
                events=count,
                seed=seed,
                families=chosen,
                workers=workers,
                peer_python=peer,
            )
    finally:
        if keep:
            _progress(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    click.echo(table(results))
    for problem in problems:
        click.echo(f"problem: {problem}", err=True)
    if as_json:
        payload = figures(results, inputs, events=count, seed=seed, quick=quick, problems=problems)
        click.echo(orjson.dumps(payload).decode())
    if problems:
        sys.exit(1)


def run(
    settings: Settings,
    workdir: Path,
    *,
    events: int,
    seed: int,
    families: list[str],
    workers: int,
    peer_python: Path | None,
) -> tuple[list[RowResult], list[Input], list[str]]:
    """Generate, pre-fill, run every row; (results, inputs, problems of rows that failed)."""
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
    for family, step in steps:
        try:
            result = step()
        except BenchError as exc:
            problems.append(f"{family}: {exc}")
            _progress(f"  failed: {exc}")
            continue
        results.append(result)
        _progress(f"  {result.name}: {result.events} events, {result.events_per_s:,.0f}/s")
    return results, inputs, problems
