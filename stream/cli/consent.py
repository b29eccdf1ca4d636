"""`anonstream consent ...`: consent and rights records onto `privacy.consent`.

One record at a time (`opt-out`, `opt-in`, `erase`, `child`) or in bulk (`import FILE`, the
JSONL or CSV export of a consent platform). Every record follows
`schemas/consent-record.v1.json` and is keyed `<subject_type>:<subject_id>` (the compacted
topic keeps the latest record per subject, which is what the workers' consent table
applies). Nothing here prints or logs a subject id: confirmations name the identifier type,
and invalid rows are reported by line number and the rule they break.

Bulk import: rows are validated as the table would (the schema plus the key rule), then
sent in hand-built record batches per partition (Kafka's default partitioner, so a key
lands where a plain keyed send puts it), with acks=all and an idempotent producer.
Exit status: 0 every row sent and acknowledged; 1 some rows were invalid (the valid ones
were all sent and acknowledged); 3 the broker did not acknowledge some rows: the import
stopped reading at the first failure and reports how many rows were acknowledged.
Re-running the same file is safe (each record restates the subject's whole state), unless
newer records for the same subjects were sent in between: they would be overwritten.
"""

from __future__ import annotations

import asyncio
import csv
import functools
import io
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

import click
import orjson

import schemas
from anonymizers.identifiers import POLICY_FREE
from anonymizers.intake import first_violation, schema_validator
from stream.cli import ExitCode, bootstrap_option
from stream.exceptions import ConsentPublishError
from stream.settings import Settings, load_settings

SUBJECT_TYPES: Final = ("user_id", "cookie_id", "device_id", "ad_id")
PURPOSES: Final = ("analytics", "advertising", "personalization")
ACTIONS: Final = ("opt_out", "opt_in", "erase", "child")
FIELD_ORDER: Final = ("subject_type", "subject_id", "action", "purposes", "requested_at")
RECORD_FIELDS: Final = frozenset(FIELD_ORDER)

# Other names consent platforms give the same columns and values (compared after lower-casing
# and turning spaces and hyphens into underscores). Documented in the README.
FIELD_ALIASES: Final[dict[str, str]] = {
    "identifier_type": "subject_type",
    "id_type": "subject_type",
    "identifier": "subject_id",
    "status": "action",
    "consent_status": "action",
    "purpose": "purposes",
    "timestamp": "requested_at",
    "updated_at": "requested_at",
}
SUBJECT_TYPE_ALIASES: Final[dict[str, str]] = {
    "user": "user_id",
    "cookie": "cookie_id",
    "device": "device_id",
    "ad": "ad_id",
    "advertising_id": "ad_id",
}
ACTION_ALIASES: Final[dict[str, str]] = {
    "optout": "opt_out",
    "opted_out": "opt_out",
    "withdrawn": "opt_out",
    "optin": "opt_in",
    "opted_in": "opt_in",
    "granted": "opt_in",
    "erasure": "erase",
    "delete": "erase",
    "deletion": "erase",
    "minor": "child",
}
PURPOSE_SEPARATORS: Final = (";", "|", ",")

# Record batches of at most this many bytes (under the broker's default message.max.bytes).
BATCH_BYTES: Final = 512 * 1024
CHUNK_ROWS: Final = 10_000
EXIT_INVALID_ROWS: Final = ExitCode.PROBLEMS_FOUND
EXIT_NOT_ACKNOWLEDGED: Final = ExitCode.NOT_ACKNOWLEDGED


class RowError(ValueError):
    """A row that cannot become a consent record; the message is the rule, never a value."""


