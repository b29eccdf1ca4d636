"""The standby probes of a waiting worker (`stream.health.standby`): alive, not ready."""

from __future__ import annotations

import orjson

from stream.health.standby import StandbyServer
from tests.support.http import get, scrape


def test_a_waiting_worker_is_alive_not_ready_and_says_why() -> None:
    """/healthz 200, /readyz 503 with the reason set, /metrics ready 0 alive 1; port freed."""
    with StandbyServer(host="127.0.0.1", port=0, stage="aggregate") as standby:
        base = f"http://127.0.0.1:{standby.port}"
        standby.set_reasons(["waiting for topics: a, b"])
        status, body = get(f"{base}/healthz")
        assert status == 200
        assert orjson.loads(body)["alive"] is True
        status, body = get(f"{base}/readyz")
        assert status == 503
        assert orjson.loads(body) == {
            "ready": False,
            "stage": "aggregate",
            "reasons": ["waiting for topics: a, b"],
        }
        samples = scrape(standby.port) or {}
        assert samples["anonstream_ready"] == 0.0
        assert samples["anonstream_alive"] == 1.0
        assert samples['anonstream_worker_info{stage="aggregate"}'] == 1.0
        assert get(f"{base}/other")[0] == 404
        port = standby.port
    assert get(f"http://127.0.0.1:{port}/healthz")[0] == 0  # stopped: nothing answers
