"""`anonstream tail`: print the released aggregates of `stats.aggregates` as a table.

Reads the topic without a consumer group (it commits nothing and disturbs no consumer): every
record on it now, filtered by metric and window size, the `--limit` most recent printed in
window order; with `--follow`, then every new release as it arrives, until Ctrl-C.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any, Final

import click
import orjson

from anonymizers.policy import duration_seconds
from stream.cli import bootstrap_option
from stream.settings import Settings, load_settings

COLUMNS: Final = ("window", "size", "metric", "dimensions", "value", "people", "protection")
WIDTHS: Final = (20, 4, 22, 44, 38, 6, 0)
POLL_MS: Final = 500


def size_text(seconds: int) -> str:
    """ "1m", "1h", "1d" or "90s"."""
    for unit, span in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds % span == 0:
            return f"{seconds // span}{unit}"
    return f"{seconds}s"


def _seconds(ms: float) -> str:
    return f"{ms / 1000:.1f}s"


MILLISECONDS: Final = frozenset({"sum", "mean", "p50", "p75", "p90", "p95", "p99"})
"""Statistics of a summary that are in its field's unit (time on page: milliseconds)."""


def value_text(record: Mapping[str, Any]) -> str:
    """The statistic and its value: counts as integers, times of a summary in seconds."""
    value = record.get("value")
    statistic = str(record.get("statistic", ""))
    if value is None:
        return f"{statistic}=-"
    if record.get("aggregate") == "summary" and statistic in MILLISECONDS:
        return f"{statistic}={_seconds(float(value))}"
    if record.get("aggregate") == "summary":
        return f"n={value}"
    return str(value)


def dimensions_text(record: Mapping[str, Any]) -> str:
    cell = record.get("cell")
    if cell in ("other", "total"):
        return f"({cell})"
    dims = record.get("dimensions") or {}
    return ", ".join(f"{k}={dims[k]}" for k in sorted(dims)) or "(all)"


def protection_text(record: Mapping[str, Any]) -> str:
    """The mode and k; in dp mode the threshold, the family's share of the daily epsilon and
    the noise's standard deviation."""
    text = f"{record.get('mode')} k={record.get('k')}"
    if record.get("mode") == "dp":
        text += f" thr={record.get('threshold')}"
    if record.get("epsilon") is not None:
        text += f" eps={record['epsilon']:.2f}"
    if record.get("noise_sd") is not None:
        text += f" sd={record['noise_sd']:.1f}"
    return text


def row(record: Mapping[str, Any]) -> str:
    """One aligned line of the table."""
    people = record.get("distinct_subjects")
    cells = (
        str(record.get("window_start", "")),
        size_text(int(record.get("window_seconds", 0))),
        str(record.get("metric", "")),
        dimensions_text(record),
        value_text(record),
        "-" if people is None else str(people),
        protection_text(record),
    )
    return _line(cells)


def _line(cells: Iterable[str]) -> str:
    out = []
    for text, width in zip(cells, WIDTHS, strict=True):
        if width and len(text) > width:
            text = text[: width - 1] + "…"
        out.append(text.ljust(width) if width else text)
    return "  ".join(out).rstrip()


def header() -> str:
    return _line(COLUMNS)


def _order(record: Mapping[str, Any]) -> tuple[Any, ...]:
    cell_rank = {"cell": 0, "other": 1, "total": 2}.get(str(record.get("cell")), 3)
    return (
        str(record.get("window_end", "")),
        int(record.get("window_seconds", 0)),
        str(record.get("metric", "")),
        cell_rank,
        dimensions_text(record),
        str(record.get("statistic", "")),
    )


class TopicReader:
    """A topic of JSON records (stats.aggregates by default), partition by partition, from
    the beginning, without a group."""

    def __init__(self, settings: Settings, topic: str | None = None) -> None:
        from kafka import TopicPartition

        from stream import kafka as kafka_clients
        from stream.topics import require_topics

        topic = topic or settings.topic_aggregates
        require_topics(settings, [topic])
        self._consumer = kafka_clients.consumer(settings)
        partitions = self._consumer.partitions_for_topic(topic) or set()
        self._tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        self._consumer.assign(self._tps)
        self._consumer.seek_to_beginning(*self._tps)

    def backlog(self) -> list[dict[str, Any]]:
        """Every record on the topic now (read up to the end offsets taken at the start)."""
        ends = self._consumer.end_offsets(self._tps)
        out: list[dict[str, Any]] = []
        pending = {tp for tp in self._tps if self._consumer.position(tp) < ends[tp]}
        while pending:
            out.extend(self._poll())
            pending = {tp for tp in pending if self._consumer.position(tp) < ends[tp]}
        return out

    def follow(self) -> Iterator[dict[str, Any]]:
        """New records as they arrive, for ever."""
        while True:
            yield from self._poll()

    def _poll(self) -> list[dict[str, Any]]:
        out = []
        for records in self._consumer.poll(timeout_ms=POLL_MS).values():
            for record in records:
                if record.value is None:
                    continue
                try:
                    value = orjson.loads(record.value)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(value, dict):
                    out.append(value)
        return out

    def close(self) -> None:
        self._consumer.close()


def tail(
    settings: Settings,
    *,
    metric: str | None,
    window_seconds: int | None,
    follow: bool,
    limit: int,
    out: IO[str],
) -> int:
    """Print the table; returns the number of rows printed."""

    def wanted(record: Mapping[str, Any]) -> bool:
        return (metric is None or record.get("metric") == metric) and (
            window_seconds is None or record.get("window_seconds") == window_seconds
        )

    reader = TopicReader(settings)
    printed = 0
    try:
        backlog = sorted((r for r in reader.backlog() if wanted(r)), key=_order)
        out.write(header() + "\n")
        for record in backlog[-limit:] if limit else backlog:
            out.write(row(record) + "\n")
            printed += 1
        out.flush()
        if follow:
            for record in reader.follow():
                if wanted(record):
                    out.write(row(record) + "\n")
                    out.flush()
                    printed += 1
    except KeyboardInterrupt:
        pass
    finally:
        reader.close()
    return printed


def _window_option(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return value_seconds(value)
    except ValueError:
        raise click.BadParameter(
            f'must be a window size such as "1m", "1h", "1d"; got {value!r}'
        ) from None


def value_seconds(text: str) -> int:
    """Seconds of "1m", "1h", "1d", "90s" or a plain number of seconds."""
    return int(text) if text.isdigit() else duration_seconds(text)


@click.command("tail")
@bootstrap_option
@click.option("--metric", default=None, help="Only this metric (e.g. page_views).")
@click.option(
    "--window",
    "window_seconds",
    default=None,
    callback=_window_option,
    help='Only windows of this size: "1m", "1h", "1d" (or seconds).',
)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new releases until Ctrl-C.")
@click.option(
    "--limit",
    "-n",
    default=50,
    show_default=True,
    type=click.IntRange(min=0),
    help="Print at most this many of the records already released (0: all).",
)
def tail_cli(metric: str | None, window_seconds: int | None, follow: bool, limit: int) -> None:
    """Print the released aggregates (stats.aggregates) as a table, most recent windows last."""
    tail(
        load_settings(),
        metric=metric,
        window_seconds=window_seconds,
        follow=follow,
        limit=limit,
        out=sys.stdout,
    )
