# ruff: noqa: E501  (long literal tables of test data)
"""The privacy team's commands: `policy init/check/schema` and `preview` (acceptance)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from anonymizers.policy import default_policy, parse_policy, policy_json_schema
from stream.cli import cli
from tests.anonymizers.conftest import build_mmdb, unkeyed_hashes


def _run(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_policy_init_writes_default_and_refuses_overwrite(tmp_path: Path) -> None:
    """init writes a commented default that checks clean; a second init needs --force."""
    path = tmp_path / "policy.toml"
    assert _run("policy", "init", str(path)).exit_code == 0
    text = path.read_text()
    assert text.count("#") > 50
    assert parse_policy(tomllib.loads(text)) == default_policy()
    again = _run("policy", "init", str(path))
    assert again.exit_code != 0 and "--force" in again.output
    assert _run("policy", "init", "--force", str(path)).exit_code == 0
    checked = _run("policy", "check", str(path))
    assert checked.exit_code == 0 and "ok" in checked.output


def test_policy_check_lists_every_mistake(tmp_path: Path) -> None:
    """check on a policy with several mistakes prints all of them in one run and exits 1."""
    path = tmp_path / "bad.toml"
    path.write_text(
        """schema_version = 1
policy_version = "2024-06"
[geo]
granularity = "street"
ipv4_prefix = 28
[identifiers]
imei = "hash"
[keys]
rotation = "1 day"
[release]
k_min_subjects = 1
k_search_terms = 5
epsilon_per_day = -1
[consent]
honour_gpc = "yes"
[aggregation]
windows = ["1m", "7m"]
[[aggregation.metrics]]
name = "searches"
event_types = ["search"]
dimensions = ["search_terms"]
""",
        encoding="utf-8",
    )
    result = _run("policy", "check", str(path))
    assert result.exit_code == 1
    expected = [
        'geo.granularity must be one of "none", "country", "region", "city"; got "street"',
        "geo.ipv4_prefix must be an integer from 0 to 24; got 28",
        'identifiers.imei must be one of "pseudonymize", "drop"; got "hash"',
        "keys.rotation must be a duration",
        "release.k_min_subjects must be an integer >= 2; got 1",
        "release.epsilon_per_day must be a number > 0 and <= 16; got -1",
        'consent.honour_gpc must be true or false; got "yes"',
        "aggregation.metrics[0].sensitive must be true",
    ]
    for line in expected:
        assert line in result.output, line
    assert f"{len(result.output.splitlines()) - 1} errors" in result.output.splitlines()[0]


def test_policy_check_reports_what_the_aggregation_engine_refuses(tmp_path: Path) -> None:
    """A policy the aggregation engine could not run fails its check, with every engine
    problem at the policy's own paths, in one pass: windows that do not nest, a summary whose
    clamp overflows the engine's histogram, a metric rolling up another, a cap beyond the
    engine's counters; the shipped default passes."""
    path = tmp_path / "engine.toml"
    path.write_text(
        """schema_version = 1
[aggregation]
windows = ["1m", "90s", "1d"]
[[aggregation.metrics]]
name = "visitors"
event_types = ["page_view"]
dimensions = ["country", "region"]
aggregate = "distinct_subjects"
[[aggregation.metrics]]
name = "visitors_by_country"
event_types = ["page_view"]
dimensions = ["country"]
aggregate = "distinct_subjects"
[[aggregation.metrics]]
name = "time_on_page"
event_types = ["page_leave"]
dimensions = ["page_url"]
aggregate = "summary"
value_field = "time_on_page_ms"
statistics = ["count", "p50"]
[context]
time_on_page_max = "1d"
[release]
mode = "exact"
max_contributions_per_cell = 100000
""",
        encoding="utf-8",
    )
    result = _run("policy", "check", str(path))
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0] == f"{path}: 4 errors"
    assert sorted(line.strip() for line in lines[1:]) == sorted(
        [
            "aggregation.windows must be nested durations, each dividing the next (90s is not "
            'a multiple of 60s); got ["1m", "90s", "1d"]',
            "context.time_on_page_max must be at most 65535s while a metric summarises "
            'time_on_page_ms (one-second histogram bins, at most 65536); got "1d"',
            "aggregation.metrics[1].dimensions must be more than a subset of metric "
            "'visitors''s ['country', 'region'] over the same events (a roll-up could reveal "
            "suppressed cells: define one metric at the finest level the policy allows); "
            'got ["country"]',
            "release.max_contributions_per_cell must be an integer from 1 to 65535; got 100000",
        ]
    )
    default = tmp_path / "default.toml"
    assert _run("policy", "init", str(default)).exit_code == 0
    assert _run("policy", "check", str(default)).exit_code == 0