def now_rfc3339() -> str:
    """The current UTC time as RFC 3339 with milliseconds and `Z`."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record_key(record: Mapping[str, Any]) -> bytes:
    """The Kafka key of a consent record: `<subject_type>:<subject_id>` (UTF-8)."""
    return f"{record['subject_type']}:{record['subject_id']}".encode()


def canonicalise_subject(record: dict[str, Any]) -> None:
    """Write the record's subject id in its policy-free canonical form (`POLICY_FREE`: trimmed,
    NFC, e-mail-like and GUID-form ids case-folded), so equivalent spellings share one Kafka
    key (one compacted state, one partition); the workers canonicalise again under the
    policy's forms. A record whose type or id is not a string is left for the schema check."""
    subject_type, subject_id = record.get("subject_type"), record.get("subject_id")
    if isinstance(subject_type, str) and isinstance(subject_id, str):
        record["subject_id"] = POLICY_FREE.canonical(subject_type, subject_id)


def check_record(record: object) -> None:
    """Raise `RowError` naming the first schema rule `record` breaks (consent record v1)."""
    violation = first_violation(record, schema_name=schemas.CONSENT_RECORD_V1)
    if violation is not None:
        raise RowError(violation.detail)


def consent_record(
    *,
    subject_type: str,
    subject_id: str,
    action: str,
    purposes: Sequence[str] = (),
    requested_at: str | None = None,
) -> dict[str, Any]:
    """A valid consent record (`purposes` empty: all; `requested_at` None: now, UTC).

    Raises `RowError` when the result breaks the schema (e.g. an empty or too long id).
    """
    record: dict[str, Any] = {
        "subject_type": subject_type,
        "subject_id": subject_id,
        "action": action,
    }
    if purposes:
        record["purposes"] = list(dict.fromkeys(purposes))
    record["requested_at"] = requested_at or now_rfc3339()
    canonicalise_subject(record)
    check_record(record)
    return record


# -- one record ---------------------------------------------------------------------------
def publish_record(settings: Settings, record: Mapping[str, Any]) -> None:
    """Send one consent record and wait for the broker's acknowledgement (acks=all).

    Raises `TopicConfigError` when the consent topic does not exist, and
    `ConsentPublishError` (naming no id) when the broker does not acknowledge the record.
    """
    from kafka.errors import KafkaError

    from stream.kafka import producer
    from stream.topics import require_topics

    require_topics(settings, [settings.topic_consent])
    client = producer(settings, linger_ms=0)
    try:
        future = client.send(
            settings.topic_consent, key=record_key(record), value=orjson.dumps(record)
        )
        future.get(timeout=3 * settings.request_timeout_s)
    except KafkaError as exc:
        raise ConsentPublishError(
            f"the broker did not acknowledge the {record['action']} record "
            f"({type(exc).__name__}); it may not be recorded: run the command again "
            "(sending a record twice is harmless)"
        ) from None
    finally:
        client.close()


def _subject_from_options(options: Mapping[str, str | None]) -> tuple[str, str]:
    given = [(name, value) for name, value in options.items() if value is not None]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --user-id, --cookie-id, --device-id, --ad-id")
    subject_type, subject_id = given[0]
    if subject_id == "-":
        # From stdin: keeps the id out of shell history and the process list.
        subject_id = sys.stdin.readline().rstrip("\r\n")
    return subject_type, subject_id


def _record_command(action: str, *, with_purposes: bool) -> click.Command:
    """The click command recording `action` for one subject."""

    def run(purposes: tuple[str, ...] = (), **options: str | None) -> None:
        subject_type, subject_id = _subject_from_options(options)
        try:
            record = consent_record(
                subject_type=subject_type, subject_id=subject_id, action=action, purposes=purposes
            )
        except RowError as exc:
            hint = f"--{subject_type.replace('_', '-')}"
            raise click.BadParameter(str(exc), param_hint=hint) from None
        publish_record(load_settings(), record)
        if action == "opt_in" and set(record.get("purposes", PURPOSES)) != set(PURPOSES):
            click.echo(
                "note: a record replaces the subject's whole consent state: after this opt-in "
                "the subject is opted out of every purpose it does not name",
                err=True,
            )
        shown = ", ".join(record.get("purposes", PURPOSES))
        suffix = f" (purposes: {shown})" if with_purposes else ""
        click.echo(f"{action} recorded for {subject_type}{suffix}")

    params: list[click.Parameter] = [
        click.Option(
            [f"--{name.replace('_', '-')}", name],
            default=None,
            metavar="ID",
            help=f"The subject's {name} ('-': read it from stdin).",
        )
        for name in SUBJECT_TYPES
    ]
    if with_purposes:
        params.append(
            click.Option(
                ["--purpose", "purposes"],
                type=click.Choice(PURPOSES),
                multiple=True,
                help="Purpose it applies to; repeat for several (default: all).",
            )
        )
    helps = {
        "opt_out": "Opt a subject out of the given purposes (analytics: its events are dropped).",
        "opt_in": "Opt a subject in to the purposes given (default all); it stays opted out "
        "of the others.",
        "erase": "Erase a subject: every later event carrying the identifier is dropped.",
        "child": "Mark a subject as a child's (under 16): its events are dropped.",
    }
    return click.Command(action.replace("_", "-"), callback=run, params=params, help=helps[action])


