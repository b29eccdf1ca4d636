"""`anonstream topics create [--check]` and `anonstream topics list`: the pipeline's topics."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import click

from stream.cli import bootstrap_option
from stream.settings import Settings, load_settings
from stream.topics import create_topics, topic_specs


@click.group("topics")
def topics_cli() -> None:
    """Provision and list the pipeline's Kafka topics."""


@topics_cli.command("create")
@click.option(
    "--check", is_flag=True, help="Create nothing; exit 1 if a topic is missing or differs."
)
@bootstrap_option
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


def consumer_groups(settings: Settings) -> dict[str, str]:
    """topic -> the stage consumer group that reads it (the other topics have none)."""
    return {
        settings.topic_raw: settings.group_id("anonymize"),
        settings.topic_pseudonymized: settings.group_id("aggregate"),
        settings.topic_partials: settings.group_id("release"),
    }


@dataclass(frozen=True)
class TopicRow:
    """One line of `topics list`."""

    name: str
    partitions: int | None  # None: the topic does not exist
    messages: int  # end offsets minus beginning offsets, summed over partitions
    configs: dict[str, str]
    group: str | None
    lag: int | None  # None: no group, or it committed nothing yet


def list_topics(settings: Settings) -> list[TopicRow]:
    """Each pipeline topic with its partitions, message count, the configurations anonstream
    sets (as the broker has them) and the lag of the stage group that consumes it."""
    from kafka import TopicPartition
    from kafka.admin import ConfigResource, ConfigResourceType

    from stream import kafka as kafka_clients

    specs = topic_specs(settings)
    groups = consumer_groups(settings)
    with kafka_clients.admin_client(settings) as admin:
        existing = set(admin.list_topics())
        present = [spec for spec in specs if spec.name in existing]
        raw_configs: dict[str, Any] = {}
        if present:
            found = admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, s.name) for s in present],
                config_filter="all",
            )
            raw_configs = found.get("topic", found.get("TOPIC", {}))
        wanted = {group: topic for topic, group in groups.items() if topic in existing}
        by_group = admin.list_group_offsets(list(wanted)) if wanted else {}
        committed: dict[str, dict[Any, Any]] = {
            topic: {
                tp: offset for tp, offset in by_group.get(group, {}).items() if tp.topic == topic
            }
            for group, topic in wanted.items()
        }
    consumer = kafka_clients.consumer(settings)
    try:
        rows = []
        for spec in specs:
            if spec.name not in existing:
                rows.append(TopicRow(spec.name, None, 0, {}, groups.get(spec.name), None))
                continue
            tps = [
                TopicPartition(spec.name, p)
                for p in sorted(consumer.partitions_for_topic(spec.name) or ())
            ]
            ends = consumer.end_offsets(tps)
            starts = consumer.beginning_offsets(tps)
            configs = {}
            for key in spec.configs:
                entry = raw_configs.get(spec.name, {}).get(key)
                value = entry.get("value") if isinstance(entry, dict) else entry
                configs[key] = str(value)
            lag = None
            offsets = committed.get(spec.name)
            if offsets:
                lag = 0
                for tp in tps:
                    done = offsets.get(tp)
                    position = done.offset if done is not None and done.offset >= 0 else starts[tp]
                    lag += max(0, ends[tp] - position)
            rows.append(
                TopicRow(
                    spec.name,
                    len(tps),
                    sum(ends[tp] - starts[tp] for tp in tps),
                    configs,
                    groups.get(spec.name),
                    lag,
                )
            )
        return rows
    finally:
        consumer.close()


@topics_cli.command("list")
@bootstrap_option
def topics_list() -> None:
    """Each topic: partitions, messages, configuration and the lag of its stage's group.

    Exit status 1 when a topic is missing.
    """
    rows = list_topics(load_settings())
    click.echo(
        f"{'topic':<28} {'partitions':>10} {'messages':>10}  {'group':<24} {'lag':>8}  config"
    )
    for row in rows:
        partitions = "missing" if row.partitions is None else str(row.partitions)
        lag = "-" if row.lag is None else str(row.lag)
        configs = " ".join(f"{k}={v}" for k, v in row.configs.items())
        click.echo(
            f"{row.name:<28} {partitions:>10} {row.messages:>10}  {row.group or '-':<24} "
            f"{lag:>8}  {configs}"
        )
    if any(row.partitions is None for row in rows):
        sys.exit(1)
