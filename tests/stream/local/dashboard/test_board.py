"""The dashboard's board and history: pure code, no Kafka."""

from __future__ import annotations

from typing import Any

import pytest

from stream.local.dashboard.board import AggregateBoard, PipelineHistory, totals
from tests.stream.local.dashboard.records import record, summary_records


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
    board.add({"schema": "aggregate.v2", "metric": "searches", "window_seconds": "60"})
    window = board.view(top=3)["metrics"]["searches"]["windows"][0]
    assert window["released_cells"] == 20
    assert [c["label"] for c in window["top"]] == ["t19", "t18", "t17"]
    assert len(board.metrics[("searches", 60)].windows[window["start"]].cells) == 5
    assert board.records == 20


def test_summary_cells_rank_by_count() -> None:
    """Time-on-page cells (summaries) are ranked by their count."""
    board = AggregateBoard()
    for found in (
        *summary_records(
            "time_on_page", 1, dims={"page_url": "x"}, values={"count": 3, "mean": 9e5}
        ),
        *summary_records(
            "time_on_page", 1, dims={"page_url": "y"}, values={"count": 30, "mean": 1}
        ),
    ):
        board.add(found)
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