def test_policy_check_missing_file(tmp_path: Path) -> None:
    """A missing file is an error, not a crash."""
    result = _run("policy", "check", str(tmp_path / "nope.toml"))
    assert result.exit_code == 1 and "readable" in result.output


def test_policy_schema_command_matches_committed_file() -> None:
    """`anonstream policy schema` prints the committed schemas/policy.v1.json."""
    result = _run("policy", "schema")
    assert json.loads(result.output) == policy_json_schema()


# ---------------------------------------------------------------------- preview acceptance

SECRETS = {
    "ipv4": "81.2.69.160",
    "ipv6": "2a02:a000::1f:2e",
    "ipv4_mapped": "::ffff:203.0.113.77",
    "mac": "00:1A:2B:3C:4D:5E",
    "imei": "490154203237518",
    "ad_id": "38400000-8cf0-11bd-b23e-10b96e40000d",
    "cookie_id": "ck_7f3a9b2e41d0",
    "user_id": "customer-88231",
    "device_id": "dev-A1B2C3D4E5",
    "email": "jeanne.dupont@example.fr",
    "email_url": "marc.leroy@example.com",
    "phone_intl": "+33 6 12 34 56 78",
    "phone_national": "06.98.76.54.32",
    "phone_dashes": "555-867-5309",
    "card": "4111 1111 1111 1111",
    "card_dashes": "5500-0000-0000-0004",
    "iban": "FR76 3000 6000 0112 3456 7890 189",
    "iban_compact": "DE89370400440532013000",
}


def _compact(value: str) -> str:
    return "".join(c for c in value if c.isalnum())


