"""Prometheus metrics of a worker, read from the stage's own counters at scrape time.

Counting stays a plain integer increment on the hot path; the collector turns the counters
into Prometheus families only when /metrics is scraped. The one timing on the hot path,
`LatencyHistogram.observe`, is a bisect over a dozen bucket bounds and two additions.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry

LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Upper bounds (seconds) of the processing latency histogram's buckets (+Inf added)."""


class CallbackCollector(Collector):
    """Calls `produce()` at each scrape; it yields metric families."""

    def __init__(self, produce: Callable[[], Iterator[Any]]) -> None:
        self._produce = produce

    def collect(self) -> Iterator[Any]:
        yield from self._produce()


class LatencyHistogram:
    """A fixed-bucket histogram of durations in seconds, cheap enough for every message."""

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS_S) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # last: above every bound (+Inf only)
        self.total_s = 0.0
        self.observations = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total_s += seconds
        self.observations += 1

    def cumulative(self) -> list[tuple[str, float]]:
        """(le, cumulative count) pairs as Prometheus wants them, +Inf last."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            out.append((_le(bound), float(running)))
        out.append(("+Inf", float(running + self.counts[-1])))
        return out


def _le(bound: float) -> str:
    return repr(float(bound))


def counter(name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> Any:
    family = CounterMetricFamily(name, doc, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), value)
    return family


def counter_by(name: str, doc: str, label: str, values: Mapping[str, float]) -> Any:
    family = CounterMetricFamily(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def gauge(name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> Any:
    family = GaugeMetricFamily(name, doc, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), value)
    return family


def gauge_by(name: str, doc: str, label: str, values: Mapping[str, float]) -> Any:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def histogram(name: str, doc: str, source: LatencyHistogram) -> Any:
    family = HistogramMetricFamily(name, doc)
    family.add_metric([], source.cumulative(), sum_value=source.total_s)
    return family


def new_registry() -> CollectorRegistry:
    return CollectorRegistry(auto_describe=False)


def parse_samples(text: str) -> dict[str, float]:
    """Prometheus text exposition -> {"name{labels}": value} (samples only; the format the
    workers write: no timestamps, label values without spaces or escaped quotes)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            values[name] = float(value)
        except ValueError:
            continue
    return values


def labelled(samples: Mapping[str, float], name: str, label: str) -> dict[str, float]:
    """The samples of `name` by the value of `label` (summed over any other labels)."""
    out: dict[str, float] = {}
    prefix = name + "{"
    for key, value in samples.items():
        if not key.startswith(prefix):
            continue
        for part in key[len(prefix) : -1].split(","):
            found, _, quoted = part.partition("=")
            if found == label:
                label_value = quoted.strip('"')
                out[label_value] = out.get(label_value, 0.0) + value
                break
    return out
