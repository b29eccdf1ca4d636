"""`anonstream topics list` on the real broker: partitions, messages, configuration, lag."""

from __future__ import annotations

import pytest

from stream.settings import Settings
from stream.topics import create_topics, topic_specs
from tests.support.cli import run_cli
from tests.support.kafka import produce

pytestmark = pytest.mark.kafka


def rows(output: str) -> dict[str, list[str]]:
    """The table's lines by topic name (the header dropped)."""
    return {line.split()[0]: line.split() for line in output.splitlines()[1:]}


def test_topics_list_shows_configuration_messages_and_group_lag(settings: Settings) -> None:
    """Messages sent and offsets committed by the anonymize group give the raw topic's
    count and lag; groups that committed nothing show `-`; every configuration is listed."""
    from kafka import TopicPartition
    from kafka.structs import OffsetAndMetadata

    from stream import kafka as kafka_clients

    missing = run_cli(settings, "topics", "list")
    assert missing.exit_code == 1, missing.output
    assert rows(missing.output)[settings.topic_raw][1] == "missing"

    create_topics(settings, topic_specs(settings))
    produce(settings, settings.topic_raw, [b"{}"] * 10, partition=0)
    produce(settings, settings.topic_raw, [b"{}"] * 3, partition=1)
    group = kafka_clients.consumer(settings, group_id=settings.group_id("anonymize"))
    try:
        group.commit({TopicPartition(settings.topic_raw, 0): OffsetAndMetadata(4, "", -1)})
    finally:
        group.close()

    result = run_cli(settings, "topics", "list")
    assert result.exit_code == 0, result.output
    table = rows(result.output)
    assert set(table) == {spec.name for spec in topic_specs(settings)}
    raw = table[settings.topic_raw]
    # partitions, messages, group, lag: 10 - 4 on partition 0, 3 uncommitted on partition 1
    assert raw[1:5] == ["4", "13", settings.group_id("anonymize"), str(10 - 4 + 3)]
    assert f"retention.ms={settings.raw_retention_ms}" in raw
    assert "cleanup.policy=delete" in raw
    aggregate_input = table[settings.topic_pseudonymized]
    assert aggregate_input[3:5] == [settings.group_id("aggregate"), "-"]
    assert "cleanup.policy=compact" in table[settings.topic_consent]
