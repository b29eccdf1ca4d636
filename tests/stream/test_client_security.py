"""Every client kind gets the settings' TLS and SASL configuration (no broker needed; the
real-broker proof is tests/stream/security)."""

from __future__ import annotations

import ssl
from pathlib import Path

import faust
import pytest
from pydantic import SecretStr

from stream.app import broker_credentials
from stream.exceptions import SettingsError
from stream.local.certs import make_broker_certificates
from stream.settings import Settings


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_broker_certificates(tmp_path_factory.mktemp("tls")).ca_cert


def sasl_ssl(ca_file: Path, **update: object) -> Settings:
    values: dict[str, object] = {
        "bootstrap_servers": "kafka-1:9093,kafka-2:9093",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "anonstream",
        "sasl_password": SecretStr("pw-from-secret-file"),
        "ssl_cafile": ca_file,
        **update,
    }
    return Settings(**values)  # type: ignore[arg-type]


def assert_verifying(context: object) -> None:
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True


def test_kafka_python_aiokafka_and_faust_get_the_same_security(ca_file: Path) -> None:
    """The CLI's kafka-python clients, the workers' aiokafka clients and Faust all connect
    with SASL_SSL, SCRAM-SHA-512, the user and password, and a verifying TLS context."""
    settings = sasl_ssl(ca_file)
    for config in (settings.kafka_python_config(), settings.aiokafka_config()):
        assert config["security_protocol"] == "SASL_SSL"
        assert config["sasl_mechanism"] == "SCRAM-SHA-512"
        assert config["sasl_plain_username"] == "anonstream"
        assert config["sasl_plain_password"] == "pw-from-secret-file"
        assert_verifying(config["ssl_context"])
    credentials = broker_credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.username == "anonstream"
    assert_verifying(credentials.ssl_context)
    assert "pw-from-secret-file" not in repr(credentials) + repr(settings)


def test_ssl_only_gives_faust_a_context_and_plaintext_none(ca_file: Path) -> None:
    """SSL: a verifying context, no SASL keys; PLAINTEXT: no TLS at all."""
    settings = Settings(security_protocol="SSL", ssl_cafile=ca_file)
    assert "sasl_mechanism" not in settings.kafka_python_config()
    assert_verifying(broker_credentials(settings))
    plain = Settings()
    assert plain.ssl_context() is None and broker_credentials(plain) is None
    assert "ssl_context" not in plain.aiokafka_config()


def test_hostname_check_can_be_turned_off_but_not_verification(ca_file: Path) -> None:
    """ssl_check_hostname=false keeps verifying the certificate against the CA."""
    context = sasl_ssl(ca_file, ssl_check_hostname=False).ssl_context()
    assert context is not None
    assert context.check_hostname is False and context.verify_mode == ssl.CERT_REQUIRED


def test_unreadable_tls_files_name_the_setting(tmp_path: Path, ca_file: Path) -> None:
    """A missing CA file or a certificate without its key is a SettingsError naming them."""
    with pytest.raises(SettingsError, match="ANONSTREAM_SSL_CAFILE must be a readable PEM"):
        sasl_ssl(tmp_path / "missing.pem").ssl_context()
    with pytest.raises(SettingsError, match="ANONSTREAM_SSL_CERTFILE and ANONSTREAM_SSL_KEYFILE"):
        sasl_ssl(ca_file, ssl_certfile=ca_file).ssl_context()
