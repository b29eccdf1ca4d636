"""Erasure reaches the aggregation stage (PRIVACY.md guarantee 4; the consent issue:
"erasure also removes the subject from windows still open in the aggregation stage, so a
later release does not include it"), end to end on the real broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import run_cli

from .harness import pipeline_run
from .traffic import busy_person, shop
from .truth import BY_NAME, assert_exact, covered, expected_value, policy_toml, truth_cells

pytestmark = pytest.mark.kafka

LATENESS_S = 3 * 3600
AGGREGATED = 'anonstream_aggregate_events_total{outcome="events"}'
ERASURES = 'anonstream_aggregate_stage_total{what="erasures"}'
ERASED_ENTRIES = 'anonstream_aggregate_stage_total{what="erased_entries"}'


def test_erasure_removes_the_person_from_open_windows(
    kafka_bootstrap: str, tmp_path: Path, e2e_geo_db: Path
) -> None:
    """A person's events sit in open windows of the aggregate stage when their erase record
    is published: the stage removes them there, and every released value equals the ground
    truth without that person (with them, some released values would differ)."""
    with pipeline_run(
        kafka_bootstrap, tmp_path, geo_db=e2e_geo_db, policy_text=policy_toml()
    ) as pipeline:
        start_ms = pipeline.timeline.at(12)
        traffic = shop(seed=31, start_ms=start_ms, minutes=10, people=40)
        busy_person(traffic, "erase-me", start_ms=start_ms, minutes=10)
        pipeline.send(traffic)
        pipeline.wait_forwarded()
        aggregate = pipeline.stages["aggregate"]
        aggregate.wait_metric(AGGREGATED, at_least=len(traffic.events))

        result = run_cli(pipeline.settings, "consent", "erase", "--cookie-id", "erase-me")
        assert result.exit_code == 0, result.output
        metrics = aggregate.wait_metric(ERASURES, at_least=1)
        assert metrics[ERASED_ENTRIES] > 0, "removed from windows that were still open"
        pipeline.flush(lateness_s=LATENESS_S)
        records = pipeline.released_day()

    assert_exact(records, truth_cells(traffic.views(without=["erase-me"])), policy_version="e2e")
    everyone = truth_cells(traffic.views())
    values = [value for _, value in records]
    changed = [
        v
        for v in values
        if expected_value(BY_NAME[v["metric"]], covered(v, values, everyone)) != v["value"]
    ]
    assert len(changed) > 10, "the person would have changed released values"
