"""`anonstream tail` on the real broker: the released aggregates as a table."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import orjson
import pytest

from stream.cli.tail import value_text
from stream.local.processes import settings_env
from stream.settings import Settings
from stream.topics import create_topics, topic_specs
from tests.support.cli import run_cli
from tests.support.kafka import produce

pytestmark = pytest.mark.kafka


def aggregate(
    metric: str, start: str, end: str, seconds: int, cell: str = "cell", **fields: Any
) -> dict[str, Any]:
    """An aggregate.v2 record (exact mode unless `fields` say otherwise)."""
    record: dict[str, Any] = {
        "schema": "aggregate.v2",
        "metric": metric,
        "statistic": "count",
        "aggregate": "count",
        "window_start": start,
        "window_end": end,
        "window_seconds": seconds,
        "cell": cell,
        "dimensions": {},
        "value": 0,
        "distinct_subjects": None,
        "mode": "exact",
        "k": 10,
        "threshold": 10,
        "noise_sd": None,
        "rho": None,
        "epsilon": None,
        "delta": None,
        "suppression": "other",
        "policy_version": "default",
        "policy_hash": "0" * 16,
    }
    record.update(fields)
    return record


BAGUES = {"page_url": "https://shop.example/p/bagues"}
SUMMARY = {"aggregate": "summary", "dimensions": BAGUES, "distinct_subjects": 10}
HOUR = ("2026-05-01T10:00:00Z", "2026-05-01T11:00:00Z", 3600)
RECORDS = [
    aggregate(
        "page_views",
        "2026-05-01T10:01:00Z",
        "2026-05-01T10:02:00Z",
        60,
        dimensions=BAGUES,
        value=42,
        distinct_subjects=17,
    ),
    aggregate("page_views", "2026-05-01T10:00:00Z", "2026-05-01T10:01:00Z", 60, "other", value=12),
    aggregate(
        "page_views",
        "2026-05-01T10:00:00Z",
        "2026-05-01T10:01:00Z",
        60,
        dimensions={"page_url": "https://shop.example/p/colliers"},
        value=31,
        distinct_subjects=11,
    ),
    aggregate("time_on_page", *HOUR, statistic="count", value=15, **SUMMARY),
    aggregate("time_on_page", *HOUR, statistic="mean", value=167488.3, **SUMMARY),
    aggregate(
        "visitors",
        "2026-05-01T00:00:00Z",
        "2026-05-02T00:00:00Z",
        86400,
        aggregate="distinct_subjects",
        statistic="distinct_subjects",
        dimensions={"country": "NL", "region": "unknown"},
        value=31,
        distinct_subjects=31,
        mode="dp",
        threshold=30,
        suppression=None,
        rho=0.04,
        epsilon=1.886,
        delta=1e-8,
        noise_sd=4.81,
    ),
]


@pytest.fixture
def released(settings: Settings) -> Settings:
    create_topics(
        settings, [s for s in topic_specs(settings) if s.name == settings.topic_aggregates]
    )
    produce(
        settings,
        settings.topic_aggregates,
        [orjson.dumps(r) for r in RECORDS],
        keys=[str(i).encode() for i in range(len(RECORDS))],
    )
    return settings


def rows(output: str) -> list[str]:
    lines = output.splitlines()
    assert lines[0].split() == ["window", "size", "metric", "dimensions", "value", "people",
                                "protection"]  # fmt: skip
    return lines[1:]


def test_tail_prints_released_records_in_window_order(released: Settings) -> None:
    """Every record once, ordered by window end (cells before `other`), with its size,
    dimensions, value (a summary's statistics, times in seconds), people and protection
    (mode and k; in dp mode the threshold, epsilon and noise sd)."""
    result = run_cli(released, "tail")
    assert result.exit_code == 0, result.output
    lines = rows(result.output)
    assert len(lines) == len(RECORDS)
    assert lines[0].split()[:6] == [
        "2026-05-01T10:00:00Z", "1m", "page_views", "page_url=https://shop.example/p/colliers",
        "31", "11",
    ]  # fmt: skip
    assert lines[1].split()[:5] == ["2026-05-01T10:00:00Z", "1m", "page_views", "(other)", "12"]
    assert lines[1].split()[5:] == ["-", "exact", "k=10"]
    assert "page_url=https://shop.example/p/bagues" in lines[2]
    assert "n=15" in lines[3] and " 1h " in lines[3]
    assert "mean=167.5s" in lines[4] and " 1h " in lines[4]
    assert lines[5].split()[-5:] == ["dp", "k=10", "thr=30", "eps=1.89", "sd=4.8"]
    assert "country=NL, region=unknown" in lines[5] and " 1d " in lines[5]


def test_tail_filters_by_metric_and_window_and_limits(released: Settings) -> None:
    """--metric and --window select records; --limit keeps the most recent windows."""
    only = rows(run_cli(released, "tail", "--metric", "page_views", "--window", "1m").output)
    assert [line.split()[2] for line in only] == ["page_views"] * 3
    last = rows(run_cli(released, "tail", "--metric", "page_views", "--limit", "1").output)
    assert len(last) == 1 and "bagues" in last[0]
    assert rows(run_cli(released, "tail", "--window", "1h").output)[0].split()[2] == "time_on_page"
    assert rows(run_cli(released, "tail", "--metric", "nothing").output) == []


def test_tail_errors_are_one_line(settings: Settings) -> None:
    """A missing topic and a bad window size are one clear line each, exit status 2; no
    broker at the address is one line too, exit status 4."""
    result = subprocess.run(
        [sys.executable, "-m", "stream", "tail"],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: missing topic(s) {settings.topic_aggregates}; "
        "create them with `anonstream topics create`"
    )
    unreachable = settings.model_copy(update={"bootstrap_servers": "127.0.0.1:1"})
    result = subprocess.run(
        [sys.executable, "-m", "stream", "tail"],
        env=settings_env(unreachable),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 4  # ExitCode.BROKER_UNREACHABLE, not a usage error
    assert result.stderr.startswith("error: no Kafka broker reachable at")
    assert len(result.stderr.strip().splitlines()) == 1
    bad = run_cli(settings, "tail", "--window", "7x")
    assert bad.exit_code == 2 and 'must be a window size such as "1m"' in bad.output


def test_tail_follow_prints_new_releases_until_interrupted(released: Settings) -> None:
    """--follow prints the backlog, then each record released later, until Ctrl-C."""
    process = subprocess.Popen(
        [sys.executable, "-m", "stream", "tail", "--follow", "--metric", "searches"],
        env=settings_env(released),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("window")  # the backlog has no searches
        later = aggregate(
            "searches",
            "2026-05-01T10:02:00Z",
            "2026-05-01T10:03:00Z",
            60,
            dimensions={"search_terms": "bague or"},
            value=25,
            distinct_subjects=21,
            k=20,
        )
        produce(released, released.topic_aggregates, [orjson.dumps(later)], keys=[b"later"])
        line = process.stdout.readline()
        assert line.split()[2:4] == ["searches", "search_terms=bague"]
        assert line.split()[-4:] == ["25", "21", "exact", "k=20"]
    finally:
        process.send_signal(2)  # SIGINT, as Ctrl-C
        deadline = time.monotonic() + 30
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if process.poll() is None:
            process.kill()
    assert process.returncode in (0, 130)


@pytest.mark.parametrize(
    ("statistic", "aggregate_kind", "value", "expected"),
    [
        ("sum", "summary", 90_000, "sum=90.0s"),
        ("p99", "summary", 61_000, "p99=61.0s"),
        ("mean", "summary", None, "mean=-"),
        ("count", "summary", 4, "n=4"),
        ("count", "count", 12, "12"),
    ],
    ids=["sum", "p99", "mean-withheld", "summary-count", "count"],
)
def test_a_value_shows_its_statistic(
    statistic: str, aggregate_kind: str, value: object, expected: str
) -> None:
    """A summary's statistic is named, times in seconds; a count is shown as it is."""
    record = {"statistic": statistic, "aggregate": aggregate_kind, "value": value}
    assert value_text(record) == expected
