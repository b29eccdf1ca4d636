"""The demo's policy and live view: pure code, no Kafka."""

from __future__ import annotations

import tomllib
from pathlib import Path

from anonymizers.policy import default_policy, load_policy
from stream.local.dashboard.board import AggregateBoard
from stream.local.demo import Snapshot, aggregate_lines, view_lines, write_demo_policy
from tests.stream.local.dashboard.records import record


def test_demo_policy_changes_only_mode_windows_lateness_idle_timeout_and_version(
    tmp_path: Path,
) -> None:
    """The demo's policy file is the shipped default but for exact mode with every metric at
    every window size, lateness and idle timeout (10 s) and the policy version; k, the caps
    and everything else stay as shipped."""
    path = write_demo_policy(tmp_path / "demo-policy.toml")
    demo = load_policy(path).model_dump()
    default = default_policy().model_dump()
    for section, name in (("aggregation", "allowed_lateness"), ("aggregation", "idle_timeout")):
        assert demo[section].pop(name) != default[section].pop(name)
    assert demo["release"].pop("mode") == "exact" and default["release"].pop("mode") == "dp"
    assert demo.pop("policy_version") == "demo"
    default.pop("policy_version")
    assert all(not m.pop("windows") for m in demo["aggregation"]["metrics"])
    assert all(m.pop("windows") for m in default["aggregation"]["metrics"])
    assert demo == default
    raw = tomllib.loads(path.read_text())
    assert raw["aggregation"]["allowed_lateness"] == "10s"
    assert raw["release"]["k_min_subjects"] == 10


def test_view_lines_show_rates_drops_suppression_and_latest_windows() -> None:
    metrics = {
        "anonymize": {
            "anonstream_ready": 1.0,
            "anonstream_events_consumed_total": 1000.0,
            "anonstream_events_forwarded_total": 800.0,
            'anonstream_events_dropped_total{reason="gpc"}': 150.0,
            'anonstream_events_deadlettered_total{reason="not_json"}': 50.0,
            'anonstream_consumer_lag{partition="0"}': 3.0,
        },
        "release": {
            "anonstream_ready": 1.0,
            "anonstream_cells_released_total": 40.0,
            'anonstream_cells_suppressed_total{reason="below_k"}': 120.0,
        },
        "aggregate": {},
    }
    board = AggregateBoard()
    board.add(record("searches", 3, dims={"search_terms": "bague or"}, value=31))
    board.add(record("searches", 3, cell="other", value=200))
    data = {"aggregates": board.view()}
    lines = view_lines(
        Snapshot(elapsed_s=42.0, metrics=metrics, data=data),
        {"in": 200.0, "out": 160.0},
        duration_s=120,
        dashboard="http://127.0.0.1:1/dashboard",
    )
    text = "\n".join(lines)
    assert "42s of 120s" in text and "http://127.0.0.1:1/dashboard" in text
    assert "anonymize ready, lag 3" in text and "aggregate starting" in text
    assert "in 200/s (1 000)" in text and "anonymized out 160/s (800)" in text
    assert "gpc 150" in text and "not_json 50" in text
    assert "40 cells released" in text and "120 suppressed below k" in text
    assert "searches" in text and '"bague or" 31' in text and "other 200" in text
    assert aggregate_lines({})[0].startswith("released  nothing yet")