# -- bulk import --------------------------------------------------------------------------
def _canonical_name(name: str) -> str:
    cleaned = name.strip().lower().replace(" ", "_").replace("-", "_")
    return FIELD_ALIASES.get(cleaned, cleaned)


def _canonical_value(value: str, aliases: Mapping[str, str]) -> str:
    cleaned = value.strip().lower().replace(" ", "_").replace("-", "_")
    return aliases.get(cleaned, cleaned)


@functools.lru_cache(maxsize=1024)
def _split_purposes(text: str) -> tuple[str, ...] | None:
    """Purposes named in `text` (separated by `;`, `|` or `,`); None for all."""
    text = text.strip()
    if not text or text.lower() in ("all", "*"):
        return None
    for separator in PURPOSE_SEPARATORS:
        text = text.replace(separator, ";")
    return tuple(part.strip().lower() for part in text.split(";") if part.strip())


def _purposes(value: object) -> object:
    """Purposes as a list (None: all); a string is split on `;`, `|` or `,`."""
    if isinstance(value, str):
        split = _split_purposes(value)
        return None if split is None else list(split)
    if isinstance(value, list):
        return [p.strip().lower() if isinstance(p, str) else p for p in value]
    return value


def normalise_row(row: Mapping[str, object]) -> dict[str, Any]:
    """A consent record from one input row (canonical or consent-platform names).

    Accepts the record's own fields, the aliases above, and the wide shape where the
    identifier sits in a column named after its type (`cookie_id`, ...) instead of
    `subject_type` + `subject_id`. Empty values count as absent. Raises `RowError`.
    """
    validator = schema_validator(schemas.CONSENT_RECORD_V1)
    if not isinstance(row.get("purposes"), str):
        record = dict(row)
        canonicalise_subject(record)
        if validator.is_valid(record):
            return record  # already a record: the common case costs one schema check
    if row.keys() <= RECORD_FIELDS and "subject_type" in row:
        record = {name: value for name, value in row.items() if value != "" and value is not None}
    else:
        record = {}
        for name, value in row.items():
            if value is None or value == "":
                continue
            canonical = _canonical_name(name)
            if canonical in record:
                raise RowError(f"field {canonical} given twice (under two names)")
            record[canonical] = value
        wide = [name for name in SUBJECT_TYPES if name in record]
        if wide:
            if len(wide) > 1 or "subject_type" in record or "subject_id" in record:
                raise RowError(
                    "give either subject_type and subject_id, or exactly one of "
                    + ", ".join(SUBJECT_TYPES)
                )
            record["subject_type"] = wide[0]
            record["subject_id"] = record.pop(wide[0])
        unknown = set(record) - RECORD_FIELDS
        if unknown:
            raise RowError(f"{len(unknown)} unknown field(s); known: {', '.join(FIELD_ORDER)}")
    if isinstance(record.get("subject_id"), int) and not isinstance(record["subject_id"], bool):
        record["subject_id"] = str(record["subject_id"])  # numeric user ids in JSON exports
    subject_type = record.get("subject_type")
    if isinstance(subject_type, str) and subject_type not in SUBJECT_TYPES:
        record["subject_type"] = _canonical_value(subject_type, SUBJECT_TYPE_ALIASES)
    action = record.get("action")
    if isinstance(action, str) and action not in ACTIONS:
        record["action"] = _canonical_value(action, ACTION_ALIASES)
    if "purposes" in record:
        purposes = _purposes(record["purposes"])
        if purposes is None:
            del record["purposes"]
        else:
            record["purposes"] = purposes
    if isinstance(record.get("requested_at"), str):
        record["requested_at"] = str(record["requested_at"]).strip()
    canonicalise_subject(record)
    if not validator.is_valid(record):
        check_record(record)
    return record


