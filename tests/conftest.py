"""Session-wide fixtures: one real Kafka broker per test session, unique topics per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from stream.local.broker import LocalBroker, free_port
from stream.settings import Settings
from stream.tables.keyring import write_key_encryption_key
from tests.support.workers import WorkerFactory

BROKER_ENV = "ANONSTREAM_TEST_BOOTSTRAP"

# CI machines are shared and loaded: no per-example deadlines (they flake under load), and
# no "too slow" health check; example counts stay as each test sets them.
hypothesis_settings.register_profile(
    "anonstream", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile("anonstream")

# Child processes (`python -m stream ...`) must import this checkout, whatever the working
# directory (another checkout may be the editable install of the interpreter).
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")) if p
)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Address of the session's real Kafka broker (KRaft, Maven Central jars).

    Set ANONSTREAM_TEST_BOOTSTRAP to reuse a broker you started yourself
    (`anonstream broker start`) and save its start-up time while iterating.
    """
    existing = os.environ.get(BROKER_ENV)
    if existing:
        yield existing
        return
    broker = LocalBroker(tmp_path_factory.mktemp("kafka") / "broker")
    state = broker.start(port=free_port(), partitions=4)
    try:
        yield state.bootstrap
    finally:
        broker.stop()


def isolated_settings(bootstrap: str, data_dir: Path) -> Settings:
    """Settings with their own topics, consumer groups and state directory."""
    uid = uuid.uuid4().hex[:10]
    return Settings(
        bootstrap_servers=bootstrap,
        app_id=f"t{uid}",
        topic_raw=f"t{uid}.events.raw",
        topic_pseudonymized=f"t{uid}.events.pseudonymized",
        topic_deadletter=f"t{uid}.events.deadletter",
        topic_partials=f"t{uid}.stats.partials",
        topic_aggregates=f"t{uid}.stats.aggregates",
        topic_consent=f"t{uid}.privacy.consent",
        topic_keys=f"t{uid}.privacy.keys",
        partitions=4,
        data_dir=data_dir,
        web_port=0,
        # The key ring refuses to start without a KEK: one per test directory, as the demo does.
        key_encryption_key_file=write_key_encryption_key(data_dir.parent / "key-encryption-key"),
    )


@pytest.fixture
def settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    """Settings for one test: its own topics, consumer groups and state directory."""
    return isolated_settings(kafka_bootstrap, tmp_path / "state")


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[WorkerFactory]:
    """Start real worker processes (`python -m stream worker`); all are stopped after the test."""
    factory = WorkerFactory(log_dir=tmp_path / "logs")
    try:
        yield factory
    finally:
        factory.stop_all()
