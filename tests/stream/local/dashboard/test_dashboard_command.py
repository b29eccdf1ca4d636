"""`anonstream dashboard` in its own process, on the session's broker and in headless Chromium.

Released aggregates are produced to the test's stats.aggregates topic; two peers serve
Prometheus text (one anonymize-like, one release-like: their counters grow by a fixed step
per scrape) and a third URL answers nothing. Expectations come from what the test produced
and served, never from dashboard code.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream.local import processes
from stream.local.broker import free_port
from stream.settings import Settings
from stream.topics import create_topics, topic_specs
from tests.stream.local.dashboard.records import record, summary_records
from tests.support.browser import dump_dom, screenshot
from tests.support.kafka import produce
from tests.support.workers import wait_for

pytestmark = pytest.mark.timeout(240)

CHARTS = (
    "chart-page-views",
    "chart-visitors",
    "chart-searches",
    "chart-time-on-page",
    "chart-throughput",
    "chart-drops",
    "chart-deadletters",
    "chart-suppression",
)
RELEASED = [
    *(record("page_views", m, dims={"page_url": "https://s/rings"}, value=40 + m) for m in (1, 2)),
    record("page_views", 2, cell="other", value=9),
    record("visitors", 2, dims={"country": "FR", "region": "IDF"}, value=31),
    record("searches", 2, dims={"search_terms": "bague or"}, value=23),
    *summary_records(
        "time_on_page",
        2,
        dims={"page_url": "https://s/rings"},
        values={"count": 14, "mean": 41_000, "p50": 30_000, "p90": 90_000},
    ),
]
"""What the release stage would have published (two windows of page views)."""


class Peer:
    """A worker's /metrics as text; every counter grows by its step at each scrape."""

    def __init__(self, stage: str, steps: dict[str, float], constants: dict[str, float]):
        self.scrapes = 0
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/metrics":
                    self.send_error(404)
                    return
                peer.scrapes += 1
                lines = [f'anonstream_worker_info{{stage="{stage}"}} 1.0', "anonstream_ready 1.0"]
                lines += [f"{n} {v * peer.scrapes}" for n, v in steps.items()]
                lines += [f"{n} {v}" for n, v in constants.items()]
                body = ("\n".join(lines) + "\n").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def peers() -> Iterator[list[Peer]]:
    started = [
        Peer(
            "anonymize",
            steps={
                "anonstream_events_consumed_total": 100.0,
                "anonstream_events_forwarded_total": 80.0,
                'anonstream_events_dropped_total{reason="gpc"}': 15.0,
                'anonstream_events_deadlettered_total{reason="not_json"}': 5.0,
            },
            constants={"anonstream_aggregates_released_total": 7.0},
        ),
        Peer(
            "release",
            steps={
                "anonstream_cells_released_total": 3.0,
                'anonstream_cells_suppressed_total{reason="below_k"}': 1.0,
            },
            constants={"anonstream_aggregates_released_total": 5.0},
        ),
    ]
    try:
        yield started
    finally:
        for peer in started:
            peer.close()


def get_json(url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            value = orjson.loads(response.read())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


@pytest.mark.kafka
def test_dashboard_shows_released_aggregates_and_sums_its_peers(
    settings: Settings, kafka_bootstrap: str, peers: list[Peer], tmp_path: Path
) -> None:
    """The dashboard reads every released record (from the broker named by
    --bootstrap-servers, not the environment's), adds up its peers' counters, marks the
    silent peer down; Chromium draws every chart; SIGTERM stops it with status 0."""
    topic = settings.topic_aggregates
    create_topics(settings, [spec for spec in topic_specs(settings) if spec.name == topic])
    keys = [f"{r['metric']}|{r['window_start']}|{r['cell']}|{r['dimensions']}" for r in RELEASED]
    produce(settings, topic, [orjson.dumps(r) for r in RELEASED], keys=[k.encode() for k in keys])
    silent = f"http://127.0.0.1:{free_port()}"
    port = free_port()
    args = ["dashboard", "--port", str(port), "--bootstrap-servers", kafka_bootstrap]
    args += ["--peers", ",".join([*(p.url for p in peers), silent + "/"])]
    log = tmp_path / "dashboard.log"
    elsewhere = settings.model_copy(update={"bootstrap_servers": "127.0.0.1:1"})
    process = processes.spawn(elsewhere, args, log=log)
    url = f"http://127.0.0.1:{port}/dashboard"
    try:

        def complete() -> dict[str, Any] | None:
            assert process.poll() is None, log.read_text()
            data = get_json(f"{url}/data.json")
            rates = data.get("pipeline", {}).get("rates", [])
            enough = len(rates) >= 2 and data["aggregates"]["records"] == len(RELEASED)
            return data if enough else None

        data = wait_for(complete, timeout_s=60, what="released records and peer samples")
        metrics = data["aggregates"]["metrics"]
        views = metrics["page_views"]["windows"]
        assert [(w["start"][11:16], w["top"][0]["value"]) for w in views] == [
            ("12:01", 41),
            ("12:02", 42),
        ]
        assert views[-1]["other"] == 9
        assert metrics["searches"]["windows"][0]["top"][0]["label"] == "bague or"
        assert data["follower"]["error"] is None
        pipeline = data["pipeline"]
        assert pipeline["totals"]["aggregates_released"] == 7 + 5
        assert pipeline["totals"]["consumed"] > 0 and pipeline["rates"][-1]["in"] > 0
        workers = {w["url"]: w for w in pipeline["workers"]}
        assert [workers[p.url]["stage"] for p in peers] == ["anonymize", "release"]
        assert workers[silent]["up"] is False

        dom = dump_dom(url)
        points = dict(re.findall(r'<figure class="chart" id="([\w-]+)" data-points="(\d+)"', dom))
        assert set(points) == set(CHARTS), points
        assert all(int(n) > 0 for n in points.values()), points
        assert 'data-ready="true"' in dom and "cannot reach" not in dom
        assert "bague or" in dom and "not answering" in dom
        assert screenshot(url, tmp_path / "dashboard.png").stat().st_size > 20_000
    finally:
        code = processes.stop(process, timeout_s=20)
    assert code == 0, log.read_text()[-2000:]
    assert "Unclosed" not in log.read_text()


def test_dashboard_refuses_a_peer_that_is_not_a_url() -> None:
    """--peers takes http(s) base URLs only; anything else is a usage error naming it."""
    result = subprocess.run(
        [sys.executable, "-m", "stream", "dashboard", "--peers", "http://a:1,b:2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "http(s)://host:port" in result.stderr and "'b:2'" in result.stderr