@dataclass
class ImportReport:
    """Counts of one import; `first_error` is an exception type name, never a message."""

    rows: int = 0
    sent: int = 0
    acknowledged: int = 0
    invalid: int = 0
    not_acknowledged: int = 0
    first_error: str | None = None
    last_line: int = 0
    stopped_early: bool = False
    seconds: float = 0.0

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


# A parsed row: (line number, record) or (line number, RowError).
ParsedRow = tuple[int, dict[str, Any] | RowError]


def jsonl_rows(stream: IO[bytes]) -> Iterator[ParsedRow]:
    """The rows of a JSONL file (one JSON object per line; blank lines skipped)."""
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            yield number, RowError("not valid JSON (or not UTF-8)")
            continue
        if not isinstance(row, dict):
            yield number, RowError("not a JSON object")
            continue
        try:
            yield number, normalise_row(row)
        except RowError as exc:
            yield number, exc


def csv_rows(stream: IO[bytes], *, warn: Callable[[str], None]) -> Iterator[ParsedRow]:
    """The rows of a CSV file with a header line (UTF-8, optional BOM, `,` or `;` delimited).

    Columns that are neither record fields, aliases nor identifier columns are ignored
    (named once through `warn`: a header holds column names, not ids).
    """
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
    header_line = text.readline()
    dialect = csv.excel()
    if header_line.count(";") > header_line.count(","):
        dialect.delimiter = ";"
    header = next(csv.reader([header_line], dialect), [])
    names = [_canonical_name(column) for column in header]
    known = RECORD_FIELDS | set(SUBJECT_TYPES)
    ignored = [column for column, name in zip(header, names, strict=True) if name not in known]
    if ignored:
        warn(f"ignoring column(s) {', '.join(repr(c[:40]) for c in ignored[:10])}")
    keep = [(i, name) for i, name in enumerate(names) if name in known]
    if not keep:
        warn("the header names no consent field; expected " + ", ".join(FIELD_ORDER))
    reader = csv.reader(text, dialect)
    width = len(header)
    try:
        yield from _csv_records(reader, width=width, keep=keep)
    finally:
        text.detach()  # the caller owns (and closes) the binary stream


def _csv_records(reader: Any, *, width: int, keep: list[tuple[int, str]]) -> Iterator[ParsedRow]:
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num + 1, RowError(f"CSV: {str(exc).split(':')[0]}")
            continue
        number = reader.line_num + 1  # the header was line 1
        if not values:
            continue
        if len(values) != width:
            yield number, RowError(f"{len(values)} fields; the header has {width}")
            continue
        row = {name: values[i] for i, name in keep}
        try:
            yield number, normalise_row(row)
        except RowError as exc:
            yield number, exc
        except UnicodeEncodeError:  # undecodable bytes (kept as surrogates) in a value
            yield number, RowError("not UTF-8")


class Progress:
    """A one-line progress bar on stderr (bytes read, rows, rows/s), at most 5 redraws/s."""

    def __init__(self, *, total_bytes: int | None, enabled: bool, out: IO[str]) -> None:
        self._total = total_bytes
        self._enabled = enabled
        self._out = out
        self._started = time.monotonic()
        self._last = 0.0
        self._drawn = False

    def interrupt(self) -> None:
        """End the bar's line so that a message can be written below it."""
        if self._drawn:
            self._out.write("\n")
            self._drawn = False

    def update(self, *, done_bytes: int, rows: int, final: bool = False) -> None:
        if not self._enabled:
            return
        now = time.monotonic()
        if not final and now - self._last < 0.2:
            return
        self._last = now
        rate = rows / max(now - self._started, 1e-9)
        if self._total:
            fraction = min(1.0, done_bytes / self._total)
            bar = "#" * int(fraction * 30)
            line = f"\r[{bar:<30}] {fraction:6.1%} {rows:>12,} rows {rate:>10,.0f} rows/s"
        else:
            line = f"\r{rows:>12,} rows {rate:>10,.0f} rows/s"
        self._out.write(line + ("\n" if final else ""))
        self._out.flush()
        self._drawn = not final


