"""Unknown setting names (variables, secret files) are refused with the closest setting;
`anonstream settings check` shows the effective settings with secrets masked."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from stream.cli import cli
from stream.exceptions import SettingsError
from stream.settings import OTHER_VARIABLES, load_settings, setting_variables


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ANONSTREAM_* variable of the calling shell leaks into these tests."""
    import os

    for name in list(os.environ):
        if name.upper().startswith("ANONSTREAM_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        pytest.param("ANONSTREAM_PARTITION", "ANONSTREAM_PARTITIONS", id="missing-s"),
        pytest.param("ANONSTREAM_LOGLEVEL", "ANONSTREAM_LOG_LEVEL", id="missing-underscore"),
        pytest.param("ANONSTREAM_BOOTSTRAP_SERVER", "ANONSTREAM_BOOTSTRAP_SERVERS", id="server"),
        pytest.param("anonstream_sasl_pasword", "ANONSTREAM_SASL_PASSWORD", id="lower-case"),
        pytest.param("ANONSTREAM_TOPIC_DEADLETTERS", "ANONSTREAM_TOPIC_DEADLETTER", id="topic"),
    ],
)
def test_a_mistyped_variable_is_refused_with_the_closest_setting(
    monkeypatch: pytest.MonkeyPatch, typo: str, meant: str
) -> None:
    """A typo would silently leave the default in force: it is an error naming the setting."""
    monkeypatch.setenv(typo, "3")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert f"environment variable {typo} is not a known setting" in message
    assert f"did you mean {meant}?" in message
    assert meant in setting_variables()


def test_a_name_like_no_setting_gets_no_suggestion(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing is suggested when no setting is close; the problem is still refused."""
    monkeypatch.setenv("ANONSTREAM_ZZZZ", "1")
    with pytest.raises(SettingsError, match="ANONSTREAM_ZZZZ is not a known setting") as caught:
        load_settings()
    assert "did you mean" not in str(caught.value)


def test_variables_of_other_tools_are_not_settings_and_not_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ANONSTREAM_SECRETS_DIR, the broker recipe and the test/bench variables are accepted."""
    for name in OTHER_VARIABLES - {"ANONSTREAM_SECRETS_DIR"}:
        monkeypatch.setenv(name, "x")
    assert load_settings().partitions == 6


def test_an_unknown_secret_file_is_refused_with_the_closest_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mistyped secret file (the password would never be read) is an error; Kubernetes'
    own entries of a secret volume (`..data`, hidden) are not."""
    (tmp_path / "anonstream_sasl_passwrd").write_text("s3cret")
    (tmp_path / "anonstream_sasl_username").write_text("anonstream")
    (tmp_path / "..data").mkdir()
    (tmp_path / "..2026_12_02").mkdir()
    monkeypatch.setenv("ANONSTREAM_SECRETS_DIR", str(tmp_path))
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert caught.value.problems == (
        f"secret file {tmp_path / 'anonstream_sasl_passwrd'} is not a known setting; "
        "did you mean ANONSTREAM_SASL_PASSWORD?",
    )
    assert "s3cret" not in str(caught.value)


def test_unknown_names_and_invalid_values_are_reported_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One pass reports every problem: the unknown name and the invalid value."""
    monkeypatch.setenv("ANONSTREAM_PARTITON", "3")
    monkeypatch.setenv("ANONSTREAM_LOG_LEVEL", "warn")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert len(caught.value.problems) == 2
    assert "ANONSTREAM_PARTITON" in caught.value.problems[0]
    assert caught.value.problems[1].startswith("ANONSTREAM_LOG_LEVEL ")
    assert "'warn'" in caught.value.problems[1]


def test_settings_check_prints_the_effective_settings_with_secrets_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every setting is printed once, as its variable; the password never."""
    (tmp_path / "anonstream_sasl_password").write_text("hunter2-secret")
    monkeypatch.setenv("ANONSTREAM_SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("ANONSTREAM_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("ANONSTREAM_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("ANONSTREAM_SASL_USERNAME", "anonstream")
    monkeypatch.setenv("ANONSTREAM_PARTITIONS", "12")
    result = CliRunner().invoke(cli, ["settings", "check"])
    assert result.exit_code == 0, result.output
    lines = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert sorted(lines) == sorted(setting_variables())
    assert lines["ANONSTREAM_PARTITIONS"] == "12"
    assert lines["ANONSTREAM_SASL_PASSWORD"] == "********"
    assert "hunter2-secret" not in result.output


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        pytest.param(
            "ANONSTREAM_PARTITON", "3", "did you mean ANONSTREAM_PARTITIONS?", id="unknown"
        ),
        pytest.param("ANONSTREAM_PARTITIONS", "0", "ANONSTREAM_PARTITIONS", id="invalid"),
        pytest.param(
            "ANONSTREAM_POLICY_PATH",
            "/no/such/policy.toml",
            "must name a readable file",
            id="missing-file",
        ),
        pytest.param("ANONSTREAM_SECURITY_PROTOCOL", "SSL", None, id="ok-ssl-system-cas"),
    ],
)
def test_settings_check_exits_1_on_any_problem(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, problem: str | None
) -> None:
    """Each problem is one `problem:` line on stderr and exit status 1; none, exit 0."""
    monkeypatch.setenv(variable, value)
    result = CliRunner().invoke(cli, ["settings", "check"])
    if problem is None:
        assert result.exit_code == 0, result.output
        assert "problem:" not in result.stderr
    else:
        assert result.exit_code == 1, result.output
        assert problem in result.stderr and result.stderr.startswith("problem: ")


def test_settings_check_names_an_unreadable_ca_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CA file that is not PEM is named with the setting, before any connection."""
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    monkeypatch.setenv("ANONSTREAM_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("ANONSTREAM_SSL_CAFILE", str(bad))
    result = CliRunner().invoke(cli, ["settings", "check"])
    assert result.exit_code == 1
    assert "ANONSTREAM_SSL_CAFILE must be a readable PEM file" in result.stderr
    assert repr(str(bad)) in result.stderr


def test_bootstrap_server_option_overrides_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`--bootstrap-server` on the root command is what the command's settings read."""
    monkeypatch.setenv("ANONSTREAM_BOOTSTRAP_SERVERS", "kafka-a:9092")
    result = CliRunner().invoke(cli, ["--bootstrap-server", "kafka-b:9093", "settings", "check"])
    assert result.exit_code == 0, result.output
    assert "ANONSTREAM_BOOTSTRAP_SERVERS=kafka-b:9093" in result.stdout.splitlines()


def test_version_option() -> None:
    """`anonstream --version` prints the installed distribution's version."""
    from importlib.metadata import version

    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"anonstream, version {version('anonstream')}"
