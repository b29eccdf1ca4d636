"""Build the Faust app of one stage from the settings.

Each stage (anonymize, aggregate, release) is its own app, hence its own consumer group
(`<app_id>-<stage>`), so stages scale independently: run more worker processes of a stage
and Kafka spreads the partitions over them.
"""

from __future__ import annotations

from typing import Any

import faust

from stream.settings import Settings


def broker_credentials(settings: Settings) -> Any:
    """Faust credentials for the configured security protocol (None for PLAINTEXT).

    The TLS context is the one every other client gets (`Settings.ssl_context`).
    """
    context = settings.ssl_context()
    if settings.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password.get_secret_value() if settings.sasl_password else None,
            mechanism=settings.sasl_mechanism,
            ssl_context=context,
        )
    return context


STAGE_APP_SESSION_TIMEOUT_S = 10.0


def create_app(settings: Settings, stage: str, **overrides: Any) -> faust.App:
    """The Faust app of `stage`, with its web server on `settings.web_port`."""
    (settings.data_dir / stage).mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "broker": [f"kafka://{server}" for server in settings.bootstrap_list],
        "broker_credentials": broker_credentials(settings),
        "store": "memory://",
        "datadir": str(settings.data_dir / stage),
        "autodiscover": False,
        "topic_partitions": settings.partitions,
        "topic_replication_factor": settings.replication_factor,
        # Faust declares its own internal topics (the assignor's leader topic). Ours are
        # provisioned by `anonstream topics create` and checked before the worker starts
        # (`require_topics`), so Faust's create-if-missing never applies to them.
        "consumer_auto_offset_reset": "earliest",
        "producer_acks": -1,
        "producer_max_request_size": 4 * settings.max_message_bytes,
        "broker_commit_every": 1000,
        "broker_commit_interval": 1.0,
        "web_enabled": True,
        "web_host": settings.web_host,
        "web_port": settings.web_port,
        "web_in_thread": False,
    }
    # Every stage consumes in its own group (`<app_id>-<stage>`) with a manual-commit loop
    # (see stream.stages.commit_loop); its Faust app only hosts the web server and
    # lifecycle, and must not join that group with Faust's protocol. Faust still joins a
    # group of its own and starts the app's tasks and web server only once that group has
    # assigned, so a worker restarted after a crash waits for its dead predecessor's session
    # to expire there: 10 s (the stage consumer's session timeout) instead of Faust's
    # default 60 s.
    app_id = f"{settings.group_id(stage)}-app"
    config["broker_session_timeout"] = STAGE_APP_SESSION_TIMEOUT_S
    config.update(overrides)
    return faust.App(app_id, **config)
