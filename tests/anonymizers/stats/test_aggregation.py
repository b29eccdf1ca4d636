"""The aggregate stage against the reference: exact cells, bounds, lateness, erasure, replay."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from anonymizers.exceptions import AggregationError
from anonymizers.stats.aggregate import PartitionAggregator
from anonymizers.stats.config import AggregationSpec, ReleaseSpec
from anonymizers.stats.records import Record
from anonymizers.stats.windows import parse_time_us

from .conftest import SMALL_RELEASE, run_partitions, small_config
from .reference import BASE_S, CellKey, at, reference_cells

PAGES = ["/", "/a", "/b", "/c|x,y=z\\"]
COUNTRIES = ["FR", "DE", "ES"]
TERMS = ["shoes", "red shoes", "socks"]


def make_event(
    subject: int, kind: int, page: int, country: int, second: float, value: int
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_type": ["page_view", "page_view", "page_leave", "search"][kind],
        "occurred_at": at(second),
        "subject": f"pseudonym-{subject}",
    }
    if kind in (0, 1, 2):
        event["page_url"] = PAGES[page]
        event["country"] = COUNTRIES[country]
    if kind == 2:
        event["time_on_page_ms"] = value
    if kind == 3:
        event["search_terms"] = TERMS[page % 3]
    return event


event_tuples = st.tuples(
    st.integers(0, 9),
    st.integers(0, 3),
    st.integers(0, 3),
    st.integers(0, 2),
    st.integers(0, 479),
    st.integers(-5, 4_000_000),
)
event_lists = st.lists(event_tuples, max_size=80).map(lambda ts: [make_event(*t) for t in ts])


def partial_cells(records: Iterable[Record]) -> dict[CellKey, dict[str, Any]]:
    """Merge partial records (latest per key) into cells keyed like the reference."""
    latest = {r.key: r.value for r in records if r.value["kind"] == "partial"}
    out: dict[CellKey, dict[str, Any]] = {}
    for value in latest.values():
        start = parse_time_us(value["window_start"])
        assert start is not None
        key = (
            value["metric"],
            value["window_seconds"],
            start // 1_000_000 - BASE_S,
            tuple(sorted(value["dimensions"].items())),
        )
        cell = out.setdefault(key, {"subjects": 0, "count": 0, "sum": 0, "histogram": Counter()})
        cell["subjects"] += value["subjects"]
        cell["count"] += value.get("count", 0)
        cell["sum"] += value.get("sum", 0)
        for b, c in value.get("histogram", []):
            cell["histogram"][b] += c
    return out


def expected_cells(
    events: Sequence[Mapping[str, Any]], aggregation: AggregationSpec, release: ReleaseSpec
) -> dict[CellKey, dict[str, Any]]:
    out: dict[CellKey, dict[str, Any]] = {}
    for (name, size, start, dims), cell in reference_cells(events, aggregation, release).items():
        metric = aggregation.metric(name)
        fields: dict[str, Any] = {
            "subjects": len(cell.subjects),
            "count": 0,
            "sum": 0,
            "histogram": Counter(),
        }
        if metric.aggregate == "count":
            fields["count"] = cell.count
        if metric.aggregate == "summary":
            fields["count"] = cell.count
            fields["sum"] = sum(cell.values)
            fields["histogram"] = Counter(
                min(v // metric.bin_width, metric.nbins - 1) for v in cell.values
            )
        out[(name, size, start, dims)] = fields
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=event_lists,
    lateness=st.sampled_from([0, 30, 200]),
    batch=st.integers(1, 30),
    bounds=st.tuples(st.integers(1, 3), st.integers(1, 3)),
)
def test_partials_equal_reference(
    events: list[dict[str, Any]], lateness: int, batch: int, bounds: tuple[int, int]
) -> None:
    """Partials of one partition, in any batching and with out-of-order events, equal the
    reference computed from the definitions (lateness, first M cells, at most L per cell)."""
    aggregation = small_config(allowed_lateness=lateness)
    release = ReleaseSpec(max_contributions_per_cell=bounds[0], max_cells_per_metric=bounds[1])
    records = run_partitions([events], aggregation, release, batch=batch)
    assert partial_cells(records) == expected_cells(events, aggregation, release)


@settings(max_examples=40, deadline=None)
@given(events=event_lists, partitions=st.integers(1, 4))
def test_partition_split_equals_single_partition(
    events: list[dict[str, Any]], partitions: int
) -> None:
    """Keyed by subject, partitions hold disjoint subjects: their partials add up to the single
    partition's (in-order input, so lateness is the same everywhere)."""
    events = sorted(events, key=lambda e: e["occurred_at"])
    aggregation = small_config()
    split: list[list[dict[str, Any]]] = [[] for _ in range(partitions)]
    for event in events:
        split[int(event["subject"].rsplit("-", 1)[1]) % partitions].append(event)
    single = partial_cells(run_partitions([events], aggregation, SMALL_RELEASE))
    merged = partial_cells(run_partitions(split, aggregation, SMALL_RELEASE))
    assert merged == single


