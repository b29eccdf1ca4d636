"""`anonstream generate --to FILE.jsonl` through the real CLI."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import jsonschema_rs
import orjson
import pytest
from click.testing import CliRunner

import schemas
from anonymizers.intake import decode_message
from stream.cli import cli
from tests.stream.local.traffic.recount import MAX_BYTES, has_no_identifier
from tests.support.paths import ROOT

ARGS = [
    "generate",
    "--rate",
    "2000",
    "--duration",
    "10",
    "--seed",
    "42",
    "--start",
    "2025-03-01T09:00:00Z",
]


def _generate(target: Path, *extra: str, geo_db: Path) -> None:
    result = CliRunner().invoke(
        cli, [*ARGS, "--geo-db", str(geo_db), "--to", str(target), *extra], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output


def test_file_output_matches_its_truth(tmp_path: Path, geo_db: Path) -> None:
    """Each line decodes to exactly one item; lines, reasons, consent records and events
    add up to the .truth.json written next to the file."""
    target = tmp_path / "out" / "traffic.jsonl"
    _generate(target, geo_db=geo_db)
    truth = orjson.loads((tmp_path / "out" / "traffic.truth.json").read_bytes())
    lines = target.read_bytes().split(b"\n")
    assert lines.pop() == b""
    assert len(lines) == truth["items"] == 20_000
    reasons: Counter[str] = Counter()
    events = []
    for line in lines:
        decoded = decode_message(line, max_bytes=MAX_BYTES)
        assert decoded.consumed == 1
        assert not decoded.batched or line == b"[]"  # the empty batch is a line of its own
        reasons.update(v.reason for v in decoded.invalid)
        events.extend(decoded.events)
    assert {r: n for r, n in truth["malformed_by_reason"].items() if n} == dict(reasons)
    assert len(events) == truth["events"]
    assert sum(map(has_no_identifier, events)) == truth["events_without_identifiers"]
    records = [
        orjson.loads(line)
        for line in (tmp_path / "out" / "traffic.consent.jsonl").read_bytes().splitlines()
    ]
    validator = jsonschema_rs.validator_for(
        schemas.load(schemas.CONSENT_RECORD_V1), validate_formats=True
    )
    assert all(validator.is_valid(r) for r in records)
    assert len(records) == truth["messages"]["consent"] > 0
    assert dict(Counter(r["action"] for r in records)) == {
        a: n for a, n in truth["consent_records_by_action"].items() if n
    }


def test_seeded_file_runs_are_byte_identical(tmp_path: Path, geo_db: Path) -> None:
    """Two runs with the same seed and start write identical files (events, consent, truth)."""
    _generate(tmp_path / "a.jsonl", geo_db=geo_db)
    _generate(tmp_path / "b.jsonl", geo_db=geo_db)
    for suffix in (".jsonl", ".consent.jsonl", ".truth.json"):
        assert (tmp_path / f"a{suffix}").read_bytes() == (tmp_path / f"b{suffix}").read_bytes()
    _generate(tmp_path / "c.jsonl", "--seed", "43", geo_db=geo_db)
    assert (tmp_path / "c.jsonl").read_bytes() != (tmp_path / "a.jsonl").read_bytes()


def test_truth_events_lists_every_message(tmp_path: Path, geo_db: Path) -> None:
    """--truth-events adds the log: every message in send order with its items."""
    target = tmp_path / "t.jsonl"
    _generate(target, "--truth-events", "--truth", str(tmp_path / "truth.json"), geo_db=geo_db)
    truth = orjson.loads((tmp_path / "truth.json").read_bytes())
    log = truth["log"]
    assert [entry["seq"] for entry in log] == list(range(len(log)))
    assert sum(entry["topic"] == "consent" for entry in log) == truth["messages"]["consent"]
    items = [item for entry in log if entry["topic"] == "raw" for item in entry["items"]]
    assert len(items) == truth["items"]
    lines = target.read_bytes().splitlines()
    for line, item in zip(lines, items, strict=True):
        if item["reason"] is None:
            assert orjson.loads(line) == item["event"]


def test_module_entry_point_writes_files(tmp_path: Path) -> None:
    """`python -m stream generate` (subprocess, built-in prefixes) writes the three files."""
    target = tmp_path / "sub.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "stream", *ARGS[:4], "1", "--to", str(target)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert len(target.read_bytes().splitlines()) == 2000
    assert "wrote 2000 events" in result.stderr
    assert (tmp_path / "sub.truth.json").exists() and (tmp_path / "sub.consent.jsonl").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--to", "out.txt"], "must be 'kafka' or a path ending in .jsonl"),
        (["--to", "x.jsonl", "--start", "2025-03-01T09:00:00"], "must carry a zone"),
        (["--to", "x.jsonl", "--start", "yesterday"], "ISO 8601"),
        (["--to", "x.jsonl", "--malformed-share", "1.5"], "malformed-share"),
        (["--to", "x.jsonl", "--rate", "0"], "--rate"),
    ],
    ids=["bad-target", "naive-start", "bad-start", "share", "rate"],
)
def test_bad_options_are_rejected(args: list[str], message: str, tmp_path: Path) -> None:
    """Bad options exit with a usage error naming the option and the value."""
    with CliRunner().isolated_filesystem(temp_dir=tmp_path):
        result = CliRunner().invoke(cli, ["generate", *args])
    assert result.exit_code == 2
    assert message in result.output
