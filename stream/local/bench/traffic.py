"""The bench's input: generated traffic, its 50-event batches, the expected counts, pre-filled.

Each line `anonstream generate --to FILE.jsonl` writes is one raw item: mostly one JSON event,
about 1% malformed items (every dead-letter reason), kept because they are real traffic. The
single-event topic gets one line per message; the batch topic gets the valid objects joined
50 at a time into JSON arrays (their raw bytes joined with commas) and every other line as a
message of its own, and so is an object larger than `max_message_bytes` (the generator's
too_large items: batched, they would take 49 events down with them); an array is closed
before it would exceed `max_message_bytes`. The items a topic holds are counted here,
independently of the worker's decoder: a JSON array counts its length (an empty one 1),
anything else 1, and a message larger than `max_message_bytes` 1 (it is dead-lettered whole).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from stream.local.bench.exceptions import BenchError
from stream.local.bench.kafkaio import Message, produce
from stream.settings import Settings
from stream.topics import TopicSpec, create_topics

BATCH_SIZE = 50
"""Events per JSON array in the batch topic."""
INPUT_PARTITIONS = 6
"""Partitions of the pre-filled input topics."""
RATE = 2000.0
"""Events per second of generated (event) time: the whole input spans minutes, not hours."""

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Traffic:
    """The generated input as the two topics hold it."""

    events_path: Path
    consent_path: Path
    single: list[bytes]
    batch50: list[bytes]
    max_message_bytes: int

    def items(self, messages: Sequence[bytes]) -> int:
        """Items (events, valid or not) of `messages`, counted as the module doc says."""
        return sum(count_items(value, max_bytes=self.max_message_bytes) for value in messages)


def count_items(value: bytes, *, max_bytes: int) -> int:
    """Items one raw message counts for: a JSON array's length (at least 1), otherwise 1."""
    if len(value) > max_bytes:
        return 1
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError:
        return 1
    return max(1, len(document)) if isinstance(document, list) else 1


def batch_lines(lines: Sequence[bytes], *, max_bytes: int, size: int = BATCH_SIZE) -> list[bytes]:
    """Valid JSON objects joined `size` at a time into arrays of at most `max_bytes`; every
    other line, and an object larger than `max_bytes`, a message of its own."""
    messages: list[bytes] = []
    pending: list[bytes] = []
    pending_bytes = 2  # the brackets

    def close() -> None:
        nonlocal pending, pending_bytes
        if pending:
            messages.append(b"[" + b",".join(pending) + b"]")
        pending, pending_bytes = [], 2

    for line in lines:
        try:
            is_object = isinstance(orjson.loads(line), dict)
        except orjson.JSONDecodeError:
            is_object = False
        if not is_object or len(line) + 2 > max_bytes:
            messages.append(line)
            continue
        if pending_bytes + len(line) + 1 > max_bytes:
            close()
        pending.append(line)
        pending_bytes += len(line) + 1
        if len(pending) == size:
            close()
    close()
    return messages


def generate(
    settings: Settings, workdir: Path, *, events: int, seed: int, progress: Progress
) -> Traffic:
    """`anonstream generate --to <workdir>/traffic.jsonl --seed S` for `events` items."""
    from stream.local.processes import settings_env

    path = workdir / "traffic.jsonl"
    progress(f"generating {events} events (seed {seed}) into {path} ...")
    command = [
        sys.executable,
        "-m",
        "stream",
        "generate",
        "--to",
        str(path),
        "--seed",
        str(seed),
        "--rate",
        str(RATE),
        "--duration",
        str(events / RATE),
    ]
    result = subprocess.run(  # noqa: S603 - our own interpreter and module
        command, env=settings_env(settings), capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise BenchError(f"anonstream generate failed ({result.returncode}):\n{result.stderr}")
    # Lines, not splitlines(): a malformed item may hold a carriage return or other separator.
    single = [line for line in path.read_bytes().split(b"\n") if line]
    return Traffic(
        events_path=path,
        consent_path=path.with_name("traffic.consent.jsonl"),
        single=single,
        batch50=batch_lines(single, max_bytes=settings.max_message_bytes),
        max_message_bytes=settings.max_message_bytes,
    )


def create_input_topic(settings: Settings, name: str) -> None:
    """The input topic `name` with `INPUT_PARTITIONS` partitions (left as is if it exists)."""
    create_topics(settings, [TopicSpec(name, INPUT_PARTITIONS, "bench input")])


def prefill(
    settings: Settings, topic: str, messages: Sequence[bytes], *, progress: Progress
) -> None:
    """Produce `messages` to `topic`, partitions in turn, and wait until all are acknowledged."""
    create_input_topic(settings, topic)
    started = time.monotonic()
    produce(
        settings,
        topic,
        [Message(index % INPUT_PARTITIONS, value) for index, value in enumerate(messages)],
        progress=progress,
    )
    elapsed = time.monotonic() - started
    progress(f"  {topic}: {len(messages)} messages pre-filled in {elapsed:.1f} s")


def import_consent(settings: Settings, path: Path) -> None:
    """`anonstream consent import FILE` into `settings.topic_consent` (skipped if empty)."""
    from stream.local.processes import settings_env

    if not path.exists() or path.stat().st_size == 0:
        return
    result = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "stream", "consent", "import", str(path)],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BenchError(
            f"anonstream consent import failed ({result.returncode}):\n{result.stderr}"
        )
