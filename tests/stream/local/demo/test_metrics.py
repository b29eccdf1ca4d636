"""The three workers' /metrics, /healthz, /readyz and logs, on generated traffic with PII.

One run per module (the slow part): the generator (`anonstream generate --to kafka --seed
--truth-events`, the production command) publishes 20,000 items with consent records first;
then one worker per stage starts, at log level debug, and processes all of it. Expectations
come from the generator's truth (`tests/demo/expectations.py`), never from pipeline code.
"""

from __future__ import annotations

import base64
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream.health.metrics import labelled
from stream.local import processes
from stream.local.demo import Demo, start_pipeline, write_demo_policy
from stream.settings import Settings
from stream.topics import create_topics, topic_specs
from tests.conftest import isolated_settings
from tests.stream.local.demo.expectations import DAY_S, expected_outcomes, secrets_of
from tests.support.http import get, scrape
from tests.support.kafka import read_all, unwrap_key_record
from tests.support.workers import wait_for

pytestmark = pytest.mark.kafka

ITEMS_RATE = 2000
ITEMS_SECONDS = 10
SEED = 20251125


@dataclass
class Run:
    """Everything the tests look at, gathered while the workers ran and after they stopped."""

    truth: dict[str, Any]
    first_epoch: int
    metrics: dict[str, dict[str, float]]
    health: dict[str, tuple[int, dict[str, Any]]]
    ready: dict[str, tuple[int, dict[str, Any]]]
    aggregates: list[Any]
    keys: list[bytes]
    logs: dict[str, str]
    exit_codes: dict[str, int] = field(default_factory=dict)


def module_settings(bootstrap: str, home: Path) -> Settings:
    """The session's isolated settings (own topics and groups) with the demo policy."""
    return isolated_settings(bootstrap, home / "state").model_copy(
        update={"policy_path": write_demo_policy(home / "demo-policy.toml"), "web_port": 6066}
    )


def generate(settings: Settings, home: Path) -> dict[str, Any]:
    truth_path = home / "truth.json"
    args = ["generate", "--to", "kafka", "--rate", str(ITEMS_RATE), "--duration"]
    args += [str(ITEMS_SECONDS), "--seed", str(SEED), "--truth-events", "--truth", str(truth_path)]
    generator = processes.spawn(settings, args, log=home / "generate.log")
    assert generator.wait(timeout=120) == 0, (home / "generate.log").read_text()[-2000:]
    truth: dict[str, Any] = orjson.loads(truth_path.read_bytes())
    return truth


def json_get(url: str) -> tuple[int, dict[str, Any]]:
    status, body = get(url)
    return status, (orjson.loads(body) if body else {})


