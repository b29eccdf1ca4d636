"""`anonstream generate`: realistic shop traffic to Kafka or to `.jsonl` files."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click
import orjson

from stream.local.traffic import generator as gen
from stream.local.traffic.people import DEFAULT_PEOPLE

if TYPE_CHECKING:
    from stream.settings import Settings

SHARE = click.FloatRange(0.0, 1.0)


def _parse_start(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        start = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"must be an ISO 8601 time with a zone, e.g. 2025-03-01T09:00:00Z; got {value!r}",
            param_hint="--start",
        ) from None
    if start.tzinfo is None:
        raise click.BadParameter(
            f"must carry a zone (Z or +hh:mm); got {value!r}", param_hint="--start"
        )
    return start


def _check_target(value: str) -> str:
    if value != "kafka" and not value.endswith(".jsonl"):
        raise click.BadParameter(
            f"must be 'kafka' or a path ending in .jsonl; got {value!r}", param_hint="--to"
        )
    return value


@contextmanager
def _stop_on_interrupt() -> Iterator[threading.Event]:
    """An event set by Ctrl-C (SIGINT), so output stops cleanly between two messages."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda _signum, _frame: stop.set())
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


@click.command("generate")
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=gen.DEFAULT_RATE,
    show_default=True,
    help="Events per second: timestamps advance by it; Kafka output is paced at it.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds of traffic (rate x duration events).",
)
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Same seed, same traffic (and same timestamps with --start). Default: random.",
)
@click.option(
    "--start",
    default=None,
    help="Time of the first event (ISO 8601 with zone). Default: now; with "
    "--to kafka, timestamps then follow the wall clock.",
)
@click.option(
    "--geo-db",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="MaxMind-format .mmdb whose networks visitors' IPs come from. Default: "
    "ANONSTREAM_GEO_DB_PATH, else a built-in table of ISP prefixes.",
)
@click.option(
    "--to",
    "target",
    required=True,
    callback=lambda _c, _p, v: _check_target(v),
    help="'kafka' (the settings' topics) or FILE.jsonl (+ .consent.jsonl, .truth.json).",
)
@click.option(
    "--malformed-share",
    type=SHARE,
    default=gen.DEFAULT_MALFORMED_SHARE,
    show_default=True,
    help="Share of items that are malformed (every dead-letter reason).",
)
@click.option(
    "--no-id-share",
    type=SHARE,
    default=gen.DEFAULT_NO_ID_SHARE,
    show_default=True,
    help="Share of sessions (so of events) without any identifier.",
)
@click.option(
    "--optout-share",
    type=SHARE,
    default=gen.DEFAULT_OPTOUT_SHARE,
    show_default=True,
    help="Share of sessions that send a consent record (opt-out, erase, child, opt-in).",
)
@click.option(
    "--people",
    type=click.IntRange(min=1),
    default=DEFAULT_PEOPLE,
    show_default=True,
    help="Size of the visitor population.",
)
@click.option(
    "--truth",
    "truth_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the ground truth here (default: stdout for kafka, FILE.truth.json for files).",
)
@click.option(
    "--truth-events",
    is_flag=True,
    help="Include every message's events and consent records in the truth.",
)
def generate_cli(
    rate: float,
    duration: float,
    seed: int | None,
    start: str | None,
    geo_db: Path | None,
    target: str,
    malformed_share: float,
    no_id_share: float,
    optout_share: float,
    people: int,
    truth_path: Path | None,
    truth_events: bool,
) -> None:
    """Generate realistic traffic of a French jewellery shop, with its ground truth.

    Kafka output is paced at --rate and ends after --duration seconds or on Ctrl-C (then
    flushed); progress goes to stderr, the truth to stdout (or --truth). File output is
    written as fast as possible, timestamps advancing as if at --rate.
    """
    from stream.settings import load_settings

    settings = load_settings()
    first = _parse_start(start)
    generator = gen.TrafficGenerator(
        seed=seed,
        start=first,
        rate=rate,
        realtime=target == "kafka" and first is None,
        geo_db=geo_db or settings.geo_db_path,
        people=people,
        no_id_share=no_id_share,
        malformed_share=malformed_share,
        optout_share=optout_share,
        max_message_bytes=settings.max_message_bytes,
        keep_log=truth_events,
    )
    with _stop_on_interrupt() as stop:
        if target == "kafka":
            _to_kafka(settings, generator, duration_s=duration, truth_path=truth_path, stop=stop)
        else:
            _to_files(
                generator,
                Path(target),
                items=round(rate * duration),
                truth_path=truth_path,
                stop=stop,
            )


def _to_kafka(
    settings: Settings,
    generator: gen.TrafficGenerator,
    *,
    duration_s: float,
    truth_path: Path | None,
    stop: threading.Event,
) -> None:
    from stream.local.traffic.sinks import send_to_kafka, write_truth

    truth = send_to_kafka(settings, generator, duration_s=duration_s, stop=stop, progress=_echo_err)
    if truth_path is None:
        sys.stdout.buffer.write(orjson.dumps(truth, option=orjson.OPT_INDENT_2) + b"\n")
        sys.stdout.flush()
    else:
        write_truth(truth, truth_path)


def _to_files(
    generator: gen.TrafficGenerator,
    path: Path,
    *,
    items: int,
    truth_path: Path | None,
    stop: threading.Event,
) -> None:
    from stream.local.traffic.sinks import output_paths, write_files

    started = time.monotonic()
    truth = write_files(generator, path, max_items=max(1, items), truth_path=truth_path, stop=stop)
    elapsed = max(time.monotonic() - started, 1e-9)
    consent_path, default_truth = output_paths(path)
    _echo_err(
        f"wrote {truth['items']} events ({truth['items'] / elapsed:.0f}/s) to {path}, "
        f"{truth['messages']['consent']} consent records to {consent_path}, truth to "
        f"{truth_path or default_truth}"
    )


def _echo_err(line: str) -> None:
    click.echo(line, err=True)
