"""`anonstream worker --wait-for-topics`: a worker started before its topics waits for them."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import orjson
import pytest

from stream.local import processes
from stream.local.broker import free_port
from stream.settings import Settings
from stream.topics import create_topics, topic_specs
from tests.support.http import get, scrape
from tests.support.workers import wait_for

pytestmark = pytest.mark.kafka


def start(settings: Settings, log: Path, *, wait_s: float) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    process = processes.spawn(
        settings,
        ["worker", "--stage", "anonymize", "--loglevel", "info", "--wait-for-topics", str(wait_s)],
        log=log,
        web_port=port,
    )
    return process, port


def log_lines(log: Path) -> list[dict[str, object]]:
    lines = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            lines.append(orjson.loads(line))
    return lines


def test_a_worker_waits_not_ready_then_starts_once_the_topics_exist(
    settings: Settings, tmp_path: Path
) -> None:
    """Before the topics exist: one clear log line naming them, /readyz 503 with the reason,
    /healthz 200; once created, the worker starts and becomes ready."""
    log = tmp_path / "worker.log"
    process, port = start(settings, log, wait_s=120)
    try:

        def waiting() -> dict[str, object] | None:
            assert process.poll() is None, log.read_text()
            status, body = get(f"http://127.0.0.1:{port}/readyz")
            if not status:
                return None  # not serving yet
            assert status == 503, body
            readyz: dict[str, object] = orjson.loads(body)
            reasons = readyz["reasons"]
            assert isinstance(reasons, list)
            return readyz if str(reasons[0]).startswith("waiting for topics: ") else None

        readyz = wait_for(waiting, timeout_s=60, what="the standby /readyz naming the topics")
        assert readyz["ready"] is False and readyz["stage"] == "anonymize"
        (reason,) = readyz["reasons"]
        # every topic of the pipeline is named (this test's own, none created yet)
        for name in (settings.topic_raw, settings.topic_keys, settings.topic_consent):
            assert name in reason
        assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200
        samples = scrape(port) or {}
        assert samples.get("anonstream_ready") == 0.0
        assert samples.get("anonstream_alive") == 1.0
        warnings = [
            entry
            for entry in log_lines(log)
            if entry["level"] == "warning" and "waiting for topic(s)" in str(entry["msg"])
        ]
        assert len(warnings) == 1, log.read_text()
        assert settings.topic_raw in str(warnings[0]["msg"])

        create_topics(settings, topic_specs(settings))

        def ready() -> bool:
            assert process.poll() is None, log.read_text()
            return get(f"http://127.0.0.1:{port}/readyz")[0] == 200

        wait_for(ready, timeout_s=90, what="the worker to be ready after the topics exist")
        assert any("topics present after" in str(entry["msg"]) for entry in log_lines(log)), (
            log.read_text()
        )
    finally:
        processes.stop(process)


def test_a_worker_gives_up_after_the_bounded_wait(settings: Settings, tmp_path: Path) -> None:
    """With no topics, the worker exits non-zero after its wait, naming the missing topics."""
    log = tmp_path / "worker.log"
    started = time.monotonic()
    process, _port = start(settings, log, wait_s=4)
    try:
        code = process.wait(timeout=90)
    finally:
        processes.stop(process)
    elapsed = time.monotonic() - started
    output = log.read_text(errors="replace")
    assert code != 0, output
    assert elapsed >= 4
    assert "missing topic(s)" in output and settings.topic_raw in output
    assert "waited" in output
