"""A client whose protocol is not the listener's is refused with one line, quickly."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .conftest import SecureBroker
from .test_pipeline_security import EXIT_BROKER_REFUSED, _run

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize(
    ("protocol", "listener"),
    [("SSL", "sasl_ssl_bootstrap"), ("SASL_SSL", "ssl_bootstrap")],
    ids=["ssl-client-on-sasl-listener", "sasl-client-on-ssl-listener"],
)
def test_a_client_of_another_protocol_is_refused(
    secure_broker: SecureBroker, tmp_path: Path, protocol: str, listener: str
) -> None:
    """TLS succeeds but the listener expects (or does not expect) SASL: one line naming
    ANONSTREAM_SECURITY_PROTOCOL, exit 5, well before the clients' own retries give up."""
    address = getattr(secure_broker, listener)
    settings = secure_broker.settings(protocol, tmp_path / "state", bootstrap_servers=address)
    started = time.monotonic()
    result = _run(settings, "topics", "create", "--check")
    assert result.returncode == EXIT_BROKER_REFUSED, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "ANONSTREAM_SECURITY_PROTOCOL" in result.stderr
    assert time.monotonic() - started < 25
