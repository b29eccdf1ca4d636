"""The pipeline over TLS and SASL_SSL (SCRAM-SHA-512), on a real broker with real listeners.

Every Kafka client anonstream makes goes through the secure listener: the CLI's admin client
(`topics create --check`) and producers (the consent CLI, the tests' raw producer), the
three stage workers (Faust for anonymize, the aiokafka commit loops of aggregate and
release), the consent table and key ring readers (a worker is ready only once both caught
up), and the readers of the released records. Expected values come from the generated
traffic (tests/e2e/truth.py), not from the code under test. A client without the CA, or
with a wrong password, is refused at once with one line naming the setting to fix.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stream.local.processes import settings_env
from stream.settings import Settings
from stream.topics import topic_specs
from tests.anonymizers.conftest import build_mmdb
from tests.e2e.harness import Pipeline, Timeline
from tests.e2e.traffic import busy_person, shop
from tests.e2e.truth import assert_exact, policy_toml, truth_cells
from tests.support.cli import run_cli
from tests.support.workers import WorkerFactory

from .conftest import SecureBroker

pytestmark = pytest.mark.kafka

LATENESS_S = 3 * 3600
AGGREGATED = 'anonstream_aggregate_events_total{outcome="events"}'
ERASURES = 'anonstream_aggregate_stage_total{what="erasures"}'
EXIT_BROKER_REFUSED = 5  # stream.cli.ExitCode.BROKER_REFUSED, restated


@pytest.fixture(scope="module")
def geo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The City database of the networks the test traffic comes from."""
    return build_mmdb(tmp_path_factory.mktemp("security-geo") / "city.mmdb")


@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL"])
def test_the_pipeline_runs_over_a_secure_listener(
    secure_broker: SecureBroker, protocol: str, tmp_path: Path, geo_db: Path
) -> None:
    """All three stages, the consent and key readers and the CLI's clients work over the
    listener: every released value equals the ground truth without the person erased
    through the consent CLI while their events sat in open windows."""
    settings = secure_broker.settings(protocol, tmp_path / "state")
    workers = WorkerFactory(log_dir=tmp_path / "logs")
    try:
        pipeline = Pipeline(
            settings,
            workers,
            policy_text=policy_toml(),
            geo_db=geo_db,
            directory=tmp_path,
            timeline=Timeline.now(),
        )
        checked = run_cli(settings, "topics", "create", "--check")
        assert checked.exit_code == 0, checked.output
        pipeline.start_all()
        start_ms = pipeline.timeline.at(12)
        traffic = shop(seed=53, start_ms=start_ms, minutes=5, people=25)
        busy_person(traffic, "erase-me", start_ms=start_ms, minutes=5)
        pipeline.send(traffic)
        pipeline.wait_forwarded()
        aggregate = pipeline.stages["aggregate"]
        aggregate.wait_metric(AGGREGATED, at_least=len(traffic.events))

        erased = run_cli(settings, "consent", "erase", "--cookie-id", "erase-me")
        assert erased.exit_code == 0, erased.output
        aggregate.wait_metric(ERASURES, at_least=1)
        pipeline.flush(lateness_s=LATENESS_S)
        records = pipeline.released_day()
    finally:
        workers.stop_all()

    assert records, "released over the secure listener"
    assert_exact(records, truth_cells(traffic.views(without=["erase-me"])), policy_version="e2e")


