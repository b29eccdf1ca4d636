"""`anonstream consent`: row rules (pure), and the commands against the real broker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka.partitioner.default import murmur2

from anonymizers.consent import ConsentState
from stream.cli.consent import RowError, consent_record, normalise_row, record_key
from stream.kafka import admin_client
from stream.local.processes import settings_env
from stream.settings import Settings
from stream.tables.consent import ConsentTable
from stream.topics import create_topics, topic_specs
from tests.support.cli import run_cli
from tests.support.kafka import read_all

SECRET_ID = "c-Zq81-never-printed"


# -- pure rules --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("row", "expected"),
    [
        pytest.param(
            {"subject_type": "cookie_id", "subject_id": "c1", "action": "opt_out"},
            {"subject_type": "cookie_id", "subject_id": "c1", "action": "opt_out"},
            id="canonical",
        ),
        pytest.param(
            {
                "subject_type": "user_id",
                "subject_id": "u1",
                "action": "opt_in",
                "purposes": "analytics; Advertising",
                "requested_at": "",
            },
            {
                "subject_type": "user_id",
                "subject_id": "u1",
                "action": "opt_in",
                "purposes": ["analytics", "advertising"],
            },
            id="purposes-text-empty-time",
        ),
        pytest.param(
            {"Identifier Type": "Cookie", "Identifier": "c2", "Status": "Opted-Out"},
            {"subject_type": "cookie_id", "subject_id": "c2", "action": "opt_out"},
            id="cmp-aliases",
        ),
        pytest.param(
            {"cookie_id": "c3", "user_id": "", "action": "erase", "purposes": "all"},
            {"subject_type": "cookie_id", "subject_id": "c3", "action": "erase"},
            id="wide-shape",
        ),
        pytest.param(
            {"user_id": 12345, "action": "child"},
            {"subject_type": "user_id", "subject_id": "12345", "action": "child"},
            id="numeric-id",
        ),
        pytest.param(
            {
                "subject_type": "user_id",
                "subject_id": " Alice.Martin@Example.COM ",
                "action": "erase",
            },
            {
                "subject_type": "user_id",
                "subject_id": "alice.martin@example.com",
                "action": "erase",
            },
            id="email-canonical",
        ),
        pytest.param(
            {"device_id": "6F9619FF-8B86-D011-B42D-00C04FC964FF\t", "Status": "minor"},
            {
                "subject_type": "device_id",
                "subject_id": "6f9619ff-8b86-d011-b42d-00c04fc964ff",
                "action": "child",
            },
            id="guid-canonical",
        ),
        pytest.param(
            {"subject_type": "user_id", "subject_id": "Rene\u0301 ", "action": "opt_out"},
            {"subject_type": "user_id", "subject_id": "Ren\u00e9", "action": "opt_out"},
            id="user-nfc-case-kept",
        ),
    ],
)
def test_rows_become_schema_records(row: dict[str, Any], expected: dict[str, Any]) -> None:
    """Canonical rows, consent-platform names and the wide shape give the same record."""
    assert normalise_row(row) == expected


def test_single_command_record_and_key_use_the_policy_free_form() -> None:
    """`anonstream consent` writes the trimmed, NFC, case-folded e-mail in record and key."""
    record = consent_record(subject_type="user_id", subject_id=" Bob@Example.ORG\n", action="erase")
    assert record["subject_id"] == "bob@example.org"
    assert record_key(record) == b"user_id:bob@example.org"


@pytest.mark.parametrize(
    ("row", "rule"),
    [
        pytest.param(
            {"subject_type": "email", "subject_id": SECRET_ID, "action": "erase"},
            "$.subject_type: enum",
            id="subject-type",
        ),
        pytest.param(
            {"subject_type": "cookie_id", "subject_id": SECRET_ID, "action": "forget"},
            "$.action: enum",
            id="action",
        ),
        pytest.param(
            {"subject_type": "cookie_id", "subject_id": "", "action": "erase"},
            "required subject_id",
            id="empty-id",
        ),
        pytest.param(
            {"subject_type": "cookie_id", "subject_id": " \t ", "action": "erase"},
            "$.subject_id: minLength 1",
            id="blank-id",
        ),
        pytest.param(
            {"subject_type": "cookie_id", "subject_id": "x" * 513, "action": "erase"},
            "maxLength 512",
            id="long-id",
        ),
        pytest.param(
            {
                "subject_type": "cookie_id",
                "subject_id": SECRET_ID,
                "action": "opt_out",
                "purposes": "analytics;marketing",
            },
            "$.purposes[1]: enum",
            id="purpose",
        ),
        pytest.param(
            {
                "subject_type": "cookie_id",
                "subject_id": SECRET_ID,
                "action": "opt_out",
                "requested_at": "2026-01-01 10:00",
            },
            "format date-time",
            id="time",
        ),
        pytest.param(
            {"cookie_id": SECRET_ID, "user_id": "u", "action": "erase"},
            "exactly one of",
            id="two-ids",
        ),
        pytest.param(
            {"subject_type": "cookie_id", "subject_id": SECRET_ID, "action": "erase", SECRET_ID: 1},
            "1 unknown field(s)",
            id="unknown-field",
        ),
    ],
)
def test_invalid_rows_name_the_rule_not_the_id(row: dict[str, Any], rule: str) -> None:
    """Each broken rule is reported by JSON path and rule; the id never appears."""
    with pytest.raises(RowError) as caught:
        normalise_row(row)
    assert rule in str(caught.value)
    assert SECRET_ID not in str(caught.value)


# -- on the real broker ------------------------------------------------------------------
@pytest.fixture
def consent_topic(settings: Settings) -> Settings:
    create_topics(settings, [s for s in topic_specs(settings) if s.name == settings.topic_consent])
    return settings


def consent_records(settings: Settings) -> list[Any]:
    return read_all(settings, settings.topic_consent, idle_s=1.0)


@pytest.mark.kafka
def test_single_commands_record_and_confirm_without_the_id(consent_topic: Settings) -> None:
    """Each command sends one schema record keyed `<type>:<id>` to the partition a keyed
    send picks, and its confirmation names the type and purposes, never the id.
    """
    settings = consent_topic
    commands = [
        (
            ["opt-out", "--cookie-id", SECRET_ID, "--purpose", "analytics"],
            "opt_out",
            "opt_out recorded for cookie_id (purposes: analytics)",
        ),
        (
            ["opt-in", "--user-id", SECRET_ID],
            "opt_in",
            "opt_in recorded for user_id (purposes: analytics, advertising, personalization)",
        ),
        (["erase", "--device-id", SECRET_ID], "erase", "erase recorded for device_id"),
        (["child", "--ad-id", "-"], "child", "child recorded for ad_id"),
    ]
    for args, _, confirmation in commands:
        stdin = SECRET_ID + "\n" if "-" in args else None
        result = run_cli(settings, "consent", *args, stdin=stdin)
        assert result.exit_code == 0, result.output
        assert result.output.strip() == confirmation
        assert SECRET_ID not in result.output
    records = consent_records(settings)
    by_action = {orjson.loads(r.value)["action"]: r for r in records}
    assert set(by_action) == {action for _, action, _ in commands}
    for record in records:
        body = orjson.loads(record.value)
        assert record.key == f"{body['subject_type']}:{body['subject_id']}".encode()
        assert body["subject_id"] == SECRET_ID
        assert body["requested_at"].endswith("Z")
        assert record.partition == (murmur2(record.key) & 0x7FFFFFFF) % settings.partitions
    assert orjson.loads(by_action["opt_out"].value)["purposes"] == ["analytics"]
    assert "purposes" not in orjson.loads(by_action["opt_in"].value), "absent means all"


@pytest.mark.kafka
def test_single_command_needs_exactly_one_identifier(consent_topic: Settings) -> None:
    """No identifier, two identifiers, or --purpose on erase are usage errors; nothing sent."""
    for args in (
        ["erase"],
        ["erase", "--user-id", "u", "--cookie-id", "c"],
        ["erase", "--user-id", "u", "--purpose", "analytics"],
        ["opt-out", "--cookie-id", ""],
    ):
        result = run_cli(consent_topic, "consent", *args)
        assert result.exit_code == 2, (args, result.output)
    assert consent_records(consent_topic) == []


@pytest.mark.kafka
def test_import_sends_valid_rows_reports_invalid_ones_and_exits_1(
    consent_topic: Settings, tmp_path: Path
) -> None:
    """JSONL and CSV imports send every valid row (in order: the latest row per subject
    wins in the table), report each invalid row by line number and rule without its id,
    and exit 1 when any row was invalid.
    """
    settings = consent_topic
    jsonl = tmp_path / "export.jsonl"
    lines = [
        orjson.dumps({"subject_type": "cookie_id", "subject_id": "c-1", "action": "opt_out"}),
        orjson.dumps({"subject_type": "cookie_id", "subject_id": SECRET_ID, "action": "nope"}),
        b"",
        b"{not json " + SECRET_ID.encode(),
        orjson.dumps({"cookie_id": "c-2", "status": "withdrawn", "purpose": "analytics"}),
        orjson.dumps({"subject_type": "cookie_id", "subject_id": "c-1", "action": "opt_in"}),
    ]
    jsonl.write_bytes(b"\n".join(lines) + b"\n")
    result = run_cli(settings, "consent", "import", str(jsonl))
    assert result.exit_code == 1, result.output
    assert "line 2: $.action: enum opt_out|opt_in|erase|child" in result.output
    assert "line 4: not valid JSON" in result.output
    assert "3 sent and acknowledged, 2 invalid, 5 rows" in result.output
    assert SECRET_ID not in result.output

    csv_file = tmp_path / "export.csv"
    csv_file.write_text(
        "Identifier Type;Identifier;Status;Purpose;Source\n"
        "user_id;u-9;erase;;web\n"
        f"bad_type;{SECRET_ID};erase;;web\n"
        "device_id;d-9;opt_out;analytics|personalization;app\n"
        f"user_id;{SECRET_ID}\n"
    )
    result = run_cli(settings, "consent", "import", str(csv_file))
    assert result.exit_code == 1, result.output
    assert "warning: ignoring column(s) 'Source'" in result.output
    assert "line 3: $.subject_type: enum" in result.output
    assert "line 5: 2 fields; the header has 5" in result.output
    assert "2 sent and acknowledged, 2 invalid, 4 rows" in result.output
    assert SECRET_ID not in result.output

    records = consent_records(settings)
    assert sorted(r.key for r in records) == sorted(
        [b"cookie_id:c-1", b"cookie_id:c-2", b"cookie_id:c-1", b"user_id:u-9", b"device_id:d-9"]
    )
    # What the workers' table makes of it: c-1's opt-in (its later row) won.
    table = ConsentTable(settings, state=ConsentState())
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        table.apply(record.key, record.value)
    assert table.invalid_records == 0
    assert table.state.status("cookie_id", "c-1").opted_out == frozenset()
    assert table.state.status("cookie_id", "c-2").opted_out == {"analytics"}
    assert table.state.status("user_id", "u-9").erased
    assert table.state.status("device_id", "d-9").opted_out == {"analytics", "personalization"}


@pytest.mark.kafka
def test_import_of_valid_rows_exits_0(consent_topic: Settings, tmp_path: Path) -> None:
    """A clean 20,000-row file: every row acknowledged, exit 0, keys in Kafka's partitions."""
    rows = [
        {"subject_type": "ad_id", "subject_id": f"ad-{i}", "action": "opt_out"}
        for i in range(20_000)
    ]
    path = tmp_path / "rows.ndjson"
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    result = run_cli(consent_topic, "consent", "import", str(path))
    assert result.exit_code == 0, result.output
    assert "20,000 sent and acknowledged, 0 invalid" in result.output
    records = consent_records(consent_topic)
    assert sorted(r.key for r in records) == sorted(f"ad_id:ad-{i}".encode() for i in range(20_000))
    partitions = consent_topic.partitions
    assert all(r.partition == (murmur2(r.key) & 0x7FFFFFFF) % partitions for r in records)


