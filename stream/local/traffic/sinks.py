"""Where generated traffic goes: `.jsonl` files, or the pipeline's Kafka topics."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from stream.local.traffic.exceptions import TrafficError
from stream.local.traffic.generator import TrafficGenerator
from stream.local.traffic.truth import Message
from stream.settings import Settings

KAFKA_REQUEST_BYTES = 1_048_576  # kafka-python's default max_request_size
PROGRESS_EVERY_S = 1.0

Progress = Callable[[str], None]


def output_paths(events_path: Path) -> tuple[Path, Path]:
    """The consent and truth files next to `events_path` (`x.jsonl` -> `x.consent.jsonl`,
    `x.truth.json`)."""
    stem = events_path.name.removesuffix(".jsonl")
    return (
        events_path.with_name(f"{stem}.consent.jsonl"),
        events_path.with_name(f"{stem}.truth.json"),
    )


def message_lines(message: Message) -> bytes:
    """A raw message as `.jsonl` lines: one line per item (a batch is split into its events;
    a malformed message is its bytes as they are), each ending in a newline."""
    return b"".join(item.data + b"\n" for item in message.items)


def write_files(
    generator: TrafficGenerator,
    events_path: Path,
    *,
    max_items: int,
    truth_path: Path | None = None,
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    """Write `max_items` items to `events_path` as fast as possible, consent records to
    `<name>.consent.jsonl`, the truth to `truth_path` (default `<name>.truth.json`).
    Stops early, with files and truth consistent, when `stop` is set. Returns the truth."""
    consent_path, default_truth = output_paths(events_path)
    try:
        events_path.parent.mkdir(parents=True, exist_ok=True)
        with events_path.open("wb") as events, consent_path.open("wb") as consent:
            _write_messages(generator, events, consent, max_items=max_items, stop=stop)
        truth = generator.truth()
        write_truth(truth, truth_path or default_truth)
    except OSError as exc:
        raise TrafficError(f"cannot write {exc.filename or events_path}: {exc.strerror}") from None
    return truth


def _write_messages(
    generator: TrafficGenerator,
    events: BinaryIO,
    consent: BinaryIO,
    *,
    max_items: int,
    stop: threading.Event | None,
) -> None:
    for message in generator.messages(max_items=max_items):
        if message.topic_kind == "consent":
            consent.write(message.value + b"\n")
        else:
            events.write(message_lines(message))
        if stop is not None and stop.is_set():
            break


def write_truth(truth: dict[str, Any], path: Path) -> None:
    """Write the truth summary as indented JSON."""
    path.write_bytes(orjson.dumps(truth, option=orjson.OPT_INDENT_2) + b"\n")


def send_to_kafka(
    settings: Settings,
    generator: TrafficGenerator,
    *,
    duration_s: float,
    rate: float | None = None,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Produce traffic to `settings.topic_raw` / `settings.topic_consent`, paced at `rate`
    items per second (default: the generator's rate) for `duration_s` seconds, and return the
    truth of what the broker acknowledged.

    Each consent record is flushed before the next message is sent, so events sent after it
    really reach Kafka after it. Stops early, flushing, when `stop` is set. Raises
    `TrafficError` if any message was not acknowledged.
    """
    from stream import kafka

    pace = rate or generator.rate
    max_items = max(1, round(pace * duration_s))
    topics = {"raw": settings.topic_raw, "consent": settings.topic_consent}
    request_bytes = max(KAFKA_REQUEST_BYTES, generator.max_message_bytes + 65_536)
    producer = kafka.producer(settings, max_request_size=request_bytes)
    failures: list[BaseException] = []
    meter = _Meter(progress)
    started = time.monotonic()
    try:
        for message in generator.messages(max_items=max_items):
            delay = started + meter.items / pace - time.monotonic()
            if delay > 0 and stop is not None:
                stop.wait(delay)
            elif delay > 0:
                time.sleep(delay)
            future = producer.send(topics[message.topic_kind], key=message.key, value=message.value)
            future.add_errback(failures.append)
            if message.topic_kind == "consent":
                producer.flush()
            meter.count(message)
            if (stop is not None and stop.is_set()) or time.monotonic() - started > duration_s:
                break
    finally:
        producer.flush()
        producer.close()
    meter.report(final=True)
    if failures:
        raise TrafficError(
            f"{len(failures)} messages were not acknowledged by Kafka; first "
            f"error: {type(failures[0]).__name__}: {failures[0]}"
        )
    return generator.truth()


class _Meter:
    """Counts what was sent; reports progress (counts and rate only) at most once a second."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.items = 0
        self.messages = 0
        self.records = 0
        self.started = time.monotonic()
        self.last_report = self.started

    def count(self, message: Message) -> None:
        if message.topic_kind == "consent":
            self.records += 1
        else:
            self.messages += 1
            self.items += len(message.items)
        if self.progress is not None and time.monotonic() - self.last_report >= PROGRESS_EVERY_S:
            self.report()

    def report(self, *, final: bool = False) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        self.last_report = now
        rate = self.items / max(now - self.started, 1e-9)
        self.progress(
            f"{'sent' if final else 'sending'}: {self.items} events in "
            f"{self.messages} messages, {self.records} consent records, "
            f"{rate:.0f} events/s"
        )
