"""Kafka client construction shared by every caller, with one clear error when no broker answers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from stream.broker import tcp_reachable
from stream.exceptions import BrokerUnreachableError
from stream.settings import Settings


def require_reachable(settings: Settings, *, timeout_s: float = 3.0) -> None:
    """Raise `BrokerUnreachableError` naming the address unless a broker accepts connections.

    kafka-python would otherwise retry with growing back-off for half a minute and end in a
    traceback; this check turns a wrong address into one line, at once.
    """
    if not tcp_reachable(settings.bootstrap_servers, timeout_s=timeout_s):
        raise BrokerUnreachableError(
            "no Kafka broker reachable at "
            f"ANONSTREAM_BOOTSTRAP_SERVERS={settings.bootstrap_servers}"
            " (start one with `anonstream broker start`)"
        )


@contextmanager
def admin_client(settings: Settings) -> Iterator[Any]:
    """A kafka-python admin client, closed on exit."""
    from kafka import KafkaAdminClient

    require_reachable(settings)
    admin = KafkaAdminClient(**settings.kafka_python_config())
    try:
        yield admin
    finally:
        admin.close()


def producer(settings: Settings, **overrides: Any) -> Any:
    """A kafka-python producer (acks=all, idempotent: kafka-python 3 defaults)."""
    from kafka import KafkaProducer

    require_reachable(settings)
    config: dict[str, Any] = {**settings.kafka_python_config(), "linger_ms": 5}
    config.update(overrides)
    return KafkaProducer(**config)


def consumer(settings: Settings, *topics: str, **overrides: Any) -> Any:
    """A kafka-python consumer (no group unless `group_id` is given)."""
    from kafka import KafkaConsumer

    require_reachable(settings)
    config: dict[str, Any] = {
        **settings.kafka_python_config(),
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
    }
    config.update(overrides)
    return KafkaConsumer(*topics, **config)
