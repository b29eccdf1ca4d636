"""`anonstream preview`: run the stream's exact anonymizer chain over a JSONL file of events.

Each line is one raw event (or a JSON array of them, as collectors batch), decoded exactly as
the stream decodes a message (`anonymizers.intake.decode_message`: the same size limit,
`--max-message-bytes` or `ANONSTREAM_MAX_MESSAGE_BYTES`, the same answer to an empty batch and
the same validator), gated on consent (`--consent` JSONL of consent records) and run
through the same `anonymizers.chain.Pipeline` the anonymize agent runs. Writes to `--out`:

- `anonymized.jsonl`: the anonymized events, one per line;
- `report.json`: counts by outcome, drop reason and action, invalid lines by line number
  (path and rule, never a value, nor a field name the schema does not define) and a few
  before/after examples whose "before" side is itself masked (`anonymizers.masking`: the
  same canonical form and detectors as the chain);
- `aggregates.jsonl`: the aggregates the stream would release on these events (records of
  `schemas/aggregate.v2.json`, one per line, in release order), computed by the stream's own
  aggregation and release code in one process (`anonymizers.stats.release.LocalRelease`): windows,
  caps, k, suppression audit and noise of the policy (noise is drawn afresh on each run);
- `report.md`: the planner's table (what each metric and window size releases).

An event flagged `age_under_16` stands for `child` records of its identifiers, as the stream's
anonymize stage writes them: the whole file is read once for them first, so those people's
events count nowhere (the stream removes them from the windows still open when the flagged
event comes; a window it released before is final, which one pass over a file cannot tell).

Keys are generated for the run and never written: pseudonyms differ on every run.
"""

from __future__ import annotations

import collections
import re
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

import click
import orjson

from anonymizers.chain import Pipeline
from anonymizers.consent import ConsentState, child_records
from anonymizers.exceptions import ConsentRecordError
from anonymizers.fields import RAW_FIELDS
from anonymizers.geo import GeoLookup
from anonymizers.geo.bundled import default_database_path
from anonymizers.identifiers import DEFAULT_FORMS, IdentifierForms
from anonymizers.intake import Decoded, decode_message
from anonymizers.keys import GeneratedKeyProvider
from anonymizers.masking import mask_event
from anonymizers.policy import Policy, default_policy, load_policy
from anonymizers.stats.config import stats_specs
from anonymizers.stats.plan import PlanRow, Truth, plan
from anonymizers.stats.release import LocalRelease
from stream.settings import Settings

ANONYMIZED_FILE: Final = "anonymized.jsonl"
REPORT_FILE: Final = "report.json"
AGGREGATES_FILE: Final = "aggregates.jsonl"
REPORT_MD_FILE: Final = "report.md"
DEFAULT_MAX_MESSAGE_BYTES: Final[int] = Settings.model_fields["max_message_bytes"].default
"""The stream's own limit on a raw message (`ANONSTREAM_MAX_MESSAGE_BYTES`'s default): a
longer line is invalid (too_large) in preview as on the stream."""
MAX_REPORTED_INVALID: Final = 1000
"""Invalid lines listed one by one in the report; all are counted."""
PROGRESS_EVERY_SECONDS: Final = 2.0


class PreviewAggregates:
    """`aggregates.jsonl`: every anonymized event through the stream's aggregate and release
    code (one partition, every window closed at the end of the file)."""

    def __init__(self, policy: Policy) -> None:
        aggregation, release = stats_specs(policy)
        self._aggregation = aggregation
        self._release = release
        self._local = LocalRelease(aggregation, release, policy_version=policy.policy_version)
        self._truth = Truth(aggregation)
        self._records: list[Mapping[str, Any]] | None = None

    def add(self, event: Mapping[str, Any]) -> None:
        """One anonymized event (the `event` of a pipeline outcome that passed)."""
        self._local.add(event)
        self._truth.add(event)

    def finish(self) -> Iterable[Mapping[str, Any]]:
        if self._records is None:
            self._records = [record.value for record in self._local.finish()]
        return self._records

    def plan(self) -> list[PlanRow]:
        """What the released records hold of the truth, per metric and window size."""
        release = self._release
        return plan(
            self._truth,
            self.finish(),
            aggregation=self._aggregation,
            budget=release.budget,
            k_for={m.name: release.k_for(m) for m in self._aggregation.metrics},
        )

    def ledger(self) -> list[Mapping[str, Any]]:
        """The ledger entries of this release (dp mode)."""
        return [record.value for record in self._local.ledger_records()]

    @property
    def counters(self) -> Mapping[str, int]:
        """The aggregation's counters: events, late by window size, skipped by metric."""
        return dict(self._local.counters)


def bundled_geo_database() -> Path | None:
    """The bundled GeoLite2 City database, if installed (see `anonymizers.geo.bundled`)."""
    return default_database_path()


