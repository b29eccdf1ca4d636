"""`anonstream broker start --secure`: a developer's SASL_SSL broker, used as printed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from stream.cli import cli

pytestmark = pytest.mark.kafka


def test_secure_broker_start_prints_settings_that_connect(tmp_path: Path) -> None:
    """The printed exports (SASL_SSL listener, CA file, secrets directory holding the
    generated password) pass `settings check --connect`; the password is never printed."""
    runner = CliRunner()
    data_dir = str(tmp_path / "state")
    clean = {name: None for name in os.environ if name.startswith("ANONSTREAM_")}
    started = runner.invoke(cli, ["broker", "start", "--secure", "--data-dir", data_dir], env=clean)
    try:
        assert started.exit_code == 0, started.output
        exports = dict(
            line.strip().removeprefix("export ").split("=", 1)
            for line in started.stderr.splitlines()
            if line.strip().startswith("export ")
        )
        assert exports["ANONSTREAM_SECURITY_PROTOCOL"] == "SASL_SSL"
        password = (
            Path(exports["ANONSTREAM_SECRETS_DIR"]) / "anonstream_sasl_password"
        ).read_text()
        assert password and password not in started.output
        checked = runner.invoke(cli, ["settings", "check", "--connect"], env={**clean, **exports})
        assert checked.exit_code == 0, checked.output
        assert "settings ok (broker connected)" in checked.stderr
        assert password not in checked.output
        status = runner.invoke(cli, ["broker", "status", "--data-dir", data_dir], env=clean)
        assert f"sasl_ssl={exports['ANONSTREAM_BOOTSTRAP_SERVERS']}" in status.output
    finally:
        stopped = runner.invoke(cli, ["broker", "stop", "--data-dir", data_dir], env=clean)
        assert stopped.exit_code == 0, stopped.output
