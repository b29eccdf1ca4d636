"""Settings: environment, secret files, and one clear line per invalid value."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.exceptions import SettingsError
from stream.settings import load_settings


def test_secret_file_named_after_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SASL password is read from ANONSTREAM_SECRETS_DIR/anonstream_sasl_password."""
    (tmp_path / "anonstream_sasl_password").write_text("s3cret-value")
    monkeypatch.setenv("ANONSTREAM_SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("ANONSTREAM_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("ANONSTREAM_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("ANONSTREAM_SASL_USERNAME", "anonstream")
    settings = load_settings()
    assert settings.sasl_password is not None
    assert settings.sasl_password.get_secret_value() == "s3cret-value"
    assert "s3cret-value" not in repr(settings)


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        pytest.param("ANONSTREAM_PARTITIONS", "0", "ANONSTREAM_PARTITIONS", id="partitions-zero"),
        pytest.param("ANONSTREAM_PARTITIONS", "many", "ANONSTREAM_PARTITIONS", id="not-int"),
        pytest.param(
            "ANONSTREAM_BOOTSTRAP_SERVERS", "kafka", "ANONSTREAM_BOOTSTRAP_SERVERS", id="no-port"
        ),
        pytest.param(
            "ANONSTREAM_SECURITY_PROTOCOL", "TLS", "ANONSTREAM_SECURITY_PROTOCOL", id="protocol"
        ),
        pytest.param(
            "ANONSTREAM_GC_YOUNG_THRESHOLD", "-1", "ANONSTREAM_GC_YOUNG_THRESHOLD", id="gc-negative"
        ),
    ],
)
def test_invalid_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    """An invalid value raises one SettingsError naming the variable and the value given."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert named in str(caught.value)
    assert repr(value) in str(caught.value)


def test_sasl_without_password_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """SASL without its credentials is a settings error, not a failure at connect time."""
    monkeypatch.setenv("ANONSTREAM_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(SettingsError, match="sasl_password"):
        load_settings()
