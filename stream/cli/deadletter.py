"""`anonstream deadletter inspect|replay`: what was dead-lettered, and sending it back.

`inspect` counts the records of `events.deadletter` by reason and shows a few examples per
reason with every value masked: only the structure of the original (field names the raw
schema knows, value types and lengths) and the machine-readable detail are printed, never
an input value (the topic holds raw, identifying input).

`replay --reason R` sends the original bytes of the matching records back to `events.raw`,
after a fix (a larger `ANONSTREAM_MAX_MESSAGE_BYTES`, a corrected schema or collector), each
to the raw partition it came from, with the header `anonstream-replay` =
`<dead-letter topic>:<partition>:<offset>` of the record it replays. A record is replayed at
most once: before sending, `replay` reads `events.raw` from the time the earliest candidate
was dead-lettered and skips every record whose coordinates a replay header already names.
Truncated originals (`too_large` beyond 64 KiB) cannot be replayed and are counted apart.

How counts reconcile: the anonymize stage counts a replayed event again when it consumes
it (`consumed = forwarded + dead-lettered + dropped` holds per worker). Over the pipeline,
events from collectors = events consumed - events replayed, where `replay` prints the number
of events it sent and the replay header marks them on `events.raw`. A replayed event that is
accepted is forwarded once (its dead-letter record stays on the topic until retention, but
the header check prevents a second replay); one that fails again is dead-lettered again.
"""

from __future__ import annotations

import base64
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import click
import orjson

from stream.cli import bootstrap_option
from stream.settings import Settings, load_settings
from stream.stages.anonymize import REPLAY_HEADER

REASONS: Final = ("not_utf8", "not_json", "not_object", "too_large", "schema_violation")
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_since(value: str, *, now: datetime | None = None) -> datetime:
    """`--since`: an RFC 3339 time with zone (`2026-12-02T10:00:00Z`) or a duration back
    from now (`90m`, `2h`, `3d`). Raises `click.BadParameter` naming the value."""
    now = now or datetime.now(UTC)
    match = _DURATION.match(value.strip())
    if match:
        return now - timedelta(seconds=int(match[1]) * _UNITS[match[2]])
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise click.BadParameter(
            "must be an RFC 3339 time with zone (2026-12-02T10:00:00Z) or a duration such as "
            f"90m, 2h, 3d; got {value!r}",
            param_hint="--since",
        )
    return parsed


@dataclass(frozen=True)
class DeadLetter:
    """One record of the dead-letter topic and where it lies."""

    partition: int
    offset: int
    record: dict[str, Any]

    @property
    def reason(self) -> str:
        return str(self.record.get("reason"))

    @property
    def dead_lettered_at(self) -> datetime:
        return datetime.fromisoformat(str(self.record["dead_lettered_at"]).replace("Z", "+00:00"))

    def coordinates(self, topic: str) -> str:
        """The value of the replay header for this record."""
        return f"{topic}:{self.partition}:{self.offset}"


def read_topic_to_end(
    settings: Settings, topic: str, *, since_ms: int | None = None
) -> Iterator[Any]:
    """Every record of `topic` up to its end offsets when called (from `since_ms`, a Kafka
    timestamp, when given): no consumer group, nothing committed."""
    from kafka import TopicPartition

    from stream import kafka as kafka_clients

    consumer = kafka_clients.consumer(settings)
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            from stream.exceptions import TopicConfigError

            raise TopicConfigError(f"topic {topic} does not exist; run `anonstream topics create`")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        starts = consumer.beginning_offsets(tps)
        if since_ms is not None:
            found = consumer.offsets_for_times({tp: since_ms for tp in tps})
            starts = {tp: found[tp].offset if found.get(tp) else ends[tp] for tp in tps}
        for tp in tps:
            consumer.seek(tp, starts[tp])
        pending = {tp for tp in tps if starts[tp] < ends[tp]}
        deadline = time.monotonic() + max(60.0, 6 * settings.request_timeout_s)
        while pending and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=500).items():
                for record in records:
                    if record.offset < ends[tp]:
                        yield record
                if consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        if pending:
            from stream.exceptions import BrokerError

            raise BrokerError(f"reading {topic} to its end timed out")
    finally:
        consumer.close()


def dead_letters(
    settings: Settings, *, reason: str | None, since: datetime | None
) -> list[DeadLetter]:
    """The dead-letter records of `reason` (all when None) dead-lettered at or after `since`."""
    since_ms = int(since.timestamp() * 1000) if since else None
    found = []
    for message in read_topic_to_end(settings, settings.topic_deadletter, since_ms=since_ms):
        try:
            record = orjson.loads(message.value)
        except orjson.JSONDecodeError:
            continue
        letter = DeadLetter(message.partition, message.offset, record)
        if reason is not None and letter.reason != reason:
            continue
        if since is not None and letter.dead_lettered_at < since:
            continue
        found.append(letter)
    return found


def mask(value: Any, *, known: frozenset[str], depth: int = 0) -> Any:
    """The structure of a decoded JSON value with every value replaced by its type (and a
    string's length); object keys other than `known` field names become `<other field>`."""
    if isinstance(value, dict):
        masked: dict[str, Any] = {}
        others = 0
        for key, item in value.items():
            if key in known:
                masked[key] = mask(item, known=known, depth=depth + 1)
            else:
                others += 1
                masked[f"<other field {others}>"] = mask(item, known=known, depth=depth + 1)
        return masked
    if isinstance(value, list):
        shown = [mask(item, known=known, depth=depth + 1) for item in value[:3]]
        if len(value) > 3:
            shown.append(f"<{len(value) - 3} more>")
        return shown
    if isinstance(value, bool):
        return "<boolean>"
    if isinstance(value, str):
        return f"<string, {len(value)} chars>"
    if isinstance(value, int | float):
        return "<number>"
    return None


