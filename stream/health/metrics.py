"""Prometheus metrics of a worker, read from the stage's own counters at scrape time.

Counting stays a plain integer increment on the hot path; the collector turns the counters
into Prometheus families only when /metrics is scraped. The one timing on the hot path,
`LatencyHistogram.observe`, is a bisect over a dozen bucket bounds and two additions.

The families every stage shares (the worker's state, its consent table, its keys, its input
consumer) are built here from what the stage passes: plain figures, or objects read through
the protocols below, so that this package never imports a stage or a table.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

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


# ------------------------------------------------------------------ families every stage shares
class InputProgress(Protocol):
    """What `input_families` reads of an input watch (`stream.health.probes.ProgressWatch`)."""

    topic: str
    latency: LatencyHistogram
    probe_errors: int

    def lag(self) -> dict[int, int] | None: ...

    def idle_s(self) -> float: ...

    def commit_age_s(self) -> float: ...


class ConsentFigures(Protocol):
    """What `consent_families` reads of a consent table (`stream.tables.consent.ConsentTable`)."""

    records_applied: int
    invalid_records: int

    def __len__(self) -> int: ...


class ProcessFacts:
    """Facts a worker learns once at start-up, exported with every stage's families."""

    geo_build_epoch: float | None = None
    """Build time of the geolocation database the chain reads (Unix seconds; None: none)."""


PROCESS_FACTS = ProcessFacts()


def process_families(*, now: Callable[[], float] = time.time) -> Iterator[Any]:
    """The start-up facts of `PROCESS_FACTS` (the geolocation database's age, when one is read)."""
    if PROCESS_FACTS.geo_build_epoch is not None:
        yield gauge(
            "anonstream_geo_database_age_seconds",
            "Seconds since the geolocation database was built (its metadata's build_epoch).",
            now() - PROCESS_FACTS.geo_build_epoch,
        )


def worker_families(stage: str, *, ready: bool, alive: bool) -> Iterator[Any]:
    """The worker's stage, whether /readyz and /healthz answer 200, and its start-up facts."""
    yield gauge("anonstream_worker_info", "The worker's stage.", 1.0, {"stage": stage})
    yield gauge("anonstream_ready", "1 when /readyz answers 200.", float(ready))
    yield gauge("anonstream_alive", "1 when /healthz answers 200.", float(alive))
    yield from process_families()


def consent_families(consent: ConsentFigures, *, lag: int | None) -> Iterator[Any]:
    """The consent table's size and records; `lag`: records not yet applied (None: unknown)."""
    yield gauge("anonstream_consent_subjects", "Subjects in the consent table.", len(consent))
    yield counter(
        "anonstream_consent_records_applied", "Consent records applied.", consent.records_applied
    )
    yield counter(
        "anonstream_consent_records_invalid", "Consent records skipped.", consent.invalid_records
    )
    yield gauge(
        "anonstream_consent_lag",
        "Consent records on the topic not yet applied (-1: unknown).",
        -1 if lag is None else lag,
    )


def key_families(
    *, epochs: Sequence[int], current: bool, refused: Mapping[str, int]
) -> Iterator[Any]:
    """The epochs whose pseudonym key is held, whether the current epoch's is, and the key
    proposals refused by reason (`stream.tables.keyring`: malformed, unauthenticated,
    out_of_window)."""
    latest = max(epochs, default=-1)
    yield gauge("anonstream_key_epoch", "Latest epoch whose key is held (-1: none).", latest)
    yield gauge(
        "anonstream_key_current", "1 when the key of the current epoch is held.", float(current)
    )
    yield counter_by(
        "anonstream_key_proposals_refused",
        "Records of the key topic refused: malformed, unauthenticated (not wrapped under the "
        "key-encryption key) or out_of_window (for an epoch past the next one).",
        "reason",
        {reason: float(count) for reason, count in refused.items()},
    )


def input_families(
    watch: InputProgress | None, *, unit: str, commit_age_s: float | None = None
) -> Iterator[Any]:
    """Latency, lag, progress and commit age of the stage's input consumer."""
    if watch is None:
        return
    yield histogram(
        "anonstream_processing_seconds",
        f"Processing time per input {unit} (decode to sent and, for batches, committed).",
        watch.latency,
    )
    lag = watch.lag()
    yield gauge_by(
        "anonstream_consumer_lag",
        f"Messages of {watch.topic} not yet processed, per assigned partition.",
        "partition",
        {str(p): float(n) for p, n in (lag or {}).items()},
    )
    yield gauge(
        "anonstream_consumer_lag_known", "1 when the lag figures are fresh.", float(lag is not None)
    )
    yield gauge(
        "anonstream_seconds_since_progress",
        "Seconds since the last processed message or batch.",
        watch.idle_s(),
    )
    yield gauge(
        "anonstream_commit_age_seconds",
        "anonymize: seconds the committed offsets stayed behind the processed ones; "
        "aggregate and release: seconds since the last commit (their commit point waits "
        "for open windows by design).",
        watch.commit_age_s() if commit_age_s is None else commit_age_s,
    )
    yield counter(
        "anonstream_offset_probe_errors", "Failed broker offset probes.", watch.probe_errors
    )


def counted(retired: Counter[str], held: Iterable[Counter[str]]) -> Counter[str]:
    """What the workers of revoked partitions counted plus what those held count now
    (Prometheus counters never go down)."""
    total: Counter[str] = Counter(retired)
    for counters in held:
        total.update(counters)
    return total