@pytest.mark.kafka
def test_unacknowledged_rows_are_reported_and_exit_3(
    consent_topic: Settings, tmp_path: Path
) -> None:
    """When the broker refuses the records (here: the topic accepts no batch that large),
    the import says how many rows were acknowledged (none) and exits 3; a single command
    fails with one line naming no id.
    """
    from kafka.admin import ConfigResource, ConfigResourceType

    settings = consent_topic
    with admin_client(settings) as admin:
        admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC,
                    settings.topic_consent,
                    configs={"max.message.bytes": "100"},
                )
            ]
        )
    path = tmp_path / "rows.jsonl"
    row = {"subject_type": "user_id", "subject_id": SECRET_ID, "action": "erase"}
    path.write_bytes(orjson.dumps(row) + b"\n")
    result = run_cli(settings, "consent", "import", str(path))
    assert result.exit_code == 3, result.output
    assert "0 sent and acknowledged" in result.output
    assert "1 valid rows were not acknowledged" in result.output
    assert SECRET_ID not in result.output

    single = subprocess.run(
        [sys.executable, "-m", "stream", "consent", "erase", "--user-id", SECRET_ID],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert single.returncode == 2, single.stderr
    assert single.stderr.startswith("error: the broker did not acknowledge the erase record")
    assert SECRET_ID not in single.stdout + single.stderr
    assert consent_records(settings) == []