def _events() -> list[dict[str, Any]]:
    s = SECRETS
    base = {
        "event_type": "page_view",
        "occurred_at": "2024-05-01T10:00:00Z",
        "user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    }
    return [
        {
            **base,
            "event_id": "1",
            "user_id": s["user_id"],
            "cookie_id": s["cookie_id"],
            "device_id": s["device_id"],
            "ad_id": s["ad_id"],
            "mac": s["mac"],
            "imei": s["imei"],
            "ip": s["ipv4"],
            "page_url": f"https://shop.example/account/{s['user_id']}/orders?email={s['email_url']}&utm_source=nl#{s['cookie_id']}",
            "referrer_url": f"https://mail.example/read?to={s['email_url']}",
        },
        {
            **base,
            "event_id": "2",
            "cookie_id": s["cookie_id"],
            "ip": s["ipv6"],
            "page_url": f"https://shop.example/u/{s['email_url']}/profile",
            "browser_language": "fr-FR",
        },
        {
            **base,
            "event_id": "3",
            "ip": s["ipv4_mapped"],
            "event_type": "search",
            "search_terms": f"contact {s['email']} or {s['phone_intl']}",
        },
        {
            **base,
            "event_id": "4",
            "device_id": s["device_id"],
            "event_type": "search",
            "search_terms": f"call {s['phone_national']} / {s['phone_dashes']}",
        },
        {
            **base,
            "event_id": "5",
            "user_id": s["user_id"],
            "event_type": "search",
            "search_terms": f"pay {s['card']} and {s['card_dashes']}",
        },
        {
            **base,
            "event_id": "6",
            "user_id": s["user_id"],
            "event_type": "search",
            "search_terms": f"iban {s['iban']} {s['iban_compact']}",
        },
        {
            **base,
            "event_id": "7",
            "ad_id": s["ad_id"],
            "event_type": "link_click",
            "link_url": f"https://pay.example/c/{_compact(s['card'])}?iban={s['iban_compact']}",
            "page_url": f"https://shop.example/search?q={s['phone_intl']}&utm_campaign={s['email']}",
        },
        {
            **base,
            "event_id": "8",
            "user_id": s["user_id"],
            "mac": s["mac"],
            "imei": s["imei"],
            "page_url": f"https://shop.example/device/{s['imei']}/{s['mac']}",
            "unknown_field": s["email"],
        },
        {**base, "event_id": "9", "cookie_id": s["cookie_id"], "ip": s["ipv4"], "gpc": True},
        # A child of their own: the flag purges the child's identifiers, not the others'.
        {**base, "event_id": "10", "user_id": "child-1", "age_under_16": True, "ip": s["ipv6"]},
    ]


def test_preview_counts_nothing_of_a_child_flagged_anywhere_in_the_file(tmp_path: Path) -> None:
    """An event flagged age_under_16 stands for `child` records of its identifiers, as the
    stream's anonymize stage writes them: the child's events before and after it count
    nowhere (dropped as `child`), other people's pass."""
    base = {"event_type": "page_view", "occurred_at": "2026-11-30T10:00:00Z"}
    child = [
        {**base, "event_id": f"c{i}", "cookie_id": "kid", "page_url": "https://shop.example/a"}
        for i in range(4)
    ]
    child.insert(2, {**base, "event_id": "flag", "cookie_id": "kid", "age_under_16": True})
    others = [
        {
            **base,
            "event_id": f"o{i}",
            "cookie_id": f"adult-{i}",
            "page_url": "https://shop.example/a",
        }
        for i in range(3)
    ]
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in [*child, *others]))
    out = tmp_path / "out"
    result = _run("preview", "--events", str(events), "--out", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["dropped_by_reason"] == {"child": 4, "under_16": 1}
    assert report["children_flagged"] == 1
    assert report["emitted"] == len(others)


def test_preview_output_holds_no_identifier_nor_unkeyed_hash(tmp_path: Path) -> None:
    """Acceptance: preview on every kind of identifier and PII leaks none of them, nor their hashes."""
    events = tmp_path / "events.jsonl"
    lines = [orjson.dumps(e) for e in _events()]
    lines.insert(3, b"{not json")
    lines.insert(
        5,
        orjson.dumps(
            {
                "event_id": "x",
                "event_type": "page_view",
                "occurred_at": "yesterday",
                "user_id": SECRETS["user_id"],
            }
        ),
    )
    lines.append(orjson.dumps([_events()[0], _events()[2]]))
    events.write_bytes(b"\n".join(lines) + b"\n")
    consent = tmp_path / "consent.jsonl"
    consent.write_bytes(
        orjson.dumps(
            {"subject_type": "device_id", "subject_id": SECRETS["device_id"], "action": "opt_out"}
        )
        + b"\n"
    )
    geo = build_mmdb(tmp_path / "geo.mmdb")
    out = tmp_path / "out"
    result = _run(
        "preview",
        "--events",
        str(events),
        "--consent",
        str(consent),
        "--geo-db",
        str(geo),
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["invalid"] == 2
    assert [i["line"] for i in report["invalid_lines"]] == [4, 6]
    assert report["invalid_lines"][1] == {
        "line": 6,
        "reason": "schema_violation",
        "path": "$.occurred_at",
        "rule": "format date-time",
    }
    # device_id is opted out: events 1, 4 and the batched copy of 1 carry it.
    assert report["dropped_by_reason"] == {"gpc": 1, "opted_out": 3, "under_16": 1}
    assert (
        report["emitted"]
        == len((out / "anonymized.jsonl").read_text().splitlines())
        == report["events"] - report["dropped"]
        == 12 - 5
    )
    assert report["actions"]["search_terms:redacted"] >= 3
    assert report["examples"]
    # Seven anonymized events of a handful of people: aggregated; no cell of a dimension
    # passes its threshold (at least k = 10); only dimensionless totals (one public cell,
    # always released in dp mode) appear, with their noise.
    assert report["aggregates"]["counters"]["events"] == 7
    released = [json.loads(line) for line in (out / "aggregates.jsonl").read_text().splitlines()]
    assert report["aggregates"]["released"] == len(released)
    assert all(not r["dimensions"] and r["noise_sd"] for r in released)

    texts = {p.name: p.read_text() for p in out.iterdir()}
    for name, text in texts.items():
        folded = text.casefold()
        for label, value in SECRETS.items():
            forms = {value, value.strip(), _compact(value)}
            if label.startswith("ip"):
                forms.add(value.removeprefix("::ffff:"))
            for form in forms:
                assert form.casefold() not in folded, (name, label, form)
                for digest in unkeyed_hashes(form):
                    assert digest not in text, (name, label)
    anonymized = [json.loads(line) for line in texts["anonymized.jsonl"].splitlines()]
    assert all("unknown_field" not in e and "ip" not in e for e in anonymized)


def test_preview_without_policy_or_geo_uses_defaults(tmp_path: Path) -> None:
    """Without --policy and --geo-db, preview runs the default policy and the bundled database."""
    events = tmp_path / "e.jsonl"
    events.write_bytes(
        orjson.dumps(
            {
                "event_id": "1",
                "event_type": "page_view",
                "occurred_at": "2024-05-01T10:00:00Z",
                "ip": "81.2.69.160",
                "cookie_id": "c-123456789",
            }
        )
        + b"\n"
    )
    result = _run("preview", "--events", str(events), "--out", str(tmp_path / "o"))
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["emitted"] == 1 and report["policy_version"] == "default"
    from stream.cli.preview import bundled_geo_database

    if bundled_geo_database() is not None:
        assert report["geo_database"] == "GeoLite2-City"


def test_preview_refuses_invalid_policy(tmp_path: Path) -> None:
    """An invalid policy stops preview before any event is read."""
    policy = tmp_path / "p.toml"
    policy.write_text("schema_version = 1\n[release]\nk_min_subjects = 0\n", encoding="utf-8")
    events = tmp_path / "e.jsonl"
    events.write_text("", encoding="utf-8")
    from anonymizers.exceptions import PolicyError

    with pytest.raises(PolicyError):
        _run(
            "preview",
            "--events",
            str(events),
            "--policy",
            str(policy),
            "--out",
            str(tmp_path / "o"),
        )


def _page_views(people: int, page: str, *, prefix: str) -> list[bytes]:
    return [
        orjson.dumps(
            {
                "event_id": f"{prefix}-{i}",
                "event_type": "page_view",
                "occurred_at": f"2024-05-01T10:00:{i % 60:02d}Z",
                "ip": "81.2.69.160",
                "cookie_id": f"{prefix}-cookie-{i}",
                "page_url": page,
            }
        )
        for i in range(people)
    ]


@pytest.mark.parametrize("mode", ["exact", "dp"])
def test_preview_writes_the_aggregates_the_release_rules_allow(tmp_path: Path, mode: str) -> None:
    """aggregates.jsonl holds the released records. exact (k = 10): a page seen by 12 people
    is released in every window of page_views (1h, 1d); pages seen by 11 and 2 people are not
    (the 11 is held back too, or the 2 would be the window total minus the rest) and go to an
    `other` cell of 13. dp: every record says so, no page of 25 people passes a threshold
    calibrated to the budget (at least k), and the live per-minute total (one public cell)
    is released with its noise."""
    events = tmp_path / "events.jsonl"
    lines = _page_views(12, "https://shop.example/a", prefix="a")
    lines += _page_views(11, "https://shop.example/c", prefix="c")
    lines += _page_views(2, "https://shop.example/b", prefix="b")
    events.write_bytes(b"\n".join(lines) + b"\n")
    policy = tmp_path / "policy.toml"
    assert _run("policy", "init", str(policy)).exit_code == 0
    policy.write_text(policy.read_text().replace('mode = "dp"', f'mode = "{mode}"'))
    out = tmp_path / "out"
    result = _run(
        "preview", "--events", str(events), "--policy", str(policy),
        "--geo-db", str(build_mmdb(tmp_path / "geo.mmdb")), "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "aggregates.jsonl").read_text().splitlines()]
    report = json.loads((out / "report.json").read_text())
    assert report["aggregates"]["released"] == len(records)
    assert {r["mode"] for r in records} == {mode}
    page_views = {
        (r["window_seconds"], r["cell"], r["dimensions"].get("page_url"), r["value"])
        for r in records
        if r["metric"] == "page_views"
    }
    if mode == "dp":
        assert page_views == set()
        live = [r for r in records if r["metric"] == "page_views_per_minute"]
        assert live and all(r["threshold"] == 0 and r["noise_sd"] > 0 for r in live)
        assert all(r["threshold"] >= r["k"] for r in records if r["dimensions"])
        return
    expected = set()
    for size in (3600, 86400):
        expected.add((size, "cell", "https://shop.example/a", 12))
        expected.add((size, "other", None, 13))
    assert page_views == expected


def test_preview_accepts_and_rejects_what_the_stream_does(tmp_path: Path) -> None:
    """Each line is judged as the stream judges a message: same size limit, empty batch,
    non-object item and schema answers, and no report names an unknown field."""
    from anonymizers.intake import decode_message

    good = {
        "event_id": "1",
        "event_type": "page_view",
        "occurred_at": "2024-05-01T10:00:00Z",
        "cookie_id": "c-123456789",
    }
    limit = 2048
    lines = [
        orjson.dumps(good),
        b"[]",
        orjson.dumps([good, 7]),
        orjson.dumps({**good, "page_url": "https://shop.example/" + "a" * limit}),
        orjson.dumps({**good, "consent": {"analytics": "jeanne.dupont@example.fr"}}),
        orjson.dumps({**good, "jeanne.dupont@example.fr": 1}),
    ]
    events = tmp_path / "e.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    result = _run(
        "preview",
        "--events",
        str(events),
        "--out",
        str(tmp_path / "o"),
        "--max-message-bytes",
        str(limit),
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    stream = [decode_message(line, max_bytes=limit) for line in lines]
    assert report["events"] == sum(len(d.events) for d in stream)
    assert report["invalid"] == sum(len(d.invalid) for d in stream)
    expected: dict[str, int] = {}
    for decoded in stream:
        for invalid in decoded.invalid:
            expected[invalid.reason] = expected.get(invalid.reason, 0) + 1
    assert report["invalid_by_reason"] == expected
    assert {"too_large", "not_object"} <= set(expected)
    text = (tmp_path / "o" / "report.json").read_text() + result.output
    assert "jeanne" not in text and "dupont" not in text


def test_python_m_stream_returns_the_exit_status(tmp_path: Path) -> None:
    """`python -m stream` exits with the command's status, not 0 when it failed."""
    import subprocess
    import sys

    bad = tmp_path / "bad.toml"
    bad.write_text('schema_version = 1\npolicy_version = "x"\n[geo]\ngranularity = "street"\n')
    done = subprocess.run(
        [sys.executable, "-m", "stream", "policy", "check", str(bad)],
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout
    ok = subprocess.run(
        [sys.executable, "-m", "stream", "--help"], capture_output=True, check=False, timeout=120
    )
    assert ok.returncode == 0
