"""`send_to_kafka` against the session's real broker."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest

from anonymizers.intake import decode_message
from stream.local.processes import settings_env
from stream.local.traffic import TrafficGenerator, send_to_kafka
from stream.settings import Settings
from stream.topics import create_topics, topic_specs
from tests.support.kafka import read_all
from tests.support.paths import ROOT

pytestmark = pytest.mark.kafka


def test_kafka_receives_exactly_what_the_truth_reports(settings: Settings, geo_db: Path) -> None:
    """~5 s at 400 events/s: the raw and consent topics hold exactly the messages, items
    and records of the summary, consent keys are "type:id", and pacing took ~5 s."""
    create_topics(settings, topic_specs(settings))
    generator = TrafficGenerator(seed=9, realtime=True, rate=400, geo_db=geo_db, optout_share=0.1)
    lines: list[str] = []
    started = time.monotonic()
    truth = send_to_kafka(settings, generator, duration_s=5.0, progress=lines.append)
    elapsed = time.monotonic() - started
    assert 4.0 <= elapsed <= 12.0
    assert lines and lines[-1].startswith("sent: ")
    raw = read_all(settings, settings.topic_raw)
    consent = read_all(settings, settings.topic_consent)
    assert len(raw) == truth["messages"]["raw"]
    assert len(consent) == truth["messages"]["consent"] > 0
    decoded = [decode_message(r.value, max_bytes=settings.max_message_bytes) for r in raw]
    assert sum(d.consumed for d in decoded) == truth["items"] == 2_000
    assert sum(len(d.events) for d in decoded) == truth["events"]
    assert all(r.key is None for r in raw)
    assert all(
        r.key.decode().split(":", 1)[0] in ("user_id", "cookie_id", "device_id", "ad_id")
        for r in consent
    )


def test_stop_ends_sending_cleanly(settings: Settings, geo_db: Path) -> None:
    """A set stop event ends sending at once; what was sent is flushed and reported."""
    create_topics(settings, topic_specs(settings))
    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()
    generator = TrafficGenerator(seed=10, realtime=True, rate=200, geo_db=geo_db)
    truth = send_to_kafka(settings, generator, duration_s=30.0, stop=stop)
    assert 0 < truth["items"] < 2_000
    raw = read_all(settings, settings.topic_raw)
    assert len(raw) == truth["messages"]["raw"]


def test_cli_interrupt_flushes_and_prints_the_truth(settings: Settings, geo_db: Path) -> None:
    """`anonstream generate --to kafka` stopped with Ctrl-C (SIGINT) flushes, prints the
    truth as JSON on stdout and exits 0; the topic holds exactly what it reports."""
    create_topics(settings, topic_specs(settings))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stream",
            "generate",
            "--to",
            "kafka",
            "--rate",
            "300",
            "--duration",
            "60",
            "--seed",
            "12",
            "--geo-db",
            str(geo_db),
        ],
        cwd=ROOT,
        env=settings_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    time.sleep(4.0)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr.decode()
    truth = orjson.loads(stdout)
    assert 0 < truth["items"] < 300 * 60
    assert b"sent: " in stderr
    assert b'"event_id"' not in stderr  # progress lines carry counts, never payloads
    raw = read_all(settings, settings.topic_raw)
    assert len(raw) == truth["messages"]["raw"]
    decoded = [decode_message(r.value, max_bytes=settings.max_message_bytes) for r in raw]
    assert sum(d.consumed for d in decoded) == truth["items"]
