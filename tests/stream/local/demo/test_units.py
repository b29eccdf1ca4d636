"""The dashboard's board and history, health judgements, metric helpers, the demo's policy
and view: pure code, no Kafka."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from anonymizers.policy import default_policy, load_policy
from stream.health.metrics import LatencyHistogram, labelled, parse_samples
from stream.health.probes import ProbeResult, ProgressWatch, consent_behind
from stream.local.dashboard.board import AggregateBoard, PipelineHistory, totals
from stream.local.demo import Snapshot, aggregate_lines, view_lines, write_demo_policy


def record(
    metric: str,
    start_minute: int,
    *,
    cell: str = "cell",
    dims: dict[str, str] | None = None,
    value: Any = 12,
    seconds: int = 60,
) -> dict[str, Any]:
    """An aggregate.v1 record of a window starting at 12:`start_minute`."""
    return {
        "schema": "aggregate.v1",
        "metric": metric,
        "aggregate": "summary" if isinstance(value, dict) else "count",
        "window_start": f"2026-01-01T12:{start_minute:02d}:00Z",
        "window_end": f"2026-01-01T12:{start_minute + 1:02d}:00Z",
        "window_seconds": seconds,
        "cell": cell,
        "dimensions": dims
        if dims is not None
        else ({"page_url": "https://s/p"} if cell == "cell" else {}),
        "value": value,
        "distinct_subjects": None if cell == "other" else 11,
        "k": 10,
        "policy_version": "demo",
    }


# ------------------------------------------------------------------------------- board
def test_board_keeps_the_latest_windows_and_ranks_cells() -> None:
    """At most `max_windows` windows per metric (the latest), cells ranked by value, `other`
    kept apart, older stragglers ignored, other window sizes kept separately."""
    board = AggregateBoard(max_windows=3)
    for minute in range(5):
        board.add(record("page_views", minute, dims={"page_url": "a"}, value=10 + minute))
        board.add(record("page_views", minute, dims={"page_url": "b"}, value=50))
        board.add(record("page_views", minute, cell="other", value=7))
    board.add(record("page_views", 0, dims={"page_url": "late"}, value=99))  # too old now
    board.add(record("page_views", 0, dims={"page_url": "h"}, value=500, seconds=3600))
    view = board.view()
    assert view["window_seconds"] == 60 and view["window_sizes"] == [60, 3600]
    windows = view["metrics"]["page_views"]["windows"]
    assert [w["start"][11:16] for w in windows] == ["12:02", "12:03", "12:04"]
    latest = windows[-1]
    assert [c["label"] for c in latest["top"]] == ["b", "a"]
    assert latest["other"] == 7 and latest["released_cells"] == 2
    assert latest["cells_sum"] == 50 + 14
    hourly = board.view(seconds=3600)["metrics"]["page_views"]["windows"]
    assert [c["value"] for c in hourly[0]["top"]] == [500]


def test_board_bounds_cells_per_window_and_ignores_other_records() -> None:
    """A window keeps its largest `max_cells` cells but counts every released cell; records
    of another schema or without a window are ignored."""
    board = AggregateBoard(max_cells=5)
    for index in range(20):
        board.add(record("searches", 1, dims={"search_terms": f"t{index}"}, value=20 + index))
    board.add({"schema": "aggregate.v2", "metric": "searches"})
    board.add({"schema": "aggregate.v1", "metric": "searches", "window_seconds": "60"})
    window = board.view(top=3)["metrics"]["searches"]["windows"][0]
    assert window["released_cells"] == 20
    assert [c["label"] for c in window["top"]] == ["t19", "t18", "t17"]
    assert len(board.metrics[("searches", 60)].windows[window["start"]].cells) == 5
    assert board.records == 20


def test_summary_cells_rank_by_count() -> None:
    """Time-on-page cells (summaries) are ranked by their count."""
    board = AggregateBoard()
    board.add(record("time_on_page", 1, dims={"page_url": "x"}, value={"count": 3, "mean": 9e5}))
    board.add(record("time_on_page", 1, dims={"page_url": "y"}, value={"count": 30, "mean": 1}))
    top = board.view()["metrics"]["time_on_page"]["windows"][0]["top"]
    assert [c["label"] for c in top] == ["y", "x"]


# ----------------------------------------------------------------------------- history
def samples(consumed: float, dropped: float, released: float, suppressed: float) -> dict[str, Any]:
    return totals(
        {
            "anonstream_events_consumed_total": consumed,
            'anonstream_events_dropped_total{reason="gpc"}': dropped,
            "anonstream_cells_released_total": released,
            'anonstream_cells_suppressed_total{reason="below_k"}': suppressed,
        }
    )


def test_history_rates_and_suppressed_share() -> None:
    """Rates are deltas over ~10 s of samples; a counter that went back (worker restart) gives
    0, not a negative rate; the suppressed share covers the cells decided in the last minute."""
    history = PipelineHistory()
    history.add(0.0, samples(0, 0, 0, 0))
    history.add(10.0, samples(2000, 100, 0, 0))
    history.add(20.0, samples(4000, 300, 25, 75))
    history.add(30.0, samples(10, 0, 25, 75))  # anonymize restarted
    rates = history.rates()
    assert [r["in"] for r in rates] == [200.0, 200.0, 0.0]
    assert rates[1]["dropped"] == {"gpc": 20.0}
    assert rates[0]["suppressed_share"] is None
    assert rates[1]["suppressed_share"] == pytest.approx(0.75)
    assert history.latest()["consumed"] == 10


# ------------------------------------------------------------------------------ health
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def watch(clock: Clock, *, commits: bool = True) -> ProgressWatch:
    w = ProgressWatch(
        topic="t", group_id="g", stall_timeout_s=60, commit_follows_processing=commits, clock=clock
    )
    return w


def test_stall_needs_lag_and_no_progress_for_the_timeout() -> None:
    """Lag without progress for longer than the timeout is a stall; progress, or no lag,
    is not; nothing is judged before the stage starts consuming or on stale figures."""
    clock = Clock()
    w = watch(clock, commits=False)
    w.probed(ProbeResult(end={0: 100, 1: 50}, committed={0: 10}, at=clock.now))
    assert w.stalled() is None, "not consuming yet"
    w.start(lambda: {0, 1})
    assert w.lag() == {0: 90, 1: 50}, "committed offset, else 0, before the first message"
    w.processed(0, 100, 0.01)
    w.processed(1, 40, 0.01)
    assert w.lag() == {0: 0, 1: 10}
    clock.now += 61
    assert w.stalled() is None, "probe figures older than 30 s are not used"
    w.probed(ProbeResult(end={0: 100, 1: 50}, committed={0: 100, 1: 40}, at=clock.now))
    assert w.stalled() == "lag without progress"
    w.processed(1, 50, 0.01)
    assert w.stalled() is None
    clock.now += 120
    w.probed(ProbeResult(end={0: 100, 1: 50}, committed={0: 100, 1: 50}, at=clock.now))
    assert w.stalled() is None, "idle without lag is fine"
    assert w.latency.observations == 3


def test_commit_age_counts_only_while_processed_offsets_are_uncommitted() -> None:
    """Anonymize: committed offsets that stop moving while processed ones are ahead is a
    stall after the timeout; the aggregate and release stages are not judged on commits."""
    clock = Clock()
    w = watch(clock)
    w.start(lambda: {0})
    w.processed(0, 10, 0.001)
    w.probed(ProbeResult(end={0: 10}, committed={0: 10}, at=clock.now))
    assert w.commit_age_s() == 0.0
    clock.now += 5
    w.processed(0, 20, 0.001)
    w.probed(ProbeResult(end={0: 20}, committed={0: 10}, at=clock.now))
    assert w.commit_age_s() == pytest.approx(5.0)
    for _ in range(12):
        clock.now += 5
        w.processed(0, 20, 0.001)  # progress keeps the lag rule quiet
        w.probed(ProbeResult(end={0: 20}, committed={0: 10}, at=clock.now))
    assert w.stalled() == "commits stopped"
    w.probed(ProbeResult(end={0: 20}, committed={0: 20}, at=clock.now))
    assert w.stalled() is None and w.commit_age_s() == 0.0
    relaxed = watch(clock, commits=False)
    relaxed.start(lambda: {0})
    relaxed.processed(0, 20, 0.001)
    relaxed.probed(ProbeResult(end={0: 20}, committed={0: 1}, at=clock.now - 1))
    clock.now += 29
    assert relaxed.stalled() is None


def test_recovery_is_not_a_stall_unless_it_hangs() -> None:
    """While recovering (no message can be processed), lag is not a stall; past ten stall
    timeouts the recovery itself counts as hung; after it, the stall clock starts afresh."""
    clock = Clock()
    w = watch(clock, commits=False)
    w.start(lambda: {0})
    with w.recovering():
        clock.now += 120
        w.probed(ProbeResult(end={0: 100}, committed={0: 0}, at=clock.now))
        assert w.stalled() is None
        clock.now += 500
        w.probed(ProbeResult(end={0: 100}, committed={0: 0}, at=clock.now))
        assert w.stalled() == "recovery hangs"
    assert w.stalled() is None and w.idle_s() == 0.0
    clock.now += 61
    w.probed(ProbeResult(end={0: 100}, committed={0: 0}, at=clock.now))
    assert w.stalled() == "lag without progress"


def test_consent_behind_compares_with_earlier_end_offsets() -> None:
    assert consent_behind({0: 5, 1: 3}, {0: 5, 1: 4})
    assert not consent_behind({0: 5, 1: 9}, {0: 5, 1: 4})
    assert not consent_behind({}, {})


# ----------------------------------------------------------------------------- metrics
def test_latency_histogram_is_cumulative_with_inf() -> None:
    histogram = LatencyHistogram((0.01, 0.1))
    for seconds in (0.005, 0.01, 0.05, 3.0):
        histogram.observe(seconds)
    assert histogram.cumulative() == [("0.01", 2.0), ("0.1", 3.0), ("+Inf", 4.0)]
    assert histogram.total_s == pytest.approx(3.065)


def test_parse_and_label_samples() -> None:
    text = (
        "# HELP x\n"
        'anonstream_events_dropped_total{reason="gpc"} 3.0\n'
        'anonstream_events_dropped_total{reason="gpc_like"} 4.0\n'
        'anonstream_consumer_lag{partition="1",topic="t"} 2.0\n'
        "anonstream_ready 1.0\n"
    )
    values = parse_samples(text)
    assert values["anonstream_ready"] == 1.0
    assert labelled(values, "anonstream_events_dropped_total", "reason") == {
        "gpc": 3.0,
        "gpc_like": 4.0,
    }
    assert labelled(values, "anonstream_consumer_lag", "topic") == {"t": 2.0}


# -------------------------------------------------------------------------------- demo
def test_demo_policy_changes_only_lateness_idle_timeout_and_version(tmp_path: Path) -> None:
    """The demo's policy file is the shipped default but for lateness, idle timeout (10 s)
    and the policy version; k and everything else stay as shipped."""
    path = write_demo_policy(tmp_path / "demo-policy.toml")
    demo = load_policy(path).model_dump()
    default = default_policy().model_dump()
    assert demo["aggregation"].pop("allowed_lateness") != default["aggregation"].pop(
        "allowed_lateness"
    )
    assert demo["aggregation"].pop("idle_timeout") != default["aggregation"].pop("idle_timeout")
    assert demo.pop("policy_version") == "demo"
    default.pop("policy_version")
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