class BatchSender:
    """Sends keyed records in hand-built batches, one open batch per partition.

    `acknowledged` and `failed` count rows as the broker answers; after the first failure
    `failed_error` holds its exception type name and the caller stops feeding rows.
    """

    def __init__(self, producer: Any, *, topic: str, partitions: int) -> None:
        self._producer = producer
        self._topic = topic
        self._partitions = partitions
        self._open: dict[int, tuple[Any, int]] = {}
        self._pending: set[asyncio.Future[Any]] = set()
        self.sent = 0
        self.acknowledged = 0
        self.failed = 0
        self.failed_error: str | None = None

    async def send(self, keys: Sequence[bytes], values: Sequence[bytes]) -> None:
        """Queue records (in order: one key's records keep their order in its partition)."""
        from stream.kafka import default_partitions

        for partition, key, value in zip(
            default_partitions(keys, self._partitions), keys, values, strict=True
        ):
            builder, count = self._open.get(partition, (None, 0))
            if builder is None:
                builder, count = self._producer.create_batch(), 0
            if builder.append(key=key, value=value, timestamp=None) is None:
                await self._ship(partition, builder, count)
                builder, count = self._producer.create_batch(), 0
                if builder.append(key=key, value=value, timestamp=None) is None:
                    raise ConsentPublishError("a consent record is larger than a record batch")
            self._open[partition] = (builder, count + 1)

    async def _ship(self, partition: int, builder: Any, count: int) -> None:
        future = await self._producer.send_batch(builder, self._topic, partition=partition)
        self.sent += count
        self._pending.add(future)
        future.add_done_callback(lambda f: self._answered(f, count))

    def _answered(self, future: asyncio.Future[Any], count: int) -> None:
        self._pending.discard(future)
        if future.cancelled() or future.exception() is not None:
            self.failed += count
            if self.failed_error is None:
                error = "cancelled" if future.cancelled() else type(future.exception()).__name__
                self.failed_error = error
        else:
            self.acknowledged += count

    async def finish(self) -> None:
        """Ship the open batches and wait for every answer."""
        for partition, (builder, count) in list(self._open.items()):
            if count:
                await self._ship(partition, builder, count)
        self._open.clear()
        if self._pending:
            await asyncio.wait(list(self._pending))


async def import_rows(
    settings: Settings,
    rows: Iterable[ParsedRow],
    *,
    on_invalid: Callable[[int, str], None],
    on_progress: Callable[[int], None] = lambda rows: None,
) -> ImportReport:
    """Validate and send `rows` to the consent topic; stop at the first unacknowledged batch."""
    from stream import kafka

    kafka.require_reachable(settings)
    partitions = len(await kafka.topic_partitions(settings, settings.topic_consent))
    report = ImportReport()
    started = time.perf_counter()
    producer = kafka.async_producer(settings, max_batch_size=BATCH_BYTES)
    await producer.start()
    sender = BatchSender(producer, topic=settings.topic_consent, partitions=partitions)
    try:
        keys: list[bytes] = []
        values: list[bytes] = []
        for number, parsed in rows:
            report.rows += 1
            report.last_line = number
            if isinstance(parsed, RowError):
                report.invalid += 1
                on_invalid(number, str(parsed))
                continue
            try:
                value = orjson.dumps(parsed)
            except orjson.JSONEncodeError:
                report.invalid += 1
                on_invalid(number, "not UTF-8")
                continue
            keys.append(record_key(parsed))
            values.append(value)
            if len(keys) >= CHUNK_ROWS:
                await sender.send(keys, values)
                keys, values = [], []
                on_progress(report.rows)
                if sender.failed:
                    report.stopped_early = True
                    break
                await asyncio.sleep(0)  # let the producer's sender task ship batches
        if keys and not sender.failed:
            await sender.send(keys, values)
        await sender.finish()
    finally:
        await producer.stop()
    report.sent = sender.sent
    report.acknowledged = sender.acknowledged
    report.not_acknowledged = sender.failed + (report.rows - report.invalid - sender.sent)
    report.first_error = sender.failed_error
    report.seconds = time.perf_counter() - started
    return report


