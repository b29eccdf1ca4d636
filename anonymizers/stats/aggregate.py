"""The aggregate stage: per source partition, per tumbling window, per metric cell.

`PartitionAggregator` is fed the anonymized events of one partition of
`events.pseudonymized` in partition order, with their source offsets. It keeps, for every open
window, each subject's bounded contributions (so distinct counts are exact and an erasure can
remove a subject exactly), and when the partition's watermark passes a window's end it emits
one partial record per cell, followed by one progress record for the close step.

Watermark of the partition: `max(latest event time - allowed_lateness, idle advance)`. A window
`[start, end)` closes when the watermark reaches `end`; an event whose window (of some size) is
closed is counted as late for that size and changes nothing there.

Contract with the stream (see docs/internals/stats.md, "In the stream"):
1. On assignment, build the aggregator and `resume(closed_through)` with the latest progress
   record this partition published (if any), re-apply pending erasures, then consume from
   the committed offset.
2. For each fetched batch call `process_batch(events, offsets=...)`; send the returned records
   in order; before sending a *progress* record, wait until everything sent before it is
   acknowledged (so a progress record is never durable without its partials).
3. Commit the source offset `safe_offset()` only once every record returned so far is acked.
4. Call `advance_idle(now_us)` periodically (processing time, e.g. every second).
Processing is deterministic given the same events in the same order, so a restart that
replays from `safe_offset()` rebuilds identical state for every open window, and the partials
it emits carry the same keys and values (the release side overwrites by key, never adds).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from anonymizers.exceptions import AggregationError
from anonymizers.fields import EVENT_TYPES
from anonymizers.stats.config import AggregationSpec, MetricSpec, ReleaseSpec
from anonymizers.stats.records import (
    PARTIAL_SCHEMA,
    Record,
    dims_part,
    partial_key,
    progress_key,
)
from anonymizers.stats.state import SHIFT, AdmittedWindows, PairStore, SubjectIndex, ValueStore
from anonymizers.stats.windows import (
    MAX_EVENT_US,
    MIN_EVENT_US,
    US_PER_S,
    Window,
    format_time_us,
    parse_time_us,
)

_NO_TIME = -(2**62)


@dataclass(frozen=True, slots=True)
class _Space:
    """A cell space: metrics over the same events and dimensions share one state."""

    index: int
    event_types: tuple[str, ...]
    dimensions: tuple[str, ...]
    value_field: str | None
    value_max: int
    metrics: tuple[MetricSpec, ...]
    max_cells: int
    """M: cells one subject counts in per window."""
    max_contributions: int
    """L: contributions of one subject to one cell per window."""
    sizes: frozenset[int]
    """The window sizes some metric of the space is released at."""


_Plan = tuple[tuple[int, str | None, _Space], ...]
"""What an event type feeds: (space index, the dimension when there is exactly one, space)."""


def subject_digest(subject: str) -> bytes:
    """The 128-bit digest a subject pseudonym is interned under (SHA-256, OpenSSL, first 16
    bytes): two pseudonyms share an id only if these collide."""
    return hashlib.sha256(subject.encode()).digest()[:16]


@dataclass(slots=True)
class _Epoch:
    subjects: SubjectIndex = field(default_factory=SubjectIndex)
    # Per space: cell key (the value for one dimension, else a tuple) to id, and back.
    cell_maps: list[dict[object, int]] = field(default_factory=list)
    cell_lists: list[list[str | tuple[str, ...]]] = field(default_factory=list)
    # (space index, window size) -> the windows each subject counts in (dp's W).
    admitted: dict[tuple[int, int], AdmittedWindows] = field(default_factory=dict)


@dataclass(slots=True)
class _OpenWindow:
    window: Window
    epoch: int
    first_offset: int
    stores: dict[int, PairStore | ValueStore] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.stores.values())


def _dimension_value(value: object) -> str | None:
    """Text of a dimension value; None when missing (None, "") or not a scalar."""
    if type(value) is str:
        return value or None
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is int:
        return str(value)
    return None


class PartitionAggregator:
    """Windowed, contribution-bounded aggregation of one source partition.

    `aggregation` gives windows, lateness and metrics; `release` gives the contribution
    bounds L (`max_contributions_per_cell`) and M (`max_cells_per_metric`), which are applied
    here, before anything leaves the partition. `partition` is the source partition number.
    """

    def __init__(
        self, aggregation: AggregationSpec, release: ReleaseSpec, *, partition: int
    ) -> None:
        self._config = aggregation
        self._partition = partition
        self._lateness_us = aggregation.allowed_lateness * US_PER_S
        self._idle_us = aggregation.idle_timeout * US_PER_S
        self._epoch_us = aggregation.epoch_seconds * US_PER_S
        self._smallest_us = aggregation.windows[0] * US_PER_S
        spaces: dict[tuple[object, ...], list[MetricSpec]] = {}
        for metric in aggregation.metrics:
            key = (*metric.space_key, metric.value_max if metric.aggregate == "summary" else 0)
            spaces.setdefault(key, []).append(metric)
        self._spaces: tuple[_Space, ...] = tuple(
            _Space(
                index=i,
                event_types=tuple(sorted(ms[0].event_types)),
                dimensions=ms[0].dimensions,
                value_field=ms[0].value_field,
                value_max=ms[0].value_max,
                metrics=tuple(ms),
                max_cells=release.cells_bound(ms[0]),
                max_contributions=release.contributions_bound(ms[0]),
                sizes=frozenset(
                    size for size in aggregation.windows for m in ms if m.released_at(size)
                ),
            )
            for i, ms in enumerate(spaces.values())
        )
        epoch_s = aggregation.epoch_seconds
        # W per window size, where it binds (fewer than the windows of that size in an epoch).
        self._caps: dict[int, int] = {
            size: cap for size, cap in aggregation.windows_per_day.items() if cap < epoch_s // size
        }
        self._exclude_bots = aggregation.exclude_bots
        # Per event type: (space index, the dimension when there is exactly one, space).
        self._plans: dict[str, _Plan] = {
            t: tuple(
                (s.index, s.dimensions[0] if len(s.dimensions) == 1 else None, s)
                for s in self._spaces
                if t in s.event_types
            )
            for t in EVENT_TYPES
        }
        self._epochs: dict[int, _Epoch] = {}
        self._open: dict[tuple[int, int], _OpenWindow] = {}
        self._watermark: int | None = None
        self._max_event_us: int | None = None
        self._reported_through: int | None = None
        self._next_offset: int | None = None
        # Erased pseudonym -> event time after which it is forgotten (None: not known yet).
        self._erased: dict[str, int | None] = {}
        self._active_since_idle_check = False
        self._idle_since: int | None = None
        self.counters: Counter[str] = Counter()
        """Event counts by outcome, for metrics and logs: `events`, `malformed:<reason>`,
        `late:<window seconds>`, `skipped:<metric>:<reason>`, `erased_events`,
        `ignored_event_type`, `erased_entries`."""

    # ------------------------------------------------------------------ inputs

    @property
    def partition(self) -> int:
        """The source partition this aggregator serves."""
        return self._partition

    def resume(self, closed_through: int | str) -> None:
        """Restore the watermark of the latest published progress record of this partition
        (its `closed_through`); windows ending at or before it are closed. Call before any
        event."""
        if self._next_offset is not None or self._open:
            raise AggregationError("resume() must be called before any event is processed")
        through = (
            parse_time_us(closed_through) if isinstance(closed_through, str) else closed_through
        )
        if through is None:
            raise AggregationError(
                f"closed_through must be RFC 3339 or microseconds; got {closed_through!r}"
            )
        self._watermark = through
        self._reported_through = through

    def process(self, event: Mapping[str, Any], *, offset: int) -> list[Record]:
        """Process one event; see `process_batch`."""
        return self.process_batch([event], offsets=offset)

    def process_batch(
        self, events: Sequence[Mapping[str, Any]], *, offsets: int | Sequence[int]
    ) -> list[Record]:
        """Process events in partition order; `offsets` is the source offset of each event, or
        one offset for all (a batch message). Returns partial and progress records of windows
        that closed, in the order they must be sent. Malformed events are counted and skipped,
        never raised."""
        n_events = len(events)
        if isinstance(offsets, int):
            offset_list = [offsets] * n_events
        else:
            offset_list = list(offsets)
            if len(offset_list) != n_events:
                raise AggregationError("offsets must give one offset per event")
        if not n_events:
            return []
        self._next_offset = max(self._next_offset or 0, max(offset_list) + 1)
        self._active_since_idle_check = True
        times: list[int] = []
        digests = bytearray()
        event_offsets: list[int] = []
        # Per space: `event index << 32 | cell id` in arrival order, and summary values.
        entries: list[list[int]] = [[] for _ in self._spaces]
        values: list[list[int]] = [[] for _ in self._spaces]
        self.counters["events"] += n_events
        epoch_us = self._epoch_us
        for i, event in enumerate(events):
            admitted = self._admit(event)
            if admitted is None:
                continue
            plan, t, subject = admitted
            epoch = self._epochs.get(t // epoch_us) or self._epoch_state(t // epoch_us)
            shifted = len(times) << 32
            times.append(t)
            event_offsets.append(offset_list[i])
            digests += subject_digest(subject)
            for space_index, single, space in plan:
                placed = self._place(event, single, space, epoch, values)
                if placed is not None:
                    entries[space_index].append(shifted | placed)
        if times:
            self._ingest(times, bytes(digests), event_offsets, entries, values)
        return self._close_ready()

    def _admit(self, event: object) -> tuple[_Plan, int, str] | None:
        """(plan, event time, subject) of an event this partition counts; None (counted by
        reason) for a malformed one, an erased subject's, or a type no metric reads."""
        counters = self.counters
        if type(event) is not dict and not isinstance(event, Mapping):
            counters["malformed:not_object"] += 1
            return None
        plan = self._plans.get(event.get("event_type"))  # type: ignore[arg-type]
        if plan is None:
            counters["malformed:bad_event_type"] += 1
            return None
        t = parse_time_us(event.get("occurred_at"))
        if t is None or not MIN_EVENT_US <= t < MAX_EVENT_US:
            counters["malformed:bad_time"] += 1
            return None
        subject = event.get("subject")
        if type(subject) is not str or not subject:
            counters["malformed:bad_subject"] += 1
            return None
        if subject in self._erased:
            counters["erased_events"] += 1
            return None
        if self._exclude_bots and event.get("hardware") == "bot":
            counters["excluded:bot"] += 1
            return None
        if not plan:
            counters["ignored_event_type"] += 1
            return None
        return plan, t, subject

    def _place(
        self,
        event: Mapping[str, Any],
        single: str | None,
        space: _Space,
        epoch: _Epoch,
        values: list[list[int]],
    ) -> int | None:
        """The cell id of `event` in `space` (its value appended to `values`); None, counted,
        when a dimension or the value is missing or bad."""
        if single is not None:
            key: object = event.get(single)
            if type(key) is not str or not key:
                key = self._odd_cell(key, space)
                if key is None:
                    return None
        else:
            key = self._cell_of(event, space)
            if key is None:
                return None
        if space.value_field is not None:
            value = self._value_of(event, space)
            if value is None:
                return None
            values[space.index].append(value)
        cell_map = epoch.cell_maps[space.index]
        cid = cell_map.get(key)
        if cid is None:
            cid = cell_map[key] = len(cell_map)
            epoch.cell_lists[space.index].append(key)
        return cid

    def _within_cap(self, space: _Space, size: int, start_us: int, sids: Any) -> Any:
        """Which of these contributions (subject ids, one window) come from subjects within
        their W windows of this size in the window's epoch: a subject's first W windows of
        a size count, in partition order; later ones are dropped for good."""
        number, offset = divmod(start_us, self._epoch_us)
        epoch = self._epochs[number]
        admitted = epoch.admitted.get((space.index, size))
        if admitted is None:
            admitted = epoch.admitted[(space.index, size)] = AdmittedWindows(self._caps[size])
        # The window's number in its epoch (1,440 minutes in a day's).
        return admitted.admit(sids, offset // (size * US_PER_S))

    def _skip_capped(self, space: _Space, size: int, dropped: int) -> None:
        for metric in space.metrics:
            self.counters[f"capped_windows:{metric.name}:{size}"] += dropped

    def _epoch_state(self, epoch: int) -> _Epoch:
        state = self._epochs.get(epoch)
        if state is None:
            state = _Epoch()
            state.cell_maps = [{} for _ in self._spaces]
            state.cell_lists = [[] for _ in self._spaces]
            self._epochs[epoch] = state
        return state

    def _skip(self, space: _Space, reason: str) -> None:
        for metric in space.metrics:
            self.counters[f"skipped:{metric.name}:{reason}"] += 1

    def _odd_cell(self, raw: object, space: _Space) -> str | None:
        """The cell of a one-dimension space whose value is not a non-empty string."""
        text = _dimension_value(raw)
        if text is None:
            self._skip(space, "missing_dimension" if raw is None or raw == "" else "bad_dimension")
        return text

    def _cell_of(self, event: Mapping[str, Any], space: _Space) -> tuple[str, ...] | None:
        key: list[str] = []
        for dimension in space.dimensions:
            raw = event.get(dimension)
            text = _dimension_value(raw)
            if text is None:
                missing = raw is None or raw == ""
                self._skip(space, "missing_dimension" if missing else "bad_dimension")
                return None
            key.append(text)
        return tuple(key)

    def _value_of(self, event: Mapping[str, Any], space: _Space) -> int | None:
        raw = event.get(space.value_field)  # type: ignore[arg-type]
        if type(raw) is int:
            value = raw
        elif type(raw) is float and math.isfinite(raw):
            value = math.floor(raw)
        else:
            self._skip(space, "bad_value")
            return None
        # Clamped again here although upstream clamps: outliers never reach a sum.
        return min(max(value, 0), space.value_max)

    def _ingest(
        self,
        times: list[int],
        digests: bytes,
        event_offsets: list[int],
        entries: list[list[int]],
        values: list[list[int]],
    ) -> None:
        t = np.array(times, np.int64)
        offs = np.array(event_offsets, np.int64)
        pairs = np.frombuffer(digests, dtype="<u8").reshape(-1, 2)
        # Subject ids, per epoch (windows never straddle an epoch).
        epochs = t // self._epoch_us
        sids = np.empty(len(t), np.int64)
        for epoch in np.unique(epochs).tolist():
            sel = epochs == epoch
            sids[sel] = self._epochs[int(epoch)].subjects.ids_for(
                np.ascontiguousarray(pairs[sel, 0]), np.ascontiguousarray(pairs[sel, 1])
            )
        subject_keys = sids.astype(np.uint64) << SHIFT
        # Watermark in force before each event: events are late against it, not their own.
        floor = _NO_TIME if self._watermark is None else self._watermark
        running = np.maximum.accumulate(t) - self._lateness_us
        before = np.empty(len(t), np.int64)
        before[0] = floor
        before[1:] = np.maximum(running[:-1], floor)
        packed = [np.array(e, np.uint64) for e in entries]
        positions = [(p >> SHIFT).astype(np.int64) for p in packed]
        cell_ids = [p & np.uint64(0xFFFF_FFFF) for p in packed]
        value_arrays = [np.array(v, np.uint32) for v in values]
        for size in self._config.windows:
            span = size * US_PER_S
            starts = t - t % span
            late = starts + span <= before
            if late.any():
                self.counters[f"late:{size}"] += int(late.sum())
            for space in self._spaces:
                pos = positions[space.index]
                if not len(pos) or size not in space.sizes:
                    continue
                cid = cell_ids[space.index]
                val = value_arrays[space.index] if space.value_field is not None else None
                ok = ~late[pos]
                if not ok.all():
                    pos, cid = pos[ok], cid[ok]
                    val = None if val is None else val[ok]
                if not len(pos):
                    continue
                w_starts = starts[pos]
                first_start = int(w_starts[0])
                uniform = bool((w_starts == first_start).all())
                for w_start in [first_start] if uniform else np.unique(w_starts).tolist():
                    sel = slice(None) if uniform else w_starts == w_start
                    p = pos[sel]
                    keys = subject_keys[p] | cid[sel]
                    vals = None if val is None else val[sel]
                    if size in self._caps:
                        keep = self._within_cap(space, size, int(w_start), sids[p])
                        if not keep.all():
                            self._skip_capped(space, size, int((~keep).sum()))
                            keys, p = keys[keep], p[keep]
                            vals = None if vals is None else vals[keep]
                            if not len(keys):
                                continue
                    window = self._window_state(size, int(w_start), int(offs[p].min()))
                    _store(window, space, keys, vals)
        latest = int(t.max())
        if self._max_event_us is None or latest > self._max_event_us:
            self._max_event_us = latest
        self._raise_watermark(self._max_event_us - self._lateness_us)

    def _window_state(self, size: int, start_us: int, offset: int) -> _OpenWindow:
        key = (size, start_us)
        state = self._open.get(key)
        if state is None:
            state = _OpenWindow(Window.of(size, start_us), start_us // self._epoch_us, offset)
            self._open[key] = state
        elif offset < state.first_offset:
            state.first_offset = offset
        return state

    def _raise_watermark(self, candidate: int) -> None:
        if self._watermark is None or candidate > self._watermark:
            self._watermark = candidate

    # ------------------------------------------------------------------ time

    def advance_idle(self, now_us: int) -> list[Record]:
        """Processing-time tick (microseconds since the epoch). When no event arrived for
        `idle_timeout` seconds of ticks, the watermark moves to
        `now - allowed_lateness - idle_timeout` so an idle partition never holds back releases
        (Flink-style idleness). Returns the records of windows that closed."""
        if self._active_since_idle_check or self._idle_since is None:
            self._active_since_idle_check = False
            self._idle_since = now_us
            return []
        if now_us - self._idle_since < self._idle_us:
            return []
        self._raise_watermark(now_us - self._lateness_us - self._idle_us)
        return self._close_ready()

    def close_all(self) -> list[Record]:
        """Close every open window now (end of a bounded input, e.g. `anonstream preview`)."""
        if self._open:
            self._raise_watermark(max(w.window.end_us for w in self._open.values()))
        return self._close_ready()

    # ------------------------------------------------------------------ erasure

    def erase(self, subject: str) -> int:
        """Remove every contribution of the pseudonym `subject` from every open window of this
        partition, exactly, and ignore its later events here until two epochs have passed.
        Returns the number of state entries removed. Closed windows are final and unchanged."""
        digest = subject_digest(subject)
        hi, lo = np.frombuffer(digest, dtype="<u8").tolist()
        # Forget it two epochs after the latest event time known here (the watermark after a
        # `resume`); before any, once the first events tell the time (a partition assigned
        # after the erasure replays its open windows, over many batches and closes).
        reference = self._max_event_us if self._max_event_us is not None else self._watermark
        self._erased[subject] = None if reference is None else self._forget_after(reference)
        removed = 0
        for epoch_no, epoch in self._epochs.items():
            sid = epoch.subjects.find(int(hi), int(lo))
            if sid is None:
                continue
            for window in self._open.values():
                if window.epoch == epoch_no:
                    for store in window.stores.values():
                        removed += store.remove_subject(sid)
        self.counters["erased_entries"] += removed
        return removed

    # ------------------------------------------------------------------ state

    def safe_offset(self) -> int | None:
        """The source offset to commit: the lowest offset an open window still needs, or the
        next offset when none does; None before any event. A restart from it (after
        `resume`) rebuilds every open window exactly."""
        needed = [w.first_offset for w in self._open.values() if w.stores]
        if needed:
            return min(needed)
        return self._next_offset

    def open_windows(self) -> list[Window]:
        """Windows holding state, in close order."""
        return sorted(w.window for w in self._open.values())

    def state_bytes(self) -> int:
        """Bytes of numpy state (subject indexes and window stores), for metrics."""
        epochs = sum(e.subjects.nbytes for e in self._epochs.values())
        return epochs + sum(w.nbytes for w in self._open.values())

    # ------------------------------------------------------------------ closing

    def _close_ready(self) -> list[Record]:
        wm = self._watermark
        if wm is None:
            return []
        closing = sorted(
            (w for w in self._open.values() if w.window.end_us <= wm), key=lambda w: w.window
        )
        crossed = self._reported_through is None or (
            wm // self._smallest_us > self._reported_through // self._smallest_us
        )
        if not closing and not crossed:
            return []
        out: list[Record] = []
        summaries: list[dict[str, Any]] = []
        for state in closing:
            del self._open[(state.window.size, state.window.start_us)]
            records, summary = self._close_window(state)
            out.extend(records)
            if summary is not None:
                summaries.append(summary)
        through = format_time_us(wm)
        out.append(
            Record(
                progress_key(self._partition, through),
                {
                    "schema": PARTIAL_SCHEMA,
                    "kind": "progress",
                    "partition": self._partition,
                    "closed_from": None
                    if self._reported_through is None
                    else format_time_us(self._reported_through),
                    "closed_through": through,
                    "windows": summaries,
                },
            )
        )
        self._reported_through = wm
        self._forget_epochs(wm)
        return out

    def _forget_after(self, reference_us: int) -> int:
        return (reference_us // self._epoch_us + 2) * self._epoch_us

    def _forget_epochs(self, wm: int) -> None:
        open_epochs = {w.epoch for w in self._open.values()}
        for epoch in [e for e in self._epochs if (e + 1) * self._epoch_us <= wm]:
            if epoch not in open_epochs:
                del self._epochs[epoch]
        for subject, until in list(self._erased.items()):
            if until is None:
                if self._max_event_us is not None:
                    self._erased[subject] = self._forget_after(self._max_event_us)
            elif until <= wm:
                del self._erased[subject]

    def _close_window(self, state: _OpenWindow) -> tuple[list[Record], dict[str, Any] | None]:
        window = state.window
        epoch = self._epochs[state.epoch]
        start, end = window.start, window.end
        cells: list[dict[str, Any]] = []
        metrics_summary: dict[str, dict[str, int]] = {}
        for space in self._spaces:
            store = state.stores.get(space.index)
            if store is None:
                continue
            store.compact(bound_l=space.max_contributions, bound_m=space.max_cells)
            if not len(store.keys):
                continue
            subjects_total = int(np.count_nonzero(_heads(store.subject_ids())))
            cell_list = epoch.cell_lists[space.index]
            for metric in space.metrics:
                if not metric.released_at(window.size):
                    continue
                metric_cells = _metric_cells(store, metric)
                for cid, fields in metric_cells:
                    cell_key = cell_list[cid]
                    texts = (cell_key,) if isinstance(cell_key, str) else cell_key
                    dimensions = dict(zip(space.dimensions, texts, strict=True))
                    cells.append(
                        {
                            "schema": PARTIAL_SCHEMA,
                            "kind": "partial",
                            "partition": self._partition,
                            "metric": metric.name,
                            "window_start": start,
                            "window_end": end,
                            "window_seconds": window.size,
                            "dimensions": dimensions,
                            **fields,
                        }
                    )
                metrics_summary[metric.name] = {
                    "cells": len(metric_cells),
                    "subjects": subjects_total,
                }
        if not cells:
            return [], None
        cells.sort(key=lambda c: (c["metric"], dims_part(c["dimensions"])))
        report = hashlib.sha256(orjson.dumps(cells, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]
        records = []
        for partial in cells:
            partial["report"] = report
            records.append(
                Record(
                    partial_key(
                        self._partition,
                        partial["metric"],
                        start,
                        end,
                        dims_part(partial["dimensions"]),
                    ),
                    partial,
                )
            )
        summary = {
            "window_start": start,
            "window_end": end,
            "window_seconds": window.size,
            "report": report,
            "metrics": metrics_summary,
        }
        return records, summary


def _store(window: _OpenWindow, space: _Space, keys: Any, values: Any) -> None:
    """Add (subject, cell) keys, and their values for a summary, to a window's store of
    `space`, bounded by its L and M."""
    store = window.stores.get(space.index)
    if values is None:
        if store is None:
            store = window.stores[space.index] = PairStore.empty()
        assert isinstance(store, PairStore)
        store.add(keys, bound_l=space.max_contributions, bound_m=space.max_cells)
        return
    if store is None:
        store = window.stores[space.index] = ValueStore.empty()
    assert isinstance(store, ValueStore)
    store.add(keys, values, bound_l=space.max_contributions, bound_m=space.max_cells)


def _heads(sorted_values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    head = np.ones(len(sorted_values), bool)
    head[1:] = sorted_values[1:] != sorted_values[:-1]
    return head


def _metric_cells(
    store: PairStore | ValueStore, metric: MetricSpec
) -> list[tuple[int, dict[str, Any]]]:
    """Per cell id, the partial fields of `metric` from a compacted store."""
    out: list[tuple[int, dict[str, Any]]] = []
    cell_ids = store.cell_ids()
    if isinstance(store, PairStore):
        size = int(cell_ids.max()) + 1
        subjects = np.bincount(cell_ids, minlength=size)
        counts = np.bincount(cell_ids, weights=store.counts.astype(np.float64), minlength=size)
        for cid in np.flatnonzero(subjects).tolist():
            fields: dict[str, Any] = {"subjects": int(subjects[cid])}
            if metric.aggregate == "count":
                fields["count"] = int(counts[cid])
            out.append((cid, fields))
        return out
    size = int(cell_ids.max()) + 1
    heads = _heads(store.keys)
    subjects = np.bincount(cell_ids[heads], minlength=size)
    n_values = np.bincount(cell_ids, minlength=size)
    sums = np.zeros(size, np.int64)
    np.add.at(sums, cell_ids, store.values.astype(np.int64))
    bins = np.minimum(store.values // metric.bin_width, metric.nbins - 1).astype(np.int64)
    combined, counts = np.unique(cell_ids * metric.nbins + bins, return_counts=True)
    hist_cells, hist_bins = combined // metric.nbins, combined % metric.nbins
    bounds = np.searchsorted(hist_cells, np.arange(size + 1))
    for cid in np.flatnonzero(subjects).tolist():
        lo, hi = int(bounds[cid]), int(bounds[cid + 1])
        out.append(
            (
                cid,
                {
                    "subjects": int(subjects[cid]),
                    "count": int(n_values[cid]),
                    "sum": int(sums[cid]),
                    "bin_width": metric.bin_width,
                    "histogram": [
                        [int(b), int(c)]
                        for b, c in zip(
                            hist_bins[lo:hi].tolist(), counts[lo:hi].tolist(), strict=True
                        )
                    ],
                },
            )
        )
    return out
