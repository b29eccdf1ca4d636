"""`anonstream bench` on tiny input against the session broker: every row measured, the
worker consumed exactly the items the input topics hold, and the aggregate, release and
latency rows' counts agree with what their topics hold, read back here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream.local.bench.venv import STAMP, default_peer_python
from stream.settings import Settings
from tests.support.kafka import read_all

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(480)]

EVENTS = 2000
KINDS = ("single", "batch50")
LATENCY_S = 3.0


def test_bench_quick_json(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Every row reports positive events/s and memory; the worker's consumed count equals the
    item count computed from the generated input, for single events and 50-event arrays."""
    peer = default_peer_python()
    with_quix = (peer.parent.parent / STAMP).exists()
    families = ["ceiling", "faust", "worker", "aggregate", "release"]
    families += ["quix"] if with_quix else []
    command = [
        sys.executable, "-m", "stream", "bench", "--quick", "--json",
        "--events", str(EVENTS), "--bootstrap", kafka_bootstrap,
        "--rows", ",".join([*families, "latency"]), "--latency-seconds", str(LATENCY_S),
    ]  # fmt: skip
    if with_quix:
        command += ["--peer-python", str(peer)]
    result = subprocess.run(
        command, capture_output=True, text=True, cwd=tmp_path, timeout=460, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    figures = orjson.loads(result.stdout.strip().splitlines()[-1])
    assert figures["problems"] == []
    assert figures["expected_single_items"] == figures["expected_batch50_items"] >= EVENTS
    assert figures["expected_batch50_messages"] < figures["expected_single_messages"]
    for family in families:
        for kind in KINDS:
            row = f"{family}_{kind}"
            assert figures[f"{row}_events_per_s"] > 0, row
            assert figures[f"{row}_rss_mb"] > 0, row
            # CPU time comes in clock ticks (10 ms): a tiny row may take less than one.
            assert figures[f"{row}_cpu_s_per_100k_events"] >= 0, row
    for kind in KINDS:
        assert figures[f"worker_{kind}_consumed"] == figures[f"expected_{kind}_items"]
        assert figures[f"worker_{kind}_startup_s"] > 0
    settings = Settings(bootstrap_servers=kafka_bootstrap)
    for kind in KINDS:
        check_stage_rows(settings, figures, kind)
    check_latency_row(settings, figures)
    table = result.stdout.splitlines()[0]
    assert "x ceiling" in table and "x peer(quix)" in table and "x worker" in table
    assert any(line.startswith("latency_single: ") for line in result.stdout.splitlines())
    if not with_quix:
        pytest.skip(
            f"every other row passed; the quix row was not run: no bench virtualenv at "
            f"{peer.parent.parent} (make bench-venv creates it)"
        )


def events_in(settings: Settings, topic: str) -> int:
    """Events a events.pseudonymized topic holds: each record a JSON array of them."""
    return sum(len(orjson.loads(record.value)) for record in read_all(settings, topic))


def check_stage_rows(settings: Settings, figures: dict[str, Any], kind: str) -> None:
    """The aggregate row aggregated every event the worker row wrote, the release row read
    every record the aggregate row wrote, and their rates and ratios are consistent."""
    forwarded = events_in(settings, figures[f"worker_{kind}_output_topic"])
    assert 0 < forwarded <= figures[f"expected_{kind}_items"]
    assert figures[f"worker_{kind}_forwarded"] == forwarded
    aggregate, release = f"aggregate_{kind}", f"release_{kind}"
    assert figures[f"{aggregate}_events"] == figures[f"{aggregate}_consumed"] == forwarded
    assert figures[f"{aggregate}_closing_events"] == 6  # one per input partition
    partials = len(read_all(settings, figures[f"{aggregate}_output_topic"]))
    assert partials > 0
    assert figures[f"{aggregate}_partials"] == figures[f"{release}_partials"] == partials
    assert figures[f"{release}_events"] == forwarded  # events represented by the partials
    aggregates = len(read_all(settings, figures[f"{release}_output_topic"]))
    assert figures[f"{release}_aggregates"] == aggregates
    worker_rate = figures[f"worker_{kind}_events_per_s"]
    for row in (aggregate, release):
        rate = figures[f"{row}_events_per_s"]
        assert rate > 0 and figures[f"{row}_seconds"] > 0, row
        assert rate == pytest.approx(forwarded / figures[f"{row}_seconds"], rel=0.01), row
        assert figures[f"{row}_x_worker"] == pytest.approx(rate / worker_rate, rel=0.01), row
        assert figures[f"{row}_rss_mb"] > 0 and figures[f"{row}_startup_s"] > 0, row


def check_latency_row(settings: Settings, figures: dict[str, Any]) -> None:
    """At half the worker_single rate for LATENCY_S, one non-negative latency per event the
    worker forwarded of the measured period; the topic holds those and the warm-up's."""
    row = "latency_single"
    assert figures[f"{row}_rate_per_s"] == pytest.approx(
        figures["worker_single_events_per_s"] / 2, rel=0.01
    )
    produced = figures[f"{row}_produced"]
    assert produced == pytest.approx(figures[f"{row}_rate_per_s"] * LATENCY_S, abs=2)
    events = figures[f"{row}_events"]
    assert 0 < events == figures[f"{row}_forwarded"] <= produced
    in_topic = events_in(settings, figures[f"{row}_output_topic"])
    assert in_topic == figures[f"{row}_warmup_forwarded"] + events
    assert 0 <= figures[f"{row}_min_ms"] <= figures["latency_p50_ms"]
    assert figures["latency_p50_ms"] <= figures["latency_p99_ms"] <= figures[f"{row}_max_ms"]