def test_heavy_subject_moves_a_cell_by_at_most_l() -> None:
    """A subject with 100,000 page views adds at most L to its cell and touches at most M
    cells; a time on page of 10^9 ms is clamped to value_max."""
    aggregation = small_config(windows=(60,))
    release = ReleaseSpec(max_contributions_per_cell=4, max_cells_per_metric=2)
    heavy = [
        {
            "event_type": "page_view",
            "occurred_at": at(i % 60 / 1.0 * 0.999),
            "subject": "heavy",
            "page_url": PAGES[i % 4],
            "country": "FR",
        }
        for i in range(100_000)
    ]
    heavy.append(
        {
            "event_type": "page_leave",
            "occurred_at": at(30),
            "subject": "heavy",
            "page_url": "/",
            "time_on_page_ms": 10**9,
        }
    )
    heavy.append(
        {
            "event_type": "page_leave",
            "occurred_at": at(31),
            "subject": "light",
            "page_url": "/",
            "time_on_page_ms": 2_500,
        }
    )
    cells = partial_cells(run_partitions([heavy], aggregation, release, batch=5000))
    page_views = {dims: c for (m, _, _, dims), c in cells.items() if m == "page_views"}
    assert len(page_views) == 2  # M = 2 cells
    assert all(c["count"] == 4 for c in page_views.values())  # L = 4 each
    assert set(page_views) == {
        (("page_url", PAGES[0]),),
        (("page_url", PAGES[1]),),
    }  # the first two
    time_on_page = cells[("time_on_page", 60, 0, (("page_url", "/"),))]
    assert time_on_page["sum"] == 1_800_000 + 2_500
    assert time_on_page["histogram"] == Counter({1800: 1, 2: 1})


def test_malformed_events_are_counted_never_raised() -> None:
    """Non-objects, unknown types, bad, naive or absurd times, missing subjects, bad dimension
    and value types are skipped and counted; good events around them still count."""
    aggregator = PartitionAggregator(small_config(windows=(60,)), ReleaseSpec(), partition=0)
    good = {
        "event_type": "page_view",
        "occurred_at": at(1),
        "subject": "s",
        "page_url": "/",
        "country": "FR",
    }
    bad: list[Any] = [
        "not an object",
        {**good, "event_type": "purchase"},
        {**good, "occurred_at": "yesterday"},
        {**good, "occurred_at": "2024-05-01T12:00:00"},
        {**good, "occurred_at": "9999-12-31T23:59:59Z"},
        {**good, "occurred_at": "1970-01-01T00:00:00Z"},
        {**good, "subject": None},
        {**good, "subject": ""},
        {**good, "page_url": ["/"]},
        {**good, "page_url": None},
        {
            "event_type": "page_leave",
            "occurred_at": at(2),
            "subject": "s",
            "page_url": "/",
            "time_on_page_ms": "long",
        },
        {
            "event_type": "page_leave",
            "occurred_at": at(2),
            "subject": "s",
            "page_url": "/",
            "time_on_page_ms": float("nan"),
        },
    ]
    out = aggregator.process_batch([good, *bad, good], offsets=0) + aggregator.close_all()
    c = aggregator.counters
    assert c["events"] == 14
    assert c["malformed:not_object"] == 1
    assert c["malformed:bad_event_type"] == 1
    assert c["malformed:bad_time"] == 4
    assert c["malformed:bad_subject"] == 2
    assert c["skipped:page_views:bad_dimension"] == 1
    assert c["skipped:page_views:missing_dimension"] == 1
    assert c["skipped:time_on_page:bad_value"] == 2
    views = [
        r.value for r in out if r.value["kind"] == "partial" and r.value["metric"] == "page_views"
    ]
    assert [(v["count"], v["subjects"]) for v in views] == [(2, 1)]