# -------------------------------------------------------------------------------- reading


def _lines(handle: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    for number, line in enumerate(handle, start=1):
        stripped = line.strip()
        if stripped:
            yield number, stripped


def load_consent(
    path: Path, *, forms: IdentifierForms = DEFAULT_FORMS
) -> tuple[ConsentState, dict[str, Any]]:
    """A consent state from a JSONL file of consent records (ids matched in the policy's
    canonical `forms`), and a summary for the report."""
    state = ConsentState(forms=forms)
    applied = 0
    invalid: list[dict[str, Any]] = []
    with path.open("rb") as handle:
        for number, line in _lines(handle):
            try:
                record = orjson.loads(line)
                state.apply(record)
            except orjson.JSONDecodeError:
                invalid.append({"line": number, "reason": "not_json"})
            except ConsentRecordError as exc:
                invalid.append({"line": number, "reason": str(exc)})
            else:
                applied += 1
    summary = {
        "records_applied": applied,
        "subjects_with_state": len(state),
        "invalid_records": len(invalid),
        "invalid": invalid[:MAX_REPORTED_INVALID],
    }
    return state, summary


class _Report:
    """Counts and examples gathered while previewing."""

    def __init__(self, *, examples: int) -> None:
        self.lines = 0
        self.events = 0
        self.invalid: list[dict[str, Any]] = []
        self.invalid_count = 0
        self.invalid_by_reason: collections.Counter[str] = collections.Counter()
        self.emitted = 0
        self.dropped: collections.Counter[str] = collections.Counter()
        self.actions: collections.Counter[str] = collections.Counter()
        self.examples: list[dict[str, Any]] = []
        self.dropped_examples: dict[str, dict[str, Any]] = {}
        self._wanted_examples = examples

    def invalid_line(self, line: int, index: int | None, reason: str, **detail: Any) -> None:
        self.invalid_count += 1
        self.invalid_by_reason[reason] += 1
        if len(self.invalid) < MAX_REPORTED_INVALID:
            entry: dict[str, Any] = {"line": line, "reason": reason, **detail}
            if index is not None:
                entry["index"] = index
            self.invalid.append(entry)

    def outcome(self, line: int, before: Mapping[str, Any], outcome: Any) -> str | None:
        """Count one event's outcome and keep it as an example if wanted; return why it was
        dropped (None: it passed)."""
        reason: str | None = getattr(outcome, "reason", None)
        if reason is not None:
            self.dropped[reason] += 1
            if reason not in self.dropped_examples:
                self.dropped_examples[reason] = {"line": line, "before": mask_event(before)}
            return reason
        self.emitted += 1
        self.actions.update(outcome.actions)
        if len(self.examples) < self._wanted_examples:
            self.examples.append(
                {
                    "line": line,
                    "before": mask_event(before),
                    "after": outcome.event,
                    "actions": list(outcome.actions),
                }
            )
        return None

    def result(self) -> dict[str, Any]:
        """The report's counts, invalid lines and examples."""
        return {
            "lines": self.lines,
            "events": self.events,
            "emitted": self.emitted,
            "dropped": sum(self.dropped.values()),
            "dropped_by_reason": dict(sorted(self.dropped.items())),
            "invalid": self.invalid_count,
            "invalid_by_reason": dict(sorted(self.invalid_by_reason.items())),
            "invalid_lines": self.invalid,
            "actions": dict(sorted(self.actions.items())),
            "examples": self.examples,
            "dropped_examples": self.dropped_examples,
        }


_PATH_PART_RE: Final = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_CONSENT_KEYS: Final = frozenset({"analytics", "advertising", "personalization"})


def safe_path(path: str | None) -> str | None:
    """A violation's JSON path with every name the schemas do not define replaced by
    `[field]`: a field name is input and never reaches a report."""
    if path is None:
        return None
    parts = ["$"]
    for match in _PATH_PART_RE.finditer(path):
        name, index = match.groups()
        if index is not None:
            parts.append(f"[{index}]")
        else:
            parts.append("." + (name if name in RAW_FIELDS or name in _CONSENT_KEYS else "[field]"))
    return "".join(parts)


def _decode_line(line: bytes, *, max_bytes: int) -> Decoded:
    """One line as the stream decodes one message (same limits, same invalid items)."""
    return decode_message(line, max_bytes=max_bytes)


class _Progress:
    """A progress line on `out` (lines read, lines/s) every `PROGRESS_EVERY_SECONDS`."""

    def __init__(self, out: IO[str] | None, *, started: float) -> None:
        self._out = out
        self._started = self._last = started

    def tick(self, lines: int) -> None:
        now = time.monotonic()
        if self._out is None or now - self._last < PROGRESS_EVERY_SECONDS:
            return
        self._last = now
        rate = lines / max(now - self._started, 1e-9)
        self._out.write(f"preview: {lines} lines, {rate:,.0f} lines/s\n")
        self._out.flush()


def _preview_line(
    number: int,
    line: bytes,
    *,
    pipeline: Pipeline,
    report: _Report,
    target: IO[bytes],
    sink: PreviewAggregates,
    max_bytes: int,
) -> None:
    """Validate, anonymize and count the events of one line; write the anonymized ones."""
    report.lines += 1
    decoded = _decode_line(line, max_bytes=max_bytes)
    for invalid in decoded.invalid:
        detail = {}
        if invalid.path is not None:
            detail = {"path": safe_path(invalid.path), "rule": invalid.rule}
        report.invalid_line(number, invalid.index, invalid.reason, **detail)
    events = decoded.events
    report.events += len(events)
    # Outcomes are read by their attributes (`reason`, `event`, `actions`) only.
    outcomes: list[Any] = pipeline.process_batch(events)
    for event, outcome in zip(events, outcomes, strict=True):
        if report.outcome(number, event, outcome) is None:
            target.write(orjson.dumps(outcome.event) + b"\n")
            sink.add(outcome.event)


def _write_aggregates(path: Path, sink: PreviewAggregates) -> int:
    """Write the released aggregates as JSONL; return how many."""
    released = 0
    with path.open("wb") as handle:
        for record in sink.finish():
            handle.write(orjson.dumps(record) + b"\n")
            released += 1
    return released


def children_of(
    events_path: Path, requested_at: str, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> list[dict[str, str]]:
    """The `child` consent records the valid events flagged age_under_16 in the file stand
    for (lines that do not mention the flag are not parsed)."""
    records: dict[tuple[str, str], dict[str, str]] = {}
    with events_path.open("rb") as source:
        for _, line in _lines(source):
            if b"age_under_16" not in line:
                continue
            for event in _decode_line(line, max_bytes=max_bytes).events:
                if event.get("age_under_16") is True:
                    for record in child_records(event, requested_at):
                        records[(record["subject_type"], record["subject_id"])] = record
    return list(records.values())


def run_preview(
    *,
    events_path: Path,
    out_dir: Path,
    policy: Policy,
    geo: GeoLookup | None,
    consent: ConsentState | None,
    examples: int = 5,
    progress: IO[str] | None = None,
    consent_summary: Mapping[str, Any] | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> dict[str, Any]:
    """Preview `events_path` into `out_dir`; returns the report (also written as JSON).

    Each line is decoded as the stream decodes a message of at most `max_message_bytes`.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    children = children_of(events_path, now, max_bytes=max_message_bytes)
    if children:
        consent = consent if consent is not None else ConsentState()
        for record in children:
            consent.apply(record)
    keys = GeneratedKeyProvider(rotation_seconds=policy.keys.rotation_seconds)
    pipeline = Pipeline.from_policy(
        policy, keys=keys, geo=geo, consent=consent, record_actions=True
    )
    sink = PreviewAggregates(policy)
    report = _Report(examples=examples)
    started = time.monotonic()
    ticker = _Progress(progress, started=started)
    with events_path.open("rb") as source, (out_dir / ANONYMIZED_FILE).open("wb") as target:
        for number, line in _lines(source):
            _preview_line(
                number,
                line,
                pipeline=pipeline,
                report=report,
                target=target,
                sink=sink,
                max_bytes=max_message_bytes,
            )
            ticker.tick(report.lines)
    released = _write_aggregates(out_dir / AGGREGATES_FILE, sink)
    rows = sink.plan()
    result = {
        "policy_version": policy.policy_version,
        "geo_database": geo.database_type if geo is not None else None,
        **report.result(),
        "aggregates": {
            "file": AGGREGATES_FILE,
            "released": released,
            "counters": dict(sorted(sink.counters.items())),
            "plan": [asdict(row) for row in rows],
            "ledger": sink.ledger(),
        },
        "consent": dict(consent_summary) if consent_summary is not None else None,
        "children_flagged": len(children),
        "seconds": round(time.monotonic() - started, 3),
    }
    (out_dir / REPORT_FILE).write_bytes(
        orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    )
    (out_dir / REPORT_MD_FILE).write_text(report_markdown(result, policy, rows), encoding="utf-8")
    return result


@click.command("preview")
@click.option(
    "--events",
    "events_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSONL file of raw events (one event or one JSON array of events per line).",
)
@click.option(
    "--consent",
    "consent_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSONL file of consent records (schemas/consent-record.v1.json).",
)
@click.option(
    "--policy",
    "policy_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Policy TOML file; the shipped default without it.",
)
@click.option(
    "--geo-db",
    "geo_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="MaxMind-format database (.mmdb); the bundled GeoLite2 City without it.",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for anonymized.jsonl, aggregates.jsonl and report.json.",
)
@click.option("--examples", default=5, show_default=True, help="Before/after examples kept.")
@click.option(
    "--max-message-bytes",
    default=DEFAULT_MAX_MESSAGE_BYTES,
    show_default=True,
    envvar="ANONSTREAM_MAX_MESSAGE_BYTES",
    type=click.IntRange(min=1024, max=900_000),
    help="Largest line accepted, as the stream's limit on a message (same variable).",
)
def preview_cli(
    events_path: Path,
    consent_path: Path | None,
    policy_path: Path | None,
    geo_path: Path | None,
    out_dir: Path,
    examples: int,
    max_message_bytes: int,
) -> None:
    """Run the stream's anonymizer chain over a file of events and report what it did."""
    report = preview_files(
        events_path=events_path,
        out_dir=out_dir,
        policy_path=policy_path,
        geo_path=geo_path,
        consent_path=consent_path,
        examples=examples,
        max_message_bytes=max_message_bytes,
    )
    click.echo(
        f"preview: {report['events']} events: {report['emitted']} anonymized, "
        f"{report['dropped']} dropped {report['dropped_by_reason']}, "
        f"{report['invalid']} invalid; {report['aggregates']['released']} aggregates released; "
        f"wrote {out_dir / ANONYMIZED_FILE}, {out_dir / AGGREGATES_FILE}, {out_dir / REPORT_FILE}"
    )


def preview_files(
    *,
    events_path: Path,
    out_dir: Path,
    policy_path: Path | None,
    geo_path: Path | None,
    consent_path: Path | None,
    examples: int = 5,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> dict[str, Any]:
    """`run_preview` from the files a command names (the default policy and the bundled
    database where none is named)."""
    policy = load_policy(policy_path) if policy_path is not None else default_policy()
    if geo_path is None:
        geo_path = bundled_geo_database()
        if geo_path is None:
            click.echo("preview: no --geo-db and no bundled database: no geolocation", err=True)
    geo = GeoLookup(str(geo_path)) if geo_path is not None else None
    consent, consent_summary = (None, None)
    if consent_path is not None:
        consent, consent_summary = load_consent(consent_path, forms=policy.identifiers.forms())
    try:
        return run_preview(
            events_path=events_path,
            out_dir=out_dir,
            policy=policy,
            geo=geo,
            consent=consent,
            examples=examples,
            progress=sys.stderr,
            consent_summary=consent_summary,
            max_message_bytes=max_message_bytes,
        )
    finally:
        if geo is not None:
            geo.close()


# -------------------------------------------------------------------------------- the plan


def plan_table(rows: Iterable[PlanRow]) -> list[str]:
    """The planner's rows as a Markdown table (what `policy plan` prints and report.md holds)."""
    lines = [
        "| metric | window | cells | released | held back | share of true total "
        "| median rel. error (cells >= 100) | epsilon per person-day |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        held = ", ".join(f"{n} {reason}" for reason, n in row.held_back.items() if n) or "0"
        share = "-" if row.share is None else f"{row.share:.1%}"
        error = (
            "-"
            if row.median_relative_error is None
            else f"{row.median_relative_error:.1%} ({row.large_cells})"
        )
        epsilon = "-" if row.epsilon is None else f"{row.epsilon:.3f}"
        lines.append(
            f"| {row.metric} | {window_text(row.window_seconds)} | {row.cells} | {row.released} "
            f"| {held} | {share} | {error} | {epsilon} |"
        )
    return lines


def window_text(seconds: int) -> str:
    """A window size as the policy writes it (\"1h\")."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def report_markdown(result: Mapping[str, Any], policy: Policy, rows: Iterable[PlanRow]) -> str:
    """report.md: the preview in a page a privacy officer reads."""
    release = policy.release
    protection = (
        f"dp, epsilon {release.epsilon_per_day} and delta {release.delta_per_day:g} per person-day"
        if release.mode == "dp"
        else f"exact, k {release.k_min_subjects} (search terms {release.k_search_terms})"
    )
    lines = [
        f"# Preview of policy {policy.policy_version}",
        "",
        f"- events: {result['events']}; anonymized {result['emitted']}, dropped "
        f"{result['dropped']} {dict(result['dropped_by_reason'])}, invalid {result['invalid']}",
        f"- release: {protection}; {result['aggregates']['released']} records released",
        "",
        "## What the analytics team receives",
        "",
        *plan_table(rows),
        "",
        "Share: the released cells' values over the true total of the events (no bound, no "
        "noise). Median relative error: over released cells holding at least 100 true units "
        "(their number in brackets).",
        "",
    ]
    return "\n".join(lines)
