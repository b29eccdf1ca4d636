"""Metric helpers (`stream.health.metrics`): the latency histogram, parsing scraped samples."""

from __future__ import annotations

import pytest

from stream.health.metrics import LatencyHistogram, labelled, parse_samples


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
