"""A second real broker for the security tests: SSL and SASL_SSL listeners (session-wide).

Its CA and certificate are made here with `cryptography` and its SCRAM-SHA-512 user is
created when its log dir is formatted, with a password drawn for this session; the rest of
the suite keeps the plain broker of tests/conftest.py.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from stream.local.broker import BrokerSecurity, LocalBroker, free_port
from stream.local.certs import TlsFiles, make_broker_certificates
from stream.settings import Settings
from tests.conftest import isolated_settings

SCRAM_USER = "anonstream-test"


@dataclass(frozen=True)
class SecureBroker:
    """Addresses of the secure broker's listeners and what a client needs for each."""

    ssl_bootstrap: str
    sasl_ssl_bootstrap: str
    tls: TlsFiles
    scram_user: str
    scram_password: str

    def settings(self, protocol: str, data_dir: Path, **update: object) -> Settings:
        """Isolated test settings (own topics and groups) on the listener of `protocol`,
        with the CA and, for SASL_SSL, the SCRAM user; `update` overrides any of them."""
        if protocol == "SSL":
            values: dict[str, object] = {
                "security_protocol": "SSL",
                "ssl_cafile": self.tls.ca_cert,
            }
            bootstrap = self.ssl_bootstrap
        else:
            values = {
                "security_protocol": "SASL_SSL",
                "ssl_cafile": self.tls.ca_cert,
                "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_username": self.scram_user,
                "sasl_password": SecretStr(self.scram_password),
            }
            bootstrap = self.sasl_ssl_bootstrap
        values.update(update)
        return isolated_settings(bootstrap, data_dir).model_copy(update=values)


@pytest.fixture(scope="session")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    """One broker with PLAINTEXT (inter-broker), SSL and SASL_SSL (SCRAM-SHA-512) listeners."""
    home = tmp_path_factory.mktemp("secure-kafka")
    # The loopback IP only, so that `localhost` is a name the certificate does not list.
    tls = make_broker_certificates(home / "tls", hosts=("127.0.0.1",), name="session")
    password = secrets.token_urlsafe(24)
    broker = LocalBroker(home / "broker")
    state = broker.start(
        port=free_port(),
        partitions=4,
        security=BrokerSecurity(tls=tls, scram_users={SCRAM_USER: password}),
    )
    assert state.ssl_bootstrap and state.sasl_ssl_bootstrap
    try:
        yield SecureBroker(
            ssl_bootstrap=state.ssl_bootstrap,
            sasl_ssl_bootstrap=state.sasl_ssl_bootstrap,
            tls=tls,
            scram_user=SCRAM_USER,
            scram_password=password,
        )
    finally:
        broker.stop()