def _detect_format(path: str, given: str | None) -> str:
    if given:
        return given
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".tsv", ".txt"):
        return "csv"
    raise click.UsageError(f"cannot tell the format of {path!r} from its extension; use --format")


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--format",
    "file_format",
    type=click.Choice(["jsonl", "csv"]),
    default=None,
    help="Input format (default: from the extension: .jsonl/.ndjson/.json, .csv).",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar on stderr (default: when stderr is a terminal).",
)
def import_cli(file: str, file_format: str | None, progress: bool | None) -> None:
    """Send the consent records of FILE (JSONL or CSV, '-' for stdin) to the consent topic.

    Invalid rows are reported on stderr by line number and rule, and not sent. Exit 0 when
    every row was sent and acknowledged, 1 when some rows were invalid, 3 when the broker
    did not acknowledge some rows (the import stops; running it again is safe).
    """
    settings = load_settings()
    fmt = _detect_format(file, file_format) if file != "-" else file_format
    if fmt is None:
        raise click.UsageError("reading stdin needs --format jsonl or --format csv")
    err = click.get_text_stream("stderr")
    show = err.isatty() if progress is None else progress
    binary: IO[bytes] = (
        click.get_binary_stream("stdin") if file == "-" else open(file, "rb")  # noqa: SIM115
    )
    total = None if file == "-" else Path(file).stat().st_size
    bar = Progress(total_bytes=total, enabled=show, out=err)

    def on_invalid(line: int, rule: str) -> None:
        bar.interrupt()
        err.write(f"line {line}: {rule}\n")

    def on_progress(rows: int) -> None:
        done = binary.tell() if total is not None else 0
        bar.update(done_bytes=done, rows=rows)

    try:
        rows = (
            jsonl_rows(binary)
            if fmt == "jsonl"
            else csv_rows(binary, warn=lambda text: click.echo(f"warning: {text}", err=True))
        )
        report = asyncio.run(
            import_rows(settings, rows, on_invalid=on_invalid, on_progress=on_progress)
        )
    finally:
        if file != "-":
            binary.close()
    bar.update(done_bytes=total or 0, rows=report.rows, final=True)
    click.echo(
        f"{report.acknowledged:,} sent and acknowledged, {report.invalid:,} invalid, "
        f"{report.rows:,} rows in {report.seconds:.1f} s ({report.rows_per_s:,.0f} rows/s)",
        err=True,
    )
    if report.not_acknowledged:
        click.echo(
            f"error: {report.not_acknowledged:,} valid rows were not acknowledged by the broker "
            f"({report.first_error})"
            + (
                f"; the import stopped after line {report.last_line}"
                if report.stopped_early
                else ""
            )
            + ". Fix the cause and run it again (each record restates its subject's whole "
            "state, so sending a row twice is harmless).",
            err=True,
        )
        sys.exit(EXIT_NOT_ACKNOWLEDGED)
    if report.invalid:
        sys.exit(EXIT_INVALID_ROWS)


@click.group("consent")
def consent_cli() -> None:
    """Record opt-outs, opt-ins, erasures and children on the consent topic."""


for _action in ACTIONS:
    consent_cli.add_command(
        bootstrap_option(_record_command(_action, with_purposes=_action in ("opt_out", "opt_in")))
    )
consent_cli.add_command(bootstrap_option(import_cli))
