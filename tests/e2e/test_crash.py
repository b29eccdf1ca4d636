"""Crash safety of the aggregate and release stages (kill -9), end to end on the real broker.

Traffic arrives in four rounds, an hour of event time apart (allowed lateness 1 h), so that
windows close and are released round after round while workers die: the aggregate worker
is killed with open windows, published progress and a pending erasure, and restarted after
duplicates of an anonymize replay were appended to its input; the release worker is killed
between releases and restarted. Every key must be published once, every value must equal
the ground truth, and nothing may be missing: the stream's records equal `anonstream
preview`'s on the same events (one process, no crash).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
import pytest

from tests.support.cli import run_cli

from .harness import canonical, pipeline_run
from .traffic import Traffic, busy_person, shop
from .truth import assert_exact, policy_toml, truth_cells

pytestmark = pytest.mark.kafka

LATENESS_S = 3600
RELEASED = "anonstream_aggregates_released_total"
ERASURES = 'anonstream_aggregate_stage_total{what="erasures"}'
ERASED_ENTRIES = 'anonstream_aggregate_stage_total{what="erased_entries"}'
DUPLICATES = 'anonstream_aggregate_stage_total{what="duplicate_messages"}'
AGGREGATED = 'anonstream_aggregate_events_total{outcome="events"}'
LATE_MINUTE = 'anonstream_aggregate_events_total{outcome="late:60"}'
ERASED_EVENTS = 'anonstream_aggregate_events_total{outcome="erased_events"}'
KEYS_READ = 'anonstream_release_stage_total{what="published_keys_read"}'
SKIPPED = 'anonstream_release_total{what="skipped_published"}'


def test_killed_workers_publish_every_key_once_with_the_exact_value(
    kafka_bootstrap: str, tmp_path: Path, e2e_geo_db: Path
) -> None:
    """kill -9 of the aggregate worker (open windows, a pending erasure, duplicated input on
    restart) and of the release worker (mid-release): every key once, every value the ground
    truth without the erased person, and the same records as a run without crashes."""
    policy = policy_toml(version="e2e-crash", lateness=f"{LATENESS_S}s")
    with pipeline_run(kafka_bootstrap, tmp_path, geo_db=e2e_geo_db, policy_text=policy) as run:
        rounds = [
            shop(
                seed=41 + r,
                start_ms=run.timeline.at(8 + r),
                minutes=15,
                people=30,
                prefix=f"r{r}",
            )
            for r in range(4)
        ]
        busy_person(rounds[1], "erase-me", start_ms=run.timeline.at(9), minutes=15)
        release = run.stages["release"]
        aggregate = run.stages["aggregate"]

        run.send(rounds[0])
        run.wait_forwarded()
        run.send(rounds[1])
        run.wait_forwarded()
        release.wait_metric(RELEASED, at_least=1)  # round 0's minutes are out

        erase = run_cli(run.settings, "consent", "erase", "--cookie-id", "erase-me")
        assert erase.exit_code == 0, erase.output
        metrics = aggregate.wait_metric(ERASURES, at_least=1)
        assert metrics[ERASED_ENTRIES] > 0
        aggregate.kill()

        run.send(rounds[2])
        run.wait_forwarded()
        duplicates = run.duplicate_forwarded()
        aggregate = run.start("aggregate")
        aggregate.wait_ready(timeout_s=90)
        released_before = release.metric(RELEASED)
        release.wait_metric(RELEASED, at_least=released_before + 1, timeout_s=120)
        release.kill()  # round 1's windows are being released

        run.send(rounds[3])
        release = run.start("release")
        release.wait_ready(timeout_s=90)
        run.flush(lateness_s=LATENESS_S)
        records = run.released_day()

        restarted = aggregate.metrics()
        release_metrics = release.metrics()
        consent = orjson.dumps(
            {"subject_type": "cookie_id", "subject_id": "erase-me", "action": "erase"}
        )
        everything = Traffic(events=[e for r in rounds for e in r.events])
        everything.sort()
        preview = run.preview(everything, consent=consent + b"\n")

    keys = Counter(key for key, _ in records)
    assert max(keys.values()) == 1, [k for k, n in keys.items() if n > 1][:5]
    truth = truth_cells(everything.views(without=["erase-me"]))
    assert_exact(records, truth, policy_version="e2e-crash")
    assert canonical(value for _, value in records) == canonical(preview), "nothing lost"
    # Each crash path was taken: the restarted aggregate worker replayed from before the
    # crash (open windows rebuilt, closed ones not recounted), dropped the duplicates and
    # the erased person; the restarted release worker skipped keys already published.
    assert restarted.get(DUPLICATES, 0) >= duplicates
    assert restarted.get(ERASED_EVENTS, 0) > 0
    assert restarted[AGGREGATED] >= len(rounds[0].events) + len(rounds[1].events)
    assert restarted.get(LATE_MINUTE, 0) > 0
    assert release_metrics.get(KEYS_READ, 0) > 0 and release_metrics.get(SKIPPED, 0) > 0
