"""Erasure reaches the aggregation stage (PRIVACY.md guarantee 4; the consent issue:
"erasure also removes the subject from windows still open in the aggregation stage, so a
later release does not include it"; release v2: an event flagged age_under_16 purges the
subject's open-window data as a `child` record does), end to end on the real broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import run_cli
from tests.support.kafka import produce

from .harness import canonical, pipeline_run
from .traffic import PAGES, Traffic, busy_person, shop
from .truth import (
    BY_NAME,
    assert_exact,
    by_cell,
    covered,
    expected_value,
    policy_toml,
    truth_cells,
)

pytestmark = pytest.mark.kafka

LATENESS_S = 3 * 3600
AGGREGATED = 'anonstream_aggregate_events_total{outcome="events"}'
ERASURES = 'anonstream_aggregate_stage_total{what="erasures"}'
ERASED_ENTRIES = 'anonstream_aggregate_stage_total{what="erased_entries"}'
UNDER_16 = 'anonstream_events_dropped_total{reason="under_16"}'
REPORTED = "anonstream_children_reported_total"
ERASED_COOKIE = "Erase.Me@Example.com"


def test_erasure_removes_the_person_from_open_windows(
    kafka_bootstrap: str, tmp_path: Path, e2e_geo_db: Path
) -> None:
    """A person's events sit in open windows of the aggregate stage when their erase record
    is published, under another spelling of their (e-mail-like) cookie id: the stage removes
    them there, and every released value equals the ground truth without that person (with
    them, some released values would differ)."""
    with pipeline_run(
        kafka_bootstrap, tmp_path, geo_db=e2e_geo_db, policy_text=policy_toml()
    ) as pipeline:
        start_ms = pipeline.timeline.at(12)
        traffic = shop(seed=31, start_ms=start_ms, minutes=10, people=40)
        busy_person(traffic, ERASED_COOKIE, start_ms=start_ms, minutes=10)
        pipeline.send(traffic)
        pipeline.wait_forwarded()
        aggregate = pipeline.stages["aggregate"]
        aggregate.wait_metric(AGGREGATED, at_least=len(traffic.events))

        # Case and white space differ from the events': one canonical form matches them.
        spelling = " erase.ME@example.COM "
        result = run_cli(pipeline.settings, "consent", "erase", "--cookie-id", spelling)
        assert result.exit_code == 0, result.output
        metrics = aggregate.wait_metric(ERASURES, at_least=1)
        assert metrics[ERASED_ENTRIES] > 0, "removed from windows that were still open"
        pipeline.flush(lateness_s=LATENESS_S)
        records = pipeline.released_day()

    assert_exact(records, truth_cells(traffic.views(without=[ERASED_COOKIE])), policy_version="e2e")
    everyone = truth_cells(traffic.views())
    values = [value for _, value in by_cell(records)]
    changed = [
        v
        for v in values
        if expected_value(BY_NAME[v["metric"]], covered(v, values, everyone)) != v["value"]
    ]
    assert len(changed) > 10, "the person would have changed released values"


def test_an_event_flagged_under_16_removes_the_child_from_open_windows(
    kafka_bootstrap: str, tmp_path: Path, e2e_geo_db: Path
) -> None:
    """A person's events sit in open windows when one more event of theirs arrives flagged
    age_under_16: it is dropped, the anonymize stage records their cookie id as `child`,
    and the aggregate stage removes them from the open windows, so every released value
    equals the ground truth without that person, as for a `child` record from the CMP; and
    `anonstream preview` of the same events gives the same records."""
    with pipeline_run(
        kafka_bootstrap, tmp_path, geo_db=e2e_geo_db, policy_text=policy_toml()
    ) as pipeline:
        start_ms = pipeline.timeline.at(12)
        traffic = shop(seed=37, start_ms=start_ms, minutes=10, people=40)
        busy_person(traffic, "the-child", start_ms=start_ms, minutes=10)
        pipeline.send(traffic)
        pipeline.wait_forwarded()
        aggregate = pipeline.stages["aggregate"]
        aggregate.wait_metric(AGGREGATED, at_least=len(traffic.events))

        flagged = Traffic()
        flagged.add(
            traffic.people["the-child"],
            start_ms + 11 * 60_000,
            "page_view",
            page_url=PAGES[0],
            age_under_16=True,
        )
        produce(pipeline.settings, pipeline.settings.topic_raw, [flagged.jsonl().strip()])
        anonymize = pipeline.stages["anonymize"]
        anonymize.wait_metric(UNDER_16, at_least=1)
        assert anonymize.metric(REPORTED) == 1
        metrics = aggregate.wait_metric(ERASURES, at_least=1)
        assert metrics[ERASED_ENTRIES] > 0, "removed from windows that were still open"
        pipeline.flush(lateness_s=LATENESS_S)
        records = pipeline.released_day()
        everything = Traffic(events=[*traffic.events, *flagged.events])
        preview = pipeline.preview(everything)

    assert_exact(records, truth_cells(traffic.views(without=["the-child"])), policy_version="e2e")
    assert canonical(value for _, value in records) == canonical(preview)
