"""A consent or key reader that dies makes its worker unready and unhealthy (fail closed)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from stream.settings import Settings
from stream.tables.consent import ConsentTable
from stream.tables.keyring import KafkaKeyRing, KeySchedule
from stream.topics import create_topics, topic_specs

pytestmark = pytest.mark.kafka


async def _break_reader(component: Any) -> None:
    """Make the next fetch of `component`'s consumer raise an unexpected error."""

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("simulated reader bug")

    component._consumer.getmany = broken
    for _ in range(100):
        if not component.alive():
            return
        await asyncio.sleep(0.05)


def test_dead_readers_turn_the_worker_unready(settings: Settings) -> None:
    """After its reader dies, the consent table is neither ready nor alive; same for keys."""
    create_topics(settings, topic_specs(settings))

    async def scenario() -> tuple[bool, bool, bool, bool]:
        table = ConsentTable(settings)
        ring = KafkaKeyRing(settings, KeySchedule.of(rotation_s=86_400, retention_s=172_800))
        await table.start()
        await ring.start()
        before = table.ready() and ring.ready()
        await _break_reader(table)
        await _break_reader(ring)
        after = (table.ready(), table.alive(), ring.ready() or ring.alive())
        await table.stop()
        await ring.stop()
        return before, *after

    before, table_ready, table_alive, ring_ok = asyncio.run(scenario())
    assert before
    assert not table_ready and not table_alive
    assert not ring_ok