def test_late_events_are_counted_and_change_nothing() -> None:
    """An event for a window the watermark has passed is counted as late for that window
    size and does not enter it, while a larger window still open takes it."""
    aggregation = small_config(windows=(60, 240), allowed_lateness=10)
    aggregator = PartitionAggregator(aggregation, ReleaseSpec(), partition=0)
    view = {"event_type": "page_view", "subject": "s", "page_url": "/", "country": "FR"}
    first = aggregator.process_batch(
        [{**view, "occurred_at": at(5)}, {**view, "occurred_at": at(75)}], offsets=[0, 1]
    )
    late = aggregator.process_batch([{**view, "occurred_at": at(6), "subject": "t"}], offsets=2)
    rest = aggregator.close_all()
    assert aggregator.counters["late:60"] == 1
    assert aggregator.counters["late:240"] == 0
    cells = partial_cells(first + late + rest)
    assert cells[("page_views", 60, 0, (("page_url", "/"),))]["subjects"] == 1
    assert cells[("page_views", 240, 0, (("page_url", "/"),))]["subjects"] == 2


@settings(max_examples=30, deadline=None)
@given(events=event_lists, victim=st.integers(0, 9), cut=st.floats(0, 1))
def test_erasure_equals_a_run_without_the_subject(
    events: list[dict[str, Any]], victim: int, cut: float
) -> None:
    """Erasing a subject mid-stream leaves exactly the partials of a run that never saw its
    events (in-order input; windows the erasure finds already closed are excluded)."""
    events = sorted(events, key=lambda e: e["occurred_at"])
    aggregation = small_config(windows=(240,))
    name = f"pseudonym-{victim}"
    split = int(cut * len(events))
    aggregator = PartitionAggregator(aggregation, SMALL_RELEASE, partition=0)
    before = aggregator.process_batch(events[:split], offsets=0)
    removed = aggregator.erase(name)
    after = aggregator.process_batch(events[split:], offsets=1) + aggregator.close_all()
    closed = partial_cells(before)
    without = partial_cells(
        run_partitions([[e for e in events if e["subject"] != name]], aggregation, SMALL_RELEASE)
    )
    expected = {
        k: v for k, v in without.items() if (k[1], k[2]) not in {(c[1], c[2]) for c in closed}
    }
    assert partial_cells(after) == expected
    if not closed and any(
        e["subject"] == name and e["event_type"] != "search" for e in events[:split]
    ):
        assert removed > 0


@pytest.mark.parametrize("resumed", [False, True], ids=["fresh", "resumed"])
def test_an_erasure_before_any_event_holds_for_the_whole_replay(resumed: bool) -> None:
    """A partition (re)assigned after an erasure gets it before any event (from the consent
    topic): the subject's events stay out however many batches and window closes the replay
    takes, as in a run that never saw them."""
    events = [
        {
            "event_type": "page_view",
            "occurred_at": at(second),
            "subject": "victim" if second % 7 == 0 else f"s{second % 5}",
            "page_url": "/a",
            "country": "FR",
        }
        for second in range(0, 1800, 3)
    ]
    aggregation = small_config(windows=(60, 120))
    aggregator = PartitionAggregator(aggregation, SMALL_RELEASE, partition=0)
    if resumed:
        aggregator.resume(at(-60))
    aggregator.erase("victim")
    out: list[Record] = []
    for i in range(0, len(events), 10):  # many batches, closing windows between them
        out += aggregator.process_batch(events[i : i + 10], offsets=i)
    out += aggregator.close_all()
    without = run_partitions(
        [[e for e in events if e["subject"] != "victim"]], aggregation, SMALL_RELEASE
    )
    assert partial_cells(out) == partial_cells(without)
    assert aggregator.counters["erased_events"] == sum(e["subject"] == "victim" for e in events)


