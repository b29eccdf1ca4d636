"""The one settings object: environment variables prefixed `ANONSTREAM_`, secrets from files.

Built once at start-up (`load_settings()`), never at import. Every field can be set as
`ANONSTREAM_<FIELD>` (upper case); any setting, secrets such as `sasl_password` above all,
can also be read from a file named after its variable (case-insensitive) in the directory
`ANONSTREAM_SECRETS_DIR` (Kubernetes secret volumes), e.g.
`/var/run/secrets/anonstream/anonstream_sasl_password`. Environment variables win.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stream.exceptions import SettingsError
from stream.gcsettings import DEFAULT_YOUNG_THRESHOLD

ENV_PREFIX = "ANONSTREAM_"
DAY_MS = 24 * 3600 * 1000

Stage = Literal["anonymize", "aggregate", "release"]
STAGES: tuple[Stage, ...] = ("anonymize", "aggregate", "release")


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
    log_level: Literal["debug", "info", "warning", "error"] = "info"
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

    def _client_config(self, bootstrap: object) -> dict[str, object]:
        """What kafka-python and aiokafka clients share: address, protocol, SASL."""
        config: dict[str, object] = {
            "bootstrap_servers": bootstrap,
            "security_protocol": self.security_protocol,
            "request_timeout_ms": int(self.request_timeout_s * 1000),
        }
        if self.sasl_mechanism:
            config["sasl_mechanism"] = self.sasl_mechanism
            config["sasl_plain_username"] = self.sasl_username
            config["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        return config

    def kafka_python_config(self) -> dict[str, object]:
        """Connection keyword arguments for kafka-python clients (admin, producer, consumer)."""
        config = self._client_config(self.bootstrap_list)
        if self.ssl_cafile:
            config["ssl_cafile"] = str(self.ssl_cafile)
        if self.ssl_certfile:
            config["ssl_certfile"] = str(self.ssl_certfile)
        if self.ssl_keyfile:
            config["ssl_keyfile"] = str(self.ssl_keyfile)
        return config

    def aiokafka_config(self) -> dict[str, object]:
        """Connection keyword arguments for aiokafka clients."""
        config = self._client_config(self.bootstrap_servers)
        if self.security_protocol.endswith("SSL"):
            from aiokafka.helpers import create_ssl_context

            config["ssl_context"] = create_ssl_context(
                cafile=str(self.ssl_cafile) if self.ssl_cafile else None,
                certfile=str(self.ssl_certfile) if self.ssl_certfile else None,
                keyfile=str(self.ssl_keyfile) if self.ssl_keyfile else None,
            )
        return config


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment (and `overrides`), or raise `SettingsError`.

    The error message names every invalid setting by its environment variable, e.g.
    `ANONSTREAM_PARTITIONS must be greater than or equal to 1; got 0`.
    """
    secrets_dir = os.environ.get(f"{ENV_PREFIX}SECRETS_DIR")
    try:
        if secrets_dir:
            return Settings(_secrets_dir=secrets_dir, **overrides)  # type: ignore[call-arg]
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
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
    return "invalid settings: " + "; ".join(lines)