@pytest.fixture(scope="module")
def run(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    home = tmp_path_factory.mktemp("metrics")
    settings = module_settings(kafka_bootstrap, home)
    create_topics(settings, topic_specs(settings))
    truth = generate(settings, home)
    first_epoch = int(time.time()) // DAY_S  # the key ring starts with the current epoch
    demo: Demo = start_pipeline(settings, home=home, loglevel="debug")
    try:
        workers = {child.name: child for child in demo.workers()}

        def metrics(stage: str) -> dict[str, float]:
            demo.check_alive()
            return scrape(workers[stage].web_port or 0) or {}

        wait_for(
            lambda: metrics("anonymize").get("anonstream_events_consumed_total") == truth["items"],
            timeout_s=180,
            what="the anonymize worker to consume every item",
        )
        forwarded = metrics("anonymize")["anonstream_events_forwarded_total"]
        events = 'anonstream_aggregate_events_total{outcome="events"}'
        wait_for(
            lambda: metrics("aggregate").get(events) == forwarded,
            timeout_s=120,
            what="the aggregate worker to take every forwarded event",
        )
        # Windows close 10 s after their end (demo policy), the last one by idleness.
        wait_for(
            lambda: metrics("release").get("anonstream_cells_released_total", 0) > 0,
            timeout_s=150,
            what="released cells",
        )

        def settled() -> list[Any] | None:
            before = metrics("release")["anonstream_aggregates_released_total"]
            records = read_all(settings, settings.topic_aggregates, idle_s=1.0)
            after = metrics("release")["anonstream_aggregates_released_total"]
            return records if before == after == len(records) else None

        aggregates = wait_for(settled, timeout_s=120, what="the release counter to settle")
        # Probes run every 5 s: wait for fresh lag figures that show everything processed.
        wait_for(
            lambda: all(
                metrics(stage).get("anonstream_consumer_lag_known") == 1.0 for stage in workers
            ),
            timeout_s=30,
            what="lag figures",
        )
        time.sleep(6)
        scraped = {stage: metrics(stage) for stage in workers}
        health = {s: json_get(f"{w.url}/healthz") for s, w in workers.items()}
        ready = {s: json_get(f"{w.url}/readyz") for s, w in workers.items()}
    finally:
        demo.stop_all()
    keys = [
        unwrap_key_record(settings, r.value)
        for r in read_all(settings, settings.topic_keys)
        if r.value is not None
    ]
    yield Run(
        truth=truth,
        first_epoch=first_epoch,
        metrics=scraped,
        health=health,
        ready=ready,
        aggregates=aggregates,
        keys=keys,
        logs={c.name: c.log.read_text(errors="replace") for c in demo.workers()},
        exit_codes={c.name: c.process.returncode for c in demo.workers()},
    )


def test_anonymize_counters_reconcile_with_the_generators_truth(run: Run) -> None:
    """consumed = items; dead-lettered by reason = the truth's malformed items by reason;
    dropped by reason and forwarded = what the truth's events and consent records imply."""
    values = run.metrics["anonymize"]
    truth = run.truth
    expected = expected_outcomes(truth, first_epoch=run.first_epoch)
    assert values["anonstream_events_consumed_total"] == truth["items"]
    dead = labelled(values, "anonstream_events_deadlettered_total", "reason")
    assert dead == {r: float(n) for r, n in truth["malformed_by_reason"].items() if n}
    dropped = labelled(values, "anonstream_events_dropped_total", "reason")
    assert dropped == {r: float(n) for r, n in expected.items() if r != "forwarded"}
    assert values["anonstream_events_forwarded_total"] == expected["forwarded"]
    # The traffic exercises every reason this run can produce, not just a few.
    assert {"under_16", "child", "erased", "opted_out", "no_consent", "gpc"} <= set(dropped)
    assert sum(expected.values()) == truth["events"]
    assert values["anonstream_messages_consumed_total"] == truth["messages"]["raw"]


def test_downstream_counters_follow_the_forwarded_events(run: Run) -> None:
    """The aggregate stage took exactly the forwarded events; the release counters equal the
    records on stats.aggregates (one per statistic; released cells are the distinct cells of
    kind `cell`, a key without its last `|statistic` part)."""
    forwarded = run.metrics["anonymize"]["anonstream_events_forwarded_total"]
    aggregate = run.metrics["aggregate"]
    assert aggregate['anonstream_aggregate_events_total{outcome="events"}'] == forwarded
    release = run.metrics["release"]
    cells = {
        record.key.decode().rsplit("|", 1)[0]
        for record in run.aggregates
        if orjson.loads(record.value)["cell"] == "cell"
    }
    assert release["anonstream_aggregates_released_total"] == len(run.aggregates)
    assert release["anonstream_cells_released_total"] == len(cells) > 0
    suppressed = labelled(release, "anonstream_cells_suppressed_total", "reason")
    assert suppressed["below_k"] > 0, "with k = 10 some cells of a minute must be suppressed"


def test_processing_latency_lag_and_state_gauges(run: Run) -> None:
    """One latency observation per fetch (anonymize: between one and one per raw message);
    no lag once all is processed; the consent table holds the subjects of blocking records;
    the key epoch is today's."""
    anonymize = run.metrics["anonymize"]
    fetches = anonymize["anonstream_processing_seconds_count"]
    assert 1 <= fetches <= run.truth["messages"]["raw"]
    buckets = {
        key: value
        for key, value in anonymize.items()
        if key.startswith("anonstream_processing_seconds_bucket")
    }
    assert buckets['anonstream_processing_seconds_bucket{le="+Inf"}'] == fetches
    assert anonymize["anonstream_processing_seconds_sum"] > 0
    for stage, values in run.metrics.items():
        lag = labelled(values, "anonstream_consumer_lag", "partition")
        assert values["anonstream_consumer_lag_known"] == 1.0, stage
        assert lag and sum(lag.values()) == 0, (stage, lag)
        assert values["anonstream_ready"] == 1.0 and values["anonstream_alive"] == 1.0, stage
        assert values["anonstream_processing_seconds_count"] > 0, stage
    # Everything processed is committed (the commits-stopped rule cannot fire on an idle
    # worker: Faust commits the next offset to read, as the watch expects).
    assert anonymize["anonstream_commit_age_seconds"] == 0
    consent_keys = {
        f"{e['record']['subject_type']}:{e['record']['subject_id']}"
        for e in run.truth["log"]
        if e["topic"] == "consent"
    }
    # Each identifier on a valid event flagged age_under_16 gets one `child` record, written
    # by the anonymize stage to the same topic.
    child_keys = {
        f"{name}:{item['event'][name]}"
        for e in run.truth["log"]
        if e["topic"] == "raw"
        for item in e["items"]
        if item["reason"] is None and item["event"].get("age_under_16") is True
        for name in ("user_id", "cookie_id", "device_id", "ad_id")
        if item["event"].get(name)
    }
    assert child_keys, "the generated traffic flags some children"
    assert anonymize["anonstream_children_reported_total"] == len(child_keys)
    for stage in ("anonymize", "aggregate"):
        values = run.metrics[stage]
        assert values["anonstream_consent_records_applied_total"] == sum(
            run.truth["consent_records_by_action"].values()
        ) + len(child_keys)
        # Every record leaves one subject state behind (opt-ins included), one per key.
        assert values["anonstream_consent_subjects"] <= len(consent_keys | child_keys)
        assert values["anonstream_consent_lag"] == 0
        assert values["anonstream_key_epoch"] >= run.first_epoch
        assert values["anonstream_key_current"] == 1.0


def test_health_endpoints_of_running_workers(run: Run) -> None:
    """/healthz and /readyz answer 200 with no problem listed on every worker that works."""
    for stage in ("anonymize", "aggregate", "release"):
        status, body = run.health[stage]
        assert status == 200 and body["alive"] is True and body["problems"] == [], body
        status, body = run.ready[stage]
        assert status == 200 and body["ready"] is True and body["reasons"] == [], body


def test_worker_logs_are_json_lines_without_identifier_payload_or_key(run: Run) -> None:
    """At log level debug, every line of every worker is a JSON object (ts, level, logger,
    msg), and no identifier, IP, URL, search term, user agent or event id of the input, nor
    any key of the key topic (base64, base64url or hex), appears anywhere in the logs."""
    secrets = secrets_of(run.truth)
    for material in run.keys:
        secrets |= {
            base64.b64encode(material).decode(),
            base64.urlsafe_b64encode(material).decode().rstrip("="),
            material.hex(),
        }
    assert len(secrets) > 10_000, "the traffic carries identifiers to look for"
    assert run.keys, "a key was published"
    levels: Counter[str] = Counter()
    for stage, text in run.logs.items():
        lines = text.splitlines()
        assert len(lines) > 20, f"{stage} logged at debug level"
        for line in lines:
            entry = orjson.loads(line)
            assert {"ts", "level", "logger", "msg"} <= set(entry), line
            levels[entry["level"]] += 1
        leaked = [secret for secret in secrets if secret in text]
        assert not leaked, f"{stage} log contains {len(leaked)} input values, e.g. {leaked[:1]}"
    assert levels["debug"] > 0, "debug lines were written (the check covers them)"
    assert run.exit_codes == {"anonymize": 0, "aggregate": 0, "release": 0}


def test_workers_close_every_kafka_client_on_stop(run: Run) -> None:
    """A stopped worker closes its clients: asyncio reports none unclosed (an error line the
    anonymize worker wrote for its key ring and consent readers until they were stopped)."""
    for stage, text in run.logs.items():
        unclosed = [
            entry["msg"].splitlines()[0]
            for entry in map(orjson.loads, text.splitlines())
            if entry["msg"].startswith("Unclosed")
        ]
        assert not unclosed, f"{stage}: {unclosed}"
