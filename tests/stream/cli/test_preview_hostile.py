"""`anonstream preview` on hostile input: it survives the input that breaks no stream worker
either, and writes its report with every item accounted for (issue 18, class 1)."""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import orjson
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from anonymizers.geo import GeoLookup
from anonymizers.policy import default_policy
from stream.cli import cli
from stream.cli.preview import run_preview
from tests.anonymizers.conftest import build_mmdb
from tests.support.hostile import Message, hostile_batch, hostile_messages


def test_preview_reports_a_hostile_batch(tmp_path: Path) -> None:
    """The broker test's hostile batch as one line: preview exits 0, writes report.json and
    report.md, lists each item to dead-letter at its index with its reason and rule, drops
    the keyless-in-the-stream times never (preview keys every epoch) and anonymizes every
    good event."""
    batch = hostile_batch(datetime.now(UTC).replace(microsecond=0))
    events = tmp_path / "events.jsonl"
    events.write_bytes(orjson.dumps(batch.items) + b"\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["preview", "--events", str(events), "--out", str(out)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert (out / "report.md").read_text()
    dead = batch.dead_letters()
    listed = {
        entry["index"]: (entry["reason"], entry.get("rule")) for entry in report["invalid_lines"]
    }
    assert listed == dead
    drops = batch.drops()
    keyless = drops.pop("no_key")
    assert report["dropped_by_reason"] == dict(drops)
    assert report["emitted"] == len(batch.goods) + keyless
    assert report["events"] + report["invalid"] == len(batch.items)
    anonymized = [
        orjson.loads(line) for line in (out / "anonymized.jsonl").read_bytes().splitlines()
    ]
    assert {good["page_url"] for good in batch.goods} <= {e.get("page_url") for e in anonymized}


def _geo(tmp: Path) -> GeoLookup:
    return GeoLookup(str(build_mmdb(tmp / "preview.mmdb")))


@settings(max_examples=40)
@given(messages=st.lists(hostile_messages(), min_size=1, max_size=6))
def test_preview_survives_any_hostile_file(messages: list[Message]) -> None:
    """Any file of hostile lines (events, mixed batches, junk): preview returns and writes its
    report, each valid event emitted or dropped, and anonymized.jsonl holds the emitted."""
    tmp = Path(tempfile.mkdtemp())
    events = tmp / "events.jsonl"
    events.write_bytes(b"\n".join(message.value for message in messages) + b"\n")
    report = run_preview(
        events_path=events,
        out_dir=tmp / "out",
        policy=default_policy(),
        geo=_geo(tmp),
        consent=None,
    )
    assert json.loads((tmp / "out" / "report.json").read_text()) == json.loads(orjson.dumps(report))
    assert (tmp / "out" / "report.md").is_file()
    assert report["events"] == report["emitted"] + report["dropped"]
    assert "unprocessable" not in report["dropped_by_reason"]
    written = (tmp / "out" / "anonymized.jsonl").read_bytes().splitlines()
    assert len(written) == report["emitted"]