@settings(max_examples=40, deadline=None)
@given(events=event_lists, crash=st.floats(0, 1), lateness=st.sampled_from([0, 45]))
def test_restart_from_safe_offset_reproduces_the_same_partials(
    events: list[dict[str, Any]], crash: float, lateness: int
) -> None:
    """Crash after any batch: a new aggregator resumed from the last progress record and fed
    from safe_offset() emits, under the same keys, the same values, and the final compacted
    set of partials equals an uninterrupted run's."""
    aggregation = small_config(allowed_lateness=lateness)
    uninterrupted = run_partitions([events], aggregation, SMALL_RELEASE, batch=5)
    first = PartitionAggregator(aggregation, SMALL_RELEASE, partition=0)
    sent: list[Record] = []
    stop = int(crash * len(events))
    for i in range(0, stop, 5):
        sent += first.process_batch(
            events[i : min(i + 5, stop)], offsets=list(range(i, min(i + 5, stop)))
        )
    commit = first.safe_offset() or 0
    progress = [r for r in sent if r.value["kind"] == "progress"]
    second = PartitionAggregator(aggregation, SMALL_RELEASE, partition=0)
    if progress:
        second.resume(progress[-1].value["closed_through"])
    for i in range(commit, len(events), 5):
        sent += second.process_batch(
            events[i : i + 5], offsets=list(range(i, min(i + 5, len(events))))
        )
    sent += second.close_all()
    first_values: dict[str, Any] = {}
    for record in sent:
        if record.value["kind"] == "partial":
            assert first_values.setdefault(record.key, record.value) == record.value
    assert partial_cells(sent) == partial_cells(uninterrupted)


def test_idle_partition_reports_progress_and_closes_windows() -> None:
    """A partition without events reports its progress once idle; one with an open window
    closes it by processing time after the idle timeout, not before."""
    aggregation = small_config(windows=(60,), allowed_lateness=10, idle_timeout=30)
    empty = PartitionAggregator(aggregation, ReleaseSpec(), partition=1)
    now = (BASE_S + 600) * 1_000_000
    assert empty.advance_idle(now) == []
    assert empty.advance_idle(now + 29_000_000) == []
    out = empty.advance_idle(now + 30_000_000)
    assert [r.value["kind"] for r in out] == ["progress"]
    assert out[0].value["closed_from"] is None
    busy = PartitionAggregator(aggregation, ReleaseSpec(), partition=0)
    busy.process(
        {
            "event_type": "page_view",
            "occurred_at": at(590),
            "subject": "s",
            "page_url": "/",
            "country": "FR",
        },
        offset=0,
    )
    assert busy.advance_idle(now) == []
    assert busy.advance_idle(now + 29_000_000) == []
    closed = busy.advance_idle(now + 60_000_000)
    assert [r.value["kind"] for r in closed].count("partial") == 3
    assert busy.open_windows() == []


def test_safe_offset_holds_the_oldest_open_window() -> None:
    """safe_offset() is the first offset of the oldest open window, then moves on when it closes."""
    aggregator = PartitionAggregator(small_config(windows=(60,)), ReleaseSpec(), partition=0)
    view = {"event_type": "page_view", "subject": "s", "page_url": "/", "country": "FR"}
    assert aggregator.safe_offset() is None
    aggregator.process({**view, "occurred_at": at(1)}, offset=10)
    aggregator.process({**view, "occurred_at": at(2)}, offset=11)
    assert aggregator.safe_offset() == 10
    aggregator.process({**view, "occurred_at": at(61)}, offset=12)
    assert aggregator.safe_offset() == 12
    aggregator.close_all()
    assert aggregator.safe_offset() == 13


def test_memory_state_is_compact() -> None:
    """Open-window state stays far below a dict per pair: under 60 bytes per subject for one
    window and one metric (bytes of numpy arrays)."""
    aggregation = small_config(windows=(86400,), metrics=small_config().metrics[:1])
    aggregator = PartitionAggregator(aggregation, ReleaseSpec(), partition=0)
    rng = random.Random(4)
    events = [
        {
            "event_type": "page_view",
            "occurred_at": at(rng.random() * 3000),
            "subject": f"s{i}",
            "page_url": f"/{rng.randrange(50)}",
            "country": "FR",
        }
        for i in range(50_000)
    ]
    aggregator.process_batch(events, offsets=0)
    assert aggregator.state_bytes() / 50_000 < 60


