"""`anonstream topics create [--check]`: provision the pipeline's Kafka topics."""

from __future__ import annotations

import sys

import click

from stream.settings import load_settings
from stream.topics import create_topics, topic_specs


@click.group("topics")
def topics_cli() -> None:
    """Provision the pipeline's Kafka topics."""


@topics_cli.command("create")
@click.option(
    "--check", is_flag=True, help="Create nothing; exit 1 if a topic is missing or differs."
)
def topics_create(check: bool) -> None:
    """Create every topic with its configuration and report mismatches on existing ones."""
    settings = load_settings()
    report = create_topics(settings, topic_specs(settings), check_only=check)
    for name in report.created:
        click.echo(f"created  {name}")
    for name in report.ok:
        click.echo(f"ok       {name}")
    for name in report.missing:
        click.echo(f"missing  {name}")
    for line in report.mismatches:
        click.echo(f"MISMATCH {line}")
    if report.missing or report.mismatches:
        sys.exit(1)
