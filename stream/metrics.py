"""Prometheus metrics of a worker, read from the stage's own counters at scrape time.

Counting stays a plain integer increment on the hot path; the collector turns the counters
into Prometheus families only when /metrics is scraped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry


class CallbackCollector(Collector):
    """Calls `produce()` at each scrape; it yields metric families."""

    def __init__(self, produce: Callable[[], Iterator[Any]]) -> None:
        self._produce = produce

    def collect(self) -> Iterator[Any]:
        yield from self._produce()


def counter(name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> Any:
    family = CounterMetricFamily(name, doc, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), value)
    return family


def counter_by(name: str, doc: str, label: str, values: dict[str, int]) -> Any:
    family = CounterMetricFamily(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def gauge(name: str, doc: str, value: float) -> Any:
    family = GaugeMetricFamily(name, doc)
    family.add_metric([], value)
    return family


def new_registry() -> CollectorRegistry:
    return CollectorRegistry(auto_describe=False)
