"""The aggregate and release stages' Prometheus counters never go down on a revoke.

A revoked partition's worker is dropped; what it counted must stay in the runtime's totals
(a counter that decreases reads as a process restart to Prometheus, and `rate()` jumps).
Driven without a broker: the runtimes are built as `anonstream worker` builds them (clients
are only created by `start`), their partition workers handle real messages, and the revoke
is the loop's own handler, as the consumer's rebalance listener calls it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from anonymizers.keys import KeyEncryptionKey
from anonymizers.policy import default_policy
from stream.settings import Settings
from stream.stages.aggregate import AggregateRuntime
from stream.stages.release import ReleasePartition, ReleaseRuntime
from stream.tables.keyring import KafkaKeyRing, schedule_from_policy
from tests.stream.stages.test_aggregate_partition import (
    CONFIG,
    METRICS,
    RELEASE,
    Record,
    message,
    stage,
)

EVENTS = 'anonstream_aggregate_events{outcome="events"}'
METRIC_NAMES = [metric.name for metric in METRICS]


def samples(runtime: AggregateRuntime) -> dict[str, float]:
    found: dict[str, float] = {}
    for family in runtime.metric_families():
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            name = sample.name.removesuffix("_total")
            found[f"{name}{{{labels}}}" if labels else name] = sample.value
    return found


def runtime() -> AggregateRuntime:
    settings = Settings(bootstrap_servers="127.0.0.1:1")
    return AggregateRuntime(
        settings,
        aggregation=CONFIG,
        release=RELEASE,
        keyring=KafkaKeyRing(
            settings, schedule_from_policy(default_policy()), kek=KeyEncryptionKey.generate()
        ),
        partials_partitions=4,
        forms=default_policy().identifiers.forms(),
    )


def assign(stage: AggregateRuntime, partition: int) -> Any:
    worker = stage._make_worker(partition, None)
    stage.loop.workers[partition] = worker
    return worker


def test_event_counts_survive_a_revoke_and_keep_adding_up() -> None:
    """3 + 2 events on partition 0, 4 on partition 1; partition 0 revoked: still 9 (not 4);
    partition 0 assigned again with 6 more events: 15."""
    stage = runtime()
    assign(stage, 0).handle([message(0, 10, 5, range(3)), message(1, 11, 20, range(3, 5))])
    assign(stage, 1).handle([message(0, 20, 5, range(10, 14))])
    assert samples(stage)[EVENTS] == 9
    asyncio.run(stage.loop.on_revoked([0]))
    assert sorted(stage.loop.workers) == [1]
    assert samples(stage)[EVENTS] == 9
    assign(stage, 0).handle([message(0, 10, 5, range(20, 26))])
    assert samples(stage)[EVENTS] == 15


def test_release_counts_survive_a_revoke() -> None:
    """The aggregate stage's partials of a closed minute go to four release partitions;
    revoking the ones that decided windows keeps the windows decided and cells released."""
    settings = Settings(bootstrap_servers="127.0.0.1:1")
    release = ReleaseRuntime(
        settings,
        aggregation=CONFIG,
        release=RELEASE,
        metric_names=METRIC_NAMES,
        published_horizon_s=3600.0,
        policy_version="test",
        sources=1,
        partials_partitions=4,
    )
    for partition in range(4):
        release.loop.workers[partition] = ReleasePartition(
            partition=partition,
            aggregation=CONFIG,
            release=RELEASE,
            metric_names=METRIC_NAMES,
            sources=1,
            partials_partitions=4,
            policy_version="test",
            aggregates_topic="aggregates",
            ledger_topic="ledger",
        )
    source = stage()
    out = source.handle([message(0, 10, 5, range(3)), message(1, 11, 20, range(3, 5))])
    out += source.handle([message(2, 12, 70, range(1))])  # closes minute 12:00
    for offset, record in enumerate(out):
        assert record.partition is not None
        worker = release.loop.workers[record.partition]
        worker.handle([Record(0, offset, record.value, ())])
    before = samples(release)
    decided = {p for p, w in release.loop.workers.items() if w.engine.counters["windows_decided"]}
    assert before["anonstream_windows_decided"] >= 2  # page_views and visitors, minute 12:00
    assert before["anonstream_cells_released"] >= 1
    asyncio.run(release.loop.on_revoked(sorted(decided)))
    after = samples(release)
    for name in ("anonstream_windows_decided", "anonstream_cells_released"):
        assert after[name] == before[name], name
