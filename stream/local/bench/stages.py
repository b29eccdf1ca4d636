"""The bench's aggregate and release rows: the stages after the anonymize worker, each one
`anonstream worker --stage aggregate|release` process on the output of the row before it.

`aggregate_<input>` reads what the `worker_<input>` row wrote to its events.pseudonymized;
`release_<input>` reads what `aggregate_<input>` wrote to its stats.partials. Each runs with
an app id of its own (fresh consumer group and state), the key and consent topics of the
worker row (the aggregate stage applies erasures from the consent topic; both only read).

Timing, on the broker's clock: the stage is started on a fresh, empty input topic and, once
it reports the lag of every input partition (group joined, partition workers built, waiting
for records), the upstream row's records are copied into it (same partitions, keys, values
and headers, in order) in record batches. The row's seconds run from the append time of the
first copied record to that of the stage's last output record (input and outputs are
`LogAppendTime` topics). A pre-filled topic would leave the start to a /metrics poll, which
misses the first fetch: one fetch of the aggregate stage holds thousands of events. The copy
goes faster than the stages read (record batches of up to 512 KiB) and overlaps the start of
their work; it is timed beside the row (`copy_s`).

Closing the windows. Events arrive in event time close to now, so the policy's hour and day
windows would stay open for the run's whole length and the aggregate stage would write no
partials for them, and the release stage decide nothing. After the copy, each partition of
the aggregate row's input gets one closing event (a page view of a bench-only subject, three
times `stream.worker.open_for_s` later than now): its watermark passes the end of every
window of the real events, which close, as they do in production when later events arrive.
The closing events' own windows stay open; they are counted apart (`closing_events`) and
are not among the row's events. The aggregate stage is done when its group has committed,
on every partition, a watermark (commit metadata) at or past `closed_through`; the release
stage when its commits' checkpoints say every window before that is decided. Both commit
only after the broker acknowledged what they sent, so their last output record is on the
broker then.

Figures. aggregate: the events the worker row forwarded (the closing events aside) per second.
release: its input is partial records, not events; its metrics count partials and released
cells. Its events/s is the number of events aggregated into the partials it read (the
aggregate row's events) over its seconds: the event rate it keeps up with when that traffic's
windows close at once. Its partial records and partials/s are reported beside.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson

from anonymizers.stats.windows import US_PER_S, format_time_us, parse_time_us
from stream.local.bench.exceptions import BenchError
from stream.local.bench.kafkaio import Message, committed_offsets, produce, read_topic
from stream.local.bench.rows import (
    Bench,
    Output,
    RowResult,
    append_span,
    create_row_topics,
    wait_group_assigned,
    watch_workers,
)
from stream.local.bench.traffic import INPUT_PARTITIONS
from stream.settings import Settings

AGGREGATED = 'anonstream_aggregate_events_total{outcome="events"}'
"""Events the aggregate stage fed to its engine (after dropping a replay's duplicates)."""
PARTIALS_CONSUMED = "anonstream_partials_consumed_total"
CLOSING_SUBJECT = "bench-closing-event"
CLOSING_LEAD = 3
"""Closing events come this many times `open_for_s` (the policy's largest window plus its
lateness and idle timeout) after now; done means committed at least one `open_for_s` ahead."""


def aggregate_row(bench: Bench, kind: str, *, workers: int = 1) -> RowResult:
    """`anonstream worker --stage aggregate` on a copy of the `worker_<kind>` row's output;
    `workers` processes in one group (row `aggregate<N>_<kind>` above 1)."""
    from stream.resources import load_stream_policy
    from stream.worker import open_for_s

    name = f"aggregate_{kind}" if workers == 1 else f"aggregate{workers}_{kind}"
    upstream = bench.output(f"worker_{kind}", needed_by=name)
    settings = bench.row_settings(
        name,
        upstream.settings,
        fresh=(
            "topic_pseudonymized",
            "topic_deadletter",
            "topic_partials",
            "topic_aggregates",
            "topic_ledger",
        ),
    )
    bench.progress(f"row {name} ...")
    copied = _copy_of(settings, upstream.settings.topic_pseudonymized)
    events = sum(output_events(message.value) for message in copied)
    if events != upstream.events:
        raise BenchError(
            f"{name}: {upstream.settings.topic_pseudonymized} holds {events} events; "
            f"worker_{kind} counted {upstream.events} forwarded"
        )
    open_for_us = open_for_s(load_stream_policy(settings)) * US_PER_S
    now_us = int(time.time() * US_PER_S)
    closing = [
        Message(partition, _closing_event(now_us + CLOSING_LEAD * open_for_us))
        for partition in range(INPUT_PARTITIONS)
    ]
    closed_through_us = now_us + open_for_us
    result = _run_stage(
        bench,
        name=name,
        stage="aggregate",
        settings=settings,
        input_topic=settings.topic_pseudonymized,
        outputs=[settings.topic_partials],
        messages=[*copied, *closing],
        counter=AGGREGATED,
        expected=events + len(closing),
        events=events,
        closed_through_us=closed_through_us,
        workers=workers,
    )
    partials = append_span(settings, [settings.topic_partials]).records
    result.consumed = (result.consumed or 0) - len(closing)
    result.figures.update(
        closing_events=len(closing), partials=partials, output_topic=settings.topic_partials
    )
    if workers == 1:
        bench.outputs[name] = Output(
            settings=settings, result=result, events=events, closed_through_us=closed_through_us
        )
    return result


def release_row(bench: Bench, kind: str) -> RowResult:
    """`anonstream worker --stage release` on a copy of the `aggregate_<kind>` row's partials."""
    name = f"release_{kind}"
    upstream = bench.output(f"aggregate_{kind}", needed_by=name)
    if upstream.closed_through_us is None:
        raise BenchError(f"{name}: aggregate_{kind} closed no window")
    # The aggregate row's events.pseudonymized stays: the release stage counts its partitions
    # (the sources whose progress it waits for).
    settings = bench.row_settings(
        name,
        upstream.settings,
        fresh=("topic_partials", "topic_aggregates", "topic_ledger"),
    )
    bench.progress(f"row {name} ...")
    copied = _copy_of(settings, upstream.settings.topic_partials)
    result = _run_stage(
        bench,
        name=name,
        stage="release",
        settings=settings,
        input_topic=settings.topic_partials,
        outputs=[settings.topic_aggregates, settings.topic_ledger],
        messages=copied,
        counter=PARTIALS_CONSUMED,
        expected=len(copied),
        events=upstream.events,
        closed_through_us=upstream.closed_through_us,
    )
    released = append_span(settings, [settings.topic_aggregates]).records
    result.figures.update(
        partials=len(copied),
        partials_per_s=round(len(copied) / result.seconds, 1) if result.seconds > 0 else 0.0,
        aggregates=released,
        output_topic=settings.topic_aggregates,
    )
    result.consumed = None  # its input is partials: `partials` above
    return result


def _run_stage(
    bench: Bench,
    *,
    name: str,
    stage: str,
    settings: Settings,
    input_topic: str,
    outputs: list[str],
    messages: list[Message],
    counter: str,
    expected: int,
    events: int,
    closed_through_us: int,
    workers: int = 1,
) -> RowResult:
    """Start `stage` (`workers` processes in one group) on the empty `input_topic`, copy
    `messages` in once it waits for them, and watch it until its `counter` (summed) reaches
    `expected` and its commits `closed_through_us` (see module doc). The row's figures are per
    `events`; CPU and RSS are the processes' sums."""
    from stream.local.bench.procfs import cpu_seconds

    create_row_topics(settings, append_time=[input_topic, *outputs])
    spawned = time.time()
    with (
        bench.running(name, settings, stage, workers=workers) as started,
        committed_offsets(settings, group_id=settings.group_id(stage), topic=input_topic) as read,
    ):
        ready = wait_group_assigned(started, partitions=INPUT_PARTITIONS, name=name)
        cpu_start = {w.process.pid: cpu_seconds(w.process.pid) for w in started}
        copy_started = time.monotonic()
        produce(settings, input_topic, messages)
        copy_s = time.monotonic() - copy_started
        watched = watch_workers(
            started,
            expected=expected,
            name=name,
            exact=workers == 1,
            counter=counter,
            cpu_start=cpu_start,
            done=_committed_through(read, closed_through_us),
        )
    first = append_span(settings, [input_topic])
    last = append_span(settings, outputs)
    return RowResult(
        name=name,
        events=events,
        seconds=(last.last_ms - first.first_ms) / 1000,
        cpu_s=watched.cpu_s,
        rss_mb=watched.rss_mb,
        startup_s=ready - spawned,
        consumed=watched.consumed,
        figures={"copy_s": round(copy_s, 3)},
    )


def _committed_through(
    read: Callable[[], dict[int, tuple[int, str]]], through_us: int
) -> Callable[[], bool]:
    """`done`: the group's commit metadata on every input partition is a time at or past
    `through_us` (the aggregate stage's watermark published, the release stage's checkpoint)."""

    def done() -> bool:
        times = [parse_time_us(metadata) for _, metadata in read().values()]
        return len(times) == INPUT_PARTITIONS and all(
            t is not None and t >= through_us for t in times
        )

    return done


def _copy_of(settings: Settings, topic: str) -> list[Message]:
    """Every record of `topic` as a message to the same partition: key, value and headers."""
    return read_topic(
        settings,
        topic,
        lambda record: Message(
            record.partition, record.value, record.key, tuple(record.headers or ())
        ),
    )


def _closing_event(at_us: int) -> bytes:
    """A page view far enough ahead that every window of the real events closes before it."""
    return orjson.dumps(
        {
            "event_type": "page_view",
            "occurred_at": format_time_us(at_us),
            "subject": CLOSING_SUBJECT,
        }
    )


def output_events(value: bytes) -> int:
    """Events of one events.pseudonymized message: a JSON array of them (an object: one)."""
    decoded = orjson.loads(value)
    return len(decoded) if isinstance(decoded, list) else 1