@pytest.mark.parametrize("offsets", [[1, 2], [3]])
def test_offsets_must_match_events(offsets: list[int]) -> None:
    """A per-event offset list must have one offset per event."""
    aggregator = PartitionAggregator(small_config(), ReleaseSpec(), partition=0)
    if len(offsets) == 2:
        assert aggregator.process_batch([], offsets=[]) == []
        with pytest.raises(AggregationError, match="one offset per event"):
            aggregator.process_batch([{}], offsets=offsets)
    else:
        with pytest.raises(AggregationError, match="one offset per event"):
            aggregator.process_batch([{}, {}], offsets=offsets)


@settings(max_examples=30, deadline=None)
@given(
    events=event_lists,
    heavy=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 479)), min_size=1, max_size=400),
    bounds=st.tuples(st.integers(1, 4), st.integers(1, 3)),
)
def test_one_subject_moves_any_cell_by_at_most_l(
    events: list[dict[str, Any]], heavy: list[tuple[int, int]], bounds: tuple[int, int]
) -> None:
    """Adding one subject's events, however many, changes any cell's count by at most L and
    its distinct subjects by at most 1, and changes at most M cells per metric and window."""
    events = sorted(events, key=lambda e: e["occurred_at"])
    extra = [make_event(99, 0, page, 0, second, 0) for page, second in heavy]
    both = sorted(events + extra, key=lambda e: e["occurred_at"])
    aggregation = small_config()
    release = ReleaseSpec(max_contributions_per_cell=bounds[0], max_cells_per_metric=bounds[1])
    without = partial_cells(run_partitions([events], aggregation, release))
    with_heavy = partial_cells(run_partitions([both], aggregation, release))
    empty = {"subjects": 0, "count": 0, "sum": 0, "histogram": Counter()}
    changed: Counter[tuple[str, int, int]] = Counter()
    for key in set(without) | set(with_heavy):
        before, after = without.get(key, empty), with_heavy.get(key, empty)
        assert 0 <= after["count"] - before["count"] <= bounds[0]
        assert after["subjects"] - before["subjects"] in (0, 1)
        if after != before:
            changed[key[:3]] += 1
    assert all(n <= bounds[1] for n in changed.values())


# ----------------------------------------------------------- dp's W: windows per subject
def _first_windows(cap: int, calls: Sequence[tuple[list[int], int]]) -> list[list[bool]]:
    """Reference for `AdmittedWindows`: a dict of lists, a subject's first `cap` distinct
    windows in arrival order admitted, each later one refused."""
    held: dict[int, list[int]] = {}
    answers = []
    for sids, window in calls:
        for sid in sids:
            starts = held.setdefault(sid, [])
            if window not in starts and len(starts) < cap:
                starts.append(window)
        answers.append([window in held[sid] for sid in sids])
    return answers


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cap=st.integers(1, 7),
    calls=st.lists(
        st.tuples(
            st.lists(st.integers(0, 40), min_size=0, max_size=12),
            st.integers(0, 1439),
        ),
        max_size=60,
    ).map(lambda calls: [(sids, window % 9 * 160) for sids, window in calls]),
)
def test_admitted_windows_are_each_subjects_first_w(
    cap: int, calls: list[tuple[list[int], int]]
) -> None:
    """The compact admitted windows (numpy rows, lists past them) answer as a dict of lists
    would, call by call, on either side of its row width."""
    import numpy as np

    from anonymizers.stats.state import AdmittedWindows

    admitted = AdmittedWindows(cap)
    got = [admitted.admit(np.array(sids, np.int64), window).tolist() for sids, window in calls]
    assert got == _first_windows(cap, calls)


def test_admitted_windows_stay_small_per_subject() -> None:
    """One window each for 100,000 subjects: the dense rows only, no Python object per
    subject (a dict of lists held about 150 bytes a subject)."""
    import numpy as np

    from anonymizers.stats.state import AdmittedWindows

    admitted = AdmittedWindows(60)
    admitted.admit(np.arange(100_000, dtype=np.int64), 7)
    assert admitted.nbytes / 100_000 <= 4 * AdmittedWindows.SLOTS * 1.5
    assert admitted.admit(np.array([5, 99_999], np.int64), 7).tolist() == [True, True]
