"""`anonstream budget`: what each person-day has spent of the dp budget, from the ledger.

Reads the compacted `privacy.ledger` topic (`ANONSTREAM_TOPIC_LEDGER`) from the beginning,
without a consumer group, keeps the latest entry per (day, metric, window size) and prints,
per day, each family's worst-case spend and the day's total against the policy's budget
(`anonymizers.stats.ledger.summarise`). Exit status 1 when a day is over its budget.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import click

from anonymizers.stats.ledger import LEDGER_SCHEMA, DaySummary, summarise
from stream.cli import bootstrap_option
from stream.cli.preview import window_text
from stream.cli.tail import TopicReader
from stream.settings import load_settings


def latest_entries(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The latest entry per (day, metric, window size), in topic order."""
    latest: dict[tuple[str, str, int], Mapping[str, Any]] = {}
    for record in records:
        if record.get("schema") != LEDGER_SCHEMA:
            continue
        latest[(str(record["day"]), str(record["metric"]), int(record["window_seconds"]))] = record
    return list(latest.values())


def day_lines(summary: DaySummary) -> list[str]:
    """The day's table and total."""
    lines = [
        f"{summary.day}: epsilon {summary.epsilon_spent:.3f} of {summary.epsilon_budget:g}, "
        f"delta {summary.delta_spent:.3g} of {summary.delta_budget:g} per person-day"
        f"{'' if summary.within_budget else '  OVER BUDGET'}",
        f"  {'metric':<24} {'window':>6} {'released':>8} {'W/day':>5} {'rho spent':>10} "
        f"{'of allocated':>12}",
    ]
    for entry in summary.entries:
        lines.append(
            f"  {entry['metric']:<24} {window_text(int(entry['window_seconds'])):>6} "
            f"{entry['windows_released']:>8} {entry['windows_per_person']:>5} "
            f"{float(entry['rho_spent']):>10.5f} {float(entry['rho_allocated']):>12.5f}"
        )
    return lines


@click.command("budget")
@bootstrap_option
@click.option("--day", default=None, help="One day (YYYY-MM-DD); every day on the ledger without.")
def budget_cli(day: str | None) -> None:
    """Print the privacy ledger: the dp budget each person-day has spent, per metric and
    window size, against the policy's epsilon and delta per day."""
    settings = load_settings()
    reader = TopicReader(settings, settings.topic_ledger)
    try:
        entries = latest_entries(reader.backlog())
    finally:
        reader.close()
    days = [day] if day is not None else sorted({str(e["day"]) for e in entries})
    over = False
    if not days or (day is not None and not any(e["day"] == day for e in entries)):
        click.echo("the ledger holds nothing" + (f" for {day}" if day else "") + " yet")
    for date in days:
        summary = summarise(entries, date)
        if summary is None:
            continue
        over = over or not summary.within_budget
        for line in day_lines(summary):
            click.echo(line)
    if over:
        raise SystemExit(1)
