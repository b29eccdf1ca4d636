"""`anonstream bench` on tiny input against the session broker: every row measured, and the
worker consumed exactly the items the input topics hold."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from stream.local.bench.venv import STAMP, default_peer_python

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

EVENTS = 2000
KINDS = ("single", "batch50")


def test_bench_quick_json(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Every row reports positive events/s and memory; the worker's consumed count equals the
    item count computed from the generated input, for single events and 50-event arrays."""
    peer = default_peer_python()
    with_quix = (peer.parent.parent / STAMP).exists()
    families = ["ceiling", "faust", "worker"] + (["quix"] if with_quix else [])
    command = [
        sys.executable, "-m", "stream", "bench", "--quick", "--json",
        "--events", str(EVENTS), "--bootstrap", kafka_bootstrap, "--rows", ",".join(families),
    ]  # fmt: skip
    if with_quix:
        command += ["--peer-python", str(peer)]
    result = subprocess.run(
        command, capture_output=True, text=True, cwd=tmp_path, timeout=220, check=False
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
    table = result.stdout.splitlines()[0]
    assert "x ceiling" in table and "x peer(quix)" in table
    if not with_quix:
        pytest.skip(
            f"every other row passed; the quix row was not run: no bench virtualenv at "
            f"{peer.parent.parent} (make bench-venv creates it)"
        )
