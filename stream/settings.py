"""The one settings object: environment variables prefixed `ANONSTREAM_`, secrets from files.

Built once at start-up (`load_settings()`), never at import. Every field can be set as
`ANONSTREAM_<FIELD>` (upper case); any setting, secrets such as `sasl_password` above all,
can also be read from a file named after its variable (case-insensitive) in the directory
`ANONSTREAM_SECRETS_DIR` (Kubernetes secret volumes), e.g.
`/var/run/secrets/anonstream/anonstream_sasl_password`. Environment variables win.

Unknown names are refused, not ignored: an `ANONSTREAM_*` variable or a file in the secrets
directory that names no setting is an error that suggests the closest setting (a typo would
otherwise silently leave the default in force).
"""

from __future__ import annotations

import difflib
import os
import ssl
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stream.exceptions import SettingsError
from stream.gcsettings import DEFAULT_YOUNG_THRESHOLD

ENV_PREFIX = "ANONSTREAM_"
DAY_MS = 24 * 3600 * 1000

Stage = Literal["anonymize", "aggregate", "release"]
STAGES: tuple[Stage, ...] = ("anonymize", "aggregate", "release")

# The one set of log level names (settings, worker command line, logging set-up).
LogLevel = Literal["debug", "info", "warning", "error"]
LOG_LEVELS: tuple[LogLevel, ...] = ("debug", "info", "warning", "error")

# `ANONSTREAM_*` variables that are not settings: read by one tool each, never refused.
OTHER_VARIABLES: Final = frozenset(
    {
        f"{ENV_PREFIX}SECRETS_DIR",  # where secret files live (this module)
        f"{ENV_PREFIX}KAFKA_RECIPE",  # the local broker's recipe (stream.local.broker)
        f"{ENV_PREFIX}TEST_BOOTSTRAP",  # tests: reuse a running broker
        f"{ENV_PREFIX}BENCH_BOOTSTRAP",  # benchmarks: reuse a running broker
        f"{ENV_PREFIX}SCREENSHOT_DIR",  # dashboard browser tests
    }
)