def masked_original(letter: DeadLetter) -> str:
    """The original of a dead-letter record, masked (see `mask`)."""
    import schemas

    original = base64.b64decode(letter.record.get("original_b64", ""))
    size = letter.record.get("original_size", len(original))
    try:
        decoded = orjson.loads(original)
    except orjson.JSONDecodeError:
        kind = "not UTF-8" if letter.reason == "not_utf8" else "not JSON"
        return f"<{size} bytes, {kind}>"
    known = frozenset(schemas.load(schemas.RAW_EVENT_V1)["properties"])
    return orjson.dumps(mask(decoded, known=known)).decode()


def replayed_coordinates(settings: Settings, *, since: datetime) -> set[str]:
    """Values of the replay headers on `events.raw` from `since` on."""
    seen = set()
    since_ms = int(since.timestamp() * 1000)
    for message in read_topic_to_end(settings, settings.topic_raw, since_ms=since_ms):
        for name, value in message.headers or ():
            if name == REPLAY_HEADER and value:
                seen.add(value.decode(errors="replace"))
    return seen


@click.group("deadletter")
def deadletter_cli() -> None:
    """Inspect and replay the dead-letter topic (restricted: it holds raw input)."""


reason_choice = click.Choice(REASONS)


@deadletter_cli.command("inspect")
@click.option("--reason", type=reason_choice, default=None, help="Only this reason.")
@click.option("--since", default=None, help="From this time (RFC 3339) or duration ago (2h).")
@click.option(
    "--examples",
    type=click.IntRange(0, 20),
    default=3,
    show_default=True,
    help="Masked examples per reason.",
)
@bootstrap_option
def deadletter_inspect(reason: str | None, since: str | None, examples: int) -> None:
    """Count dead-lettered items by reason; show masked examples (never a value)."""
    settings = load_settings()
    letters = dead_letters(settings, reason=reason, since=parse_since(since) if since else None)
    counts = Counter(letter.reason for letter in letters)
    click.echo(f"{'reason':<18} {'count':>8}")
    for name, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        click.echo(f"{name:<18} {count:>8}")
    click.echo(f"{'total':<18} {sum(counts.values()):>8}")
    if not examples or not letters:
        return
    click.echo("\nexamples (values masked):")
    shown: Counter[str] = Counter()
    for letter in letters:
        if shown[letter.reason] >= examples:
            continue
        shown[letter.reason] += 1
        source = letter.record.get("source", {})
        click.echo(
            f"{letter.reason}  {source.get('topic')}/{source.get('partition')}"
            f"@{source.get('offset')}  {letter.record.get('detail', '')}  "
            f"{letter.record.get('dead_lettered_at')}"
        )
        click.echo(f"  {masked_original(letter)}")


@deadletter_cli.command("replay")
@click.option("--reason", type=reason_choice, required=True, help="Replay this reason only.")
@click.option("--since", default=None, help="From this time (RFC 3339) or duration ago (2h).")
@click.option("--dry-run", is_flag=True, help="Count what would be replayed; send nothing.")
@bootstrap_option
def deadletter_replay(reason: str, since: str | None, dry_run: bool) -> None:
    """Send dead-lettered originals of REASON back to events.raw (once each), after a fix."""
    from stream import kafka as kafka_clients

    settings = load_settings()
    letters = dead_letters(settings, reason=reason, since=parse_since(since) if since else None)
    truncated = [x for x in letters if x.record.get("original_truncated")]
    candidates = [x for x in letters if not x.record.get("original_truncated")]
    done: set[str] = set()
    if candidates:
        earliest = min(x.dead_lettered_at for x in candidates)
        done = replayed_coordinates(settings, since=earliest - timedelta(minutes=1))
    topic = settings.topic_deadletter
    todo = [x for x in candidates if x.coordinates(topic) not in done]
    verb = "would replay" if dry_run else "replayed"
    if todo and not dry_run:
        from stream.topics import partition_counts

        partitions = partition_counts(settings, [settings.topic_raw]).get(settings.topic_raw, 0)
        producer = kafka_clients.producer(settings, max_request_size=4_000_000)
        try:
            futures = []
            for letter in todo:
                source = letter.record.get("source", {})
                partition = source.get("partition")
                if source.get("topic") != settings.topic_raw or not (
                    isinstance(partition, int) and 0 <= partition < partitions
                ):
                    partition = None
                futures.append(
                    producer.send(
                        settings.topic_raw,
                        value=base64.b64decode(letter.record["original_b64"]),
                        partition=partition,
                        headers=[(REPLAY_HEADER, letter.coordinates(topic).encode())],
                    )
                )
            producer.flush(timeout=60)
            for future in futures:
                future.get(timeout=60)
        finally:
            producer.close()
    click.echo(f"{verb} {len(todo)} {reason} record(s) to {settings.topic_raw}")
    click.echo(f"already replayed {len(candidates) - len(todo)}")
    click.echo(f"not replayable (truncated original) {len(truncated)}")
    if truncated:
        sys.exit(1)