def _run(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m stream ARGS` with exactly `settings`, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "stream", *args],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "command", [["topics", "create", "--check"], ["worker", "--stage", "anonymize"]]
)
def test_a_client_without_the_ca_is_refused(
    secure_broker: SecureBroker, tmp_path: Path, command: list[str]
) -> None:
    """Without ANONSTREAM_SSL_CAFILE the broker's certificate is not trusted: the command
    and a worker stop at once with one line naming the setting, exit status 5."""
    settings = secure_broker.settings("SSL", tmp_path / "state", ssl_cafile=None)
    result = _run(settings, *command)
    assert result.returncode == EXIT_BROKER_REFUSED, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: the TLS certificate of the broker at ")
    assert "ANONSTREAM_SSL_CAFILE" in lines[0]


def test_a_ca_that_did_not_sign_the_broker_is_refused(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    """Another authority's CA file (made here) does not make the broker trusted either."""
    from stream.local.certs import make_broker_certificates

    other = make_broker_certificates(tmp_path / "other-ca", name="other")
    for protocol in ("SSL", "SASL_SSL"):
        settings = secure_broker.settings(protocol, tmp_path / "state", ssl_cafile=other.ca_cert)
        result = _run(settings, "topics", "create", "--check")
        assert result.returncode == EXIT_BROKER_REFUSED, (protocol, result.stderr)
        assert "ANONSTREAM_SSL_CAFILE" in result.stderr and str(other.ca_cert) in result.stderr


@pytest.mark.parametrize(
    "command", [["topics", "create", "--check"], ["worker", "--stage", "release"]]
)
def test_a_wrong_password_is_refused(
    secure_broker: SecureBroker, tmp_path: Path, command: list[str]
) -> None:
    """A wrong SCRAM password is refused at once with one line naming the user and the
    password setting, never the password; exit status 5."""
    wrong = "not-the-" + secure_broker.scram_password[:8]
    settings = secure_broker.settings("SASL_SSL", tmp_path / "state", sasl_password=wrong)
    result = _run(settings, *command)
    assert result.returncode == EXIT_BROKER_REFUSED, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "refused the SASL credentials" in lines[0]
    assert f"ANONSTREAM_SASL_USERNAME='{secure_broker.scram_user}'" in lines[0]
    assert "ANONSTREAM_SASL_PASSWORD" in lines[0]
    assert wrong not in result.stdout + result.stderr


def test_an_unknown_user_is_refused(secure_broker: SecureBroker, tmp_path: Path) -> None:
    """A user the broker does not know is refused like a wrong password."""
    settings = secure_broker.settings(
        "SASL_SSL", tmp_path / "state", sasl_username="nobody", sasl_password="x"
    )
    result = _run(settings, "topics", "create", "--check")
    assert result.returncode == EXIT_BROKER_REFUSED, result.stderr
    assert "ANONSTREAM_SASL_USERNAME='nobody'" in result.stderr


def test_host_name_checking_refuses_a_name_the_certificate_does_not_list(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    """The broker's certificate lists 127.0.0.1 only: reached as `localhost`, it is refused
    with the setting named (exit 5); with ANONSTREAM_SSL_CHECK_HOSTNAME=false the same
    address works (the CA is still verified: without it, still refused)."""
    port = secure_broker.ssl_bootstrap.rpartition(":")[2]
    by_name = {"bootstrap_servers": f"localhost:{port}"}
    checked = secure_broker.settings("SSL", tmp_path / "state", **by_name)
    create = ("topics", "create")
    result = _run(checked, *create)
    assert result.returncode == EXIT_BROKER_REFUSED, result.stdout + result.stderr
    assert "does not name that host" in result.stderr
    assert "ANONSTREAM_SSL_CHECK_HOSTNAME=false" in result.stderr

    unchecked = secure_broker.settings(
        "SSL", tmp_path / "state", ssl_check_hostname=False, **by_name
    )
    result = _run(unchecked, *create)
    assert result.returncode == 0, result.stdout + result.stderr
    # This test's own topics are new (the ledger topic is shared by the session's tests).
    created = {line.split()[1] for line in result.stdout.splitlines() if line.startswith("created")}
    assert created >= {unchecked.topic_raw, unchecked.topic_consent, unchecked.topic_keys}
    assert len(result.stdout.splitlines()) == len(topic_specs(unchecked))

    no_ca = secure_broker.settings(
        "SSL", tmp_path / "state", ssl_check_hostname=False, ssl_cafile=None, **by_name
    )
    result = _run(no_ca, *create)
    assert result.returncode == EXIT_BROKER_REFUSED
    assert "ANONSTREAM_SSL_CAFILE" in result.stderr