class Settings(BaseSettings):
    """Runtime settings of every anonstream process (workers, CLI, demo, dashboard)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        extra="forbid",
        case_sensitive=False,
    )

    # --- Kafka connection -------------------------------------------------------------
    bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        description="Comma-separated host:port list of Kafka brokers.",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_check_hostname: bool = Field(
        True,
        description="Check that the broker's TLS certificate names the host connected to. "
        "Turn off only for a broker reached by an address its certificate does not list "
        "(the CA is still verified).",
    )
    request_timeout_s: float = Field(10.0, gt=0, description="Broker request timeout, seconds.")

    # --- topics -----------------------------------------------------------------------
    topic_raw: str = "events.raw"
    topic_pseudonymized: str = "events.pseudonymized"
    topic_deadletter: str = "events.deadletter"
    topic_partials: str = "stats.partials"
    topic_aggregates: str = "stats.aggregates"
    topic_consent: str = "privacy.consent"
    topic_keys: str = "privacy.keys"
    topic_ledger: str = Field(
        "privacy.ledger",
        description="Compacted topic of the dp privacy ledger: what each person-day has spent, "
        "per day, metric and window size (anonstream budget reads it).",
    )
    partitions: int = Field(6, ge=1, le=1024, description="Partitions of the event topics.")
    replication_factor: int = Field(
        1, ge=1, le=16, description="Replication factor of every topic (3 in production)."
    )
    raw_retention_ms: int = Field(7 * DAY_MS, ge=60_000, description="events.raw retention.")
    intermediate_retention_ms: int = Field(
        3 * DAY_MS,
        ge=60_000,
        description="Retention of events.pseudonymized and stats.partials; at least twice the "
        "policy's largest window plus its lateness and idle timeout (checked when an "
        "aggregate or release worker starts), since a restarted worker replays them.",
    )
    deadletter_retention_ms: int = Field(
        3 * DAY_MS, ge=60_000, description="events.deadletter retention (it holds raw input)."
    )

    # --- processing -------------------------------------------------------------------
    app_id: str = Field(
        "anonstream", pattern=r"^[A-Za-z0-9._-]+$", description="Prefix of consumer group ids."
    )
    max_message_bytes: int = Field(
        262_144,
        ge=1024,
        le=900_000,
        description="Largest raw message accepted, bytes; larger ones are dead-lettered "
        "as too_large.",
    )
    policy_path: Path | None = Field(None, description="Policy TOML; None = shipped default.")
    geo_db_path: Path | None = Field(None, description="MaxMind-format .mmdb database.")
    data_dir: Path = Field(Path(".anonstream"), description="Worker state directory.")
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=0, le=65535, description="Worker web server port; 0 = any.")
    log_level: LogLevel = Field("info", description="Log level: debug, info, warning or error.")
    stall_timeout_s: float = Field(
        60.0,
        ge=5,
        description="A worker with consumer lag that processes nothing for this long (or, "
        "anonymize, whose commits stop) reports itself dead on /healthz; see stream.health.probes.",
    )
    gc_young_threshold: int = Field(
        DEFAULT_YOUNG_THRESHOLD,
        ge=0,
        description="Allocations between young-generation garbage collections in workers, "
        "which also freeze their start-up objects (stream.gcsettings); 0 keeps Python's "
        "collector settings (700, nothing frozen).",
    )
    key_encryption_key_file: Path | None = Field(
        None,
        description="File holding the key-encryption key (KEK): 32 random bytes, base64 "
        "(`head -c 32 /dev/urandom | base64`), mounted from a secret. It wraps the pseudonym "
        "keys on the key topic (AES-256-GCM) and authenticates key proposals; the anonymize "
        "and aggregate workers refuse to start without it. The local demo writes one.",
    )
    clock_offset_s: float = Field(
        0.0,
        description="Seconds added to the wall clock for key epochs and retention; for "
        "drills and tests only (e.g. to watch a key expire). Leave 0 in production.",
    )

    @field_validator("bootstrap_servers")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        servers = [s.strip() for s in value.split(",") if s.strip()]
        if not servers:
            raise ValueError("must list at least one host:port")
        for server in servers:
            host, sep, port = server.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError("must be a comma-separated list of host:port")
        return ",".join(servers)

    @model_validator(mode="after")
    def _check_security(self) -> Settings:
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_mechanism and self.sasl_username and self.sasl_password
        ):
            raise ValueError(
                "security_protocol SASL_* needs sasl_mechanism, sasl_username and sasl_password"
            )
        return self

    @property
    def bootstrap_list(self) -> list[str]:
        """`bootstrap_servers` as a list of host:port strings."""
        return self.bootstrap_servers.split(",")

    def group_id(self, stage: str) -> str:
        """Consumer group id (and Faust app id) of one stage."""
        return f"{self.app_id}-{stage}"

    @property
    def uses_tls(self) -> bool:
        """True for the SSL and SASL_SSL protocols."""
        return self.security_protocol.endswith("SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of every Kafka client (kafka-python, aiokafka, Faust); None
        without TLS.

        Verifies the broker's certificate and host name against `ssl_cafile` (the system's
        trusted authorities when unset) and presents `ssl_certfile`/`ssl_keyfile` when set
        (mutual TLS). Raises `SettingsError` naming the setting when a file cannot be read.
        """
        if not self.uses_tls:
            return None
        try:
            context = ssl.create_default_context(
                purpose=ssl.Purpose.SERVER_AUTH,
                cafile=str(self.ssl_cafile) if self.ssl_cafile else None,
            )
        except (OSError, ssl.SSLError) as exc:
            raise SettingsError(
                f"{ENV_PREFIX}SSL_CAFILE must be a readable PEM file of CA certificates; "
                f"got {str(self.ssl_cafile)!r} ({_reason(exc)})"
            ) from None
        context.check_hostname = self.ssl_check_hostname
        if self.ssl_certfile:
            try:
                context.load_cert_chain(
                    str(self.ssl_certfile),
                    keyfile=str(self.ssl_keyfile) if self.ssl_keyfile else None,
                )
            except (OSError, ssl.SSLError) as exc:
                raise SettingsError(
                    f"{ENV_PREFIX}SSL_CERTFILE and {ENV_PREFIX}SSL_KEYFILE must be a readable "
                    f"PEM certificate and its key; got {str(self.ssl_certfile)!r} and "
                    f"{str(self.ssl_keyfile) if self.ssl_keyfile else None!r} ({_reason(exc)})"
                ) from None
        return context

    def _client_config(self, bootstrap: object) -> dict[str, object]:
        """What kafka-python and aiokafka clients share: address, protocol, TLS, SASL."""
        config: dict[str, object] = {
            "bootstrap_servers": bootstrap,
            "security_protocol": self.security_protocol,
            "request_timeout_ms": int(self.request_timeout_s * 1000),
        }
        context = self.ssl_context()
        if context is not None:
            config["ssl_context"] = context
        if self.sasl_mechanism:
            config["sasl_mechanism"] = self.sasl_mechanism
            config["sasl_plain_username"] = self.sasl_username
            config["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        return config

    def kafka_python_config(self) -> dict[str, object]:
        """Connection keyword arguments for kafka-python clients (admin, producer, consumer)."""
        return self._client_config(self.bootstrap_list)

    def aiokafka_config(self) -> dict[str, object]:
        """Connection keyword arguments for aiokafka clients."""
        return self._client_config(self.bootstrap_servers)

    def masked(self) -> dict[str, object]:
        """Every setting by its variable name, secrets shown as `********` (set) or None."""
        shown: dict[str, object] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "********"
            elif isinstance(value, Path):
                value = str(value)
            shown[f"{ENV_PREFIX}{name.upper()}"] = value
        return shown


def setting_variables() -> tuple[str, ...]:
    """The environment variable of every setting, e.g. `ANONSTREAM_BOOTSTRAP_SERVERS`."""
    return tuple(f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields)


def unknown_names(environ: Mapping[str, str], secrets_dir: str | Path | None = None) -> list[str]:
    """One message per `ANONSTREAM_*` variable or secret file that names no setting.

    Each names the closest setting when one is close, e.g. `ANONSTREAM_PARTITION is not a
    known setting; did you mean ANONSTREAM_PARTITIONS?`. Secret files are compared
    case-insensitively, as they are read; Kubernetes' own entries (`..data`) are skipped.
    """
    known = setting_variables()
    problems = [
        _unknown(f"environment variable {name}", name, known)
        for name in sorted(environ)
        if name.upper().startswith(ENV_PREFIX)
        and name.upper() not in known
        and name.upper() not in OTHER_VARIABLES
    ]
    if secrets_dir:
        directory = Path(secrets_dir)
        if not directory.is_dir():
            problems.append(f"{ENV_PREFIX}SECRETS_DIR must be a directory; got {str(directory)!r}")
        else:
            for entry in sorted(directory.iterdir()):
                if entry.name.startswith(".") or entry.is_dir():
                    continue
                if entry.name.upper() not in known:
                    problems.append(_unknown(f"secret file {entry}", entry.name.upper(), known))
    return problems


def _unknown(what: str, name: str, known: Iterable[str]) -> str:
    # Compared without the prefix every name shares, which would make anything look close.
    suffixes = {variable.removeprefix(ENV_PREFIX): variable for variable in known}
    close = difflib.get_close_matches(
        name.upper().removeprefix(ENV_PREFIX), list(suffixes), n=1, cutoff=0.6
    )
    hint = (
        f"did you mean {suffixes[close[0]]}?"
        if close
        else "docs/reference/settings.md lists every setting"
    )
    return f"{what} is not a known setting; {hint}"


def _reason(exc: BaseException) -> str:
    """The short reason of an OS or TLS error, without a traceback."""
    return getattr(exc, "strerror", None) or getattr(exc, "reason", None) or type(exc).__name__


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment (and `overrides`), or raise `SettingsError`.

    The error message names every invalid setting by its environment variable, e.g.
    `ANONSTREAM_PARTITIONS must be greater than or equal to 1; got 0`.
    """
    secrets_dir = os.environ.get(f"{ENV_PREFIX}SECRETS_DIR")
    problems = unknown_names(os.environ, secrets_dir)
    settings: Settings | None = None
    try:
        if secrets_dir and Path(secrets_dir).is_dir():
            settings = Settings(_secrets_dir=secrets_dir, **overrides)  # type: ignore[call-arg]
        else:
            settings = Settings(**overrides)
    except ValidationError as exc:
        problems += _describe(exc)
    if problems or settings is None:
        raise SettingsError("invalid settings: " + "; ".join(problems), tuple(problems))
    return settings


def _describe(exc: ValidationError) -> list[str]:
    lines = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "settings"
        name = f"{ENV_PREFIX}{field.upper()}" if error["loc"] else "settings"
        message = error["msg"].removeprefix("Value error, ")
        given = error.get("input")
        shown = "<hidden>" if "password" in field else repr(given)
        if error["type"] == "extra_forbidden":
            lines.append(f"{name} is not a known setting")
        elif error["loc"]:
            lines.append(f"{name} {message.lower()}; got {shown}")
        else:
            lines.append(message)
    return lines
