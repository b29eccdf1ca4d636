"""Every Kafka client anonstream makes, built here from the settings (address, security).

One function per client kind: kafka-python's admin client, producer and consumer for the
command line, aiokafka's consumer, producer and admin client for the workers' event loop.
Each takes the settings' connection and security configuration (`Settings.kafka_python_config`,
`Settings.aiokafka_config`) and the caller's overrides; nothing else in anonstream builds a
client. Also here: one clear error when no broker answers, the partition ids of a topic, and
Kafka's default partitioner (murmur2), where a record keyed by given bytes lands.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from stream.exceptions import BrokerSecurityError, BrokerUnreachableError, TopicConfigError
from stream.settings import Settings


def tcp_reachable(bootstrap: str, *, timeout_s: float = 2.0) -> bool:
    """True when some `host:port` of a comma-separated `bootstrap` list accepts TCP."""
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout_s):
                return True
        except (OSError, ValueError):
            continue
    return False


def require_reachable(settings: Settings, *, timeout_s: float = 3.0) -> None:
    """Raise unless a broker accepts a connection as the settings configure it.

    `BrokerUnreachableError` naming the address when no broker accepts TCP connections;
    with TLS or SASL, `BrokerSecurityError` naming the setting to fix when the TLS handshake
    (unknown CA, wrong host name) or the SASL authentication (wrong user or password) fails.
    The Kafka client libraries would otherwise retry for half a minute and end in "unable to
    bootstrap"; this check turns each of these mistakes into one line, at once.
    """
    if not tcp_reachable(settings.bootstrap_servers, timeout_s=timeout_s):
        raise BrokerUnreachableError(
            "no Kafka broker reachable at "
            f"ANONSTREAM_BOOTSTRAP_SERVERS={settings.bootstrap_servers}"
            " (start one with `anonstream broker start`)"
        )
    if settings.security_protocol != "PLAINTEXT":
        check_security(settings, timeout_s=max(timeout_s, settings.request_timeout_s))


def check_security(settings: Settings, *, timeout_s: float) -> None:
    """Open one connection to the first reachable bootstrap server with the configured TLS
    and SASL, as the clients will, and ask it for metadata; raise `BrokerSecurityError`
    saying what was refused."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    for server in settings.bootstrap_list:
        if tcp_reachable(server, timeout_s=timeout_s):
            break
    host, _, port = server.rpartition(":")
    # Its own event loop in a thread: callers may be inside a running loop (workers, CLI).
    with ThreadPoolExecutor(max_workers=1) as pool:
        refused = pool.submit(
            asyncio.run, _handshake(settings, host, int(port), timeout_s=timeout_s)
        ).result()
    if refused is not None:
        raise BrokerSecurityError(_describe_refusal(settings, server, *refused))


async def _handshake(
    settings: Settings, host: str, port: int, *, timeout_s: float
) -> tuple[str, BaseException] | None:
    """Connect (TLS handshake, SASL authentication), request metadata and close; None, or
    the step that failed ("connect" or "request") and its error."""
    import asyncio

    from aiokafka.conn import create_conn
    from aiokafka.protocol.metadata import MetadataRequest

    config = settings.aiokafka_config()
    try:
        conn = await asyncio.wait_for(
            create_conn(
                host,
                port,
                request_timeout_ms=int(timeout_s * 1000),
                ssl_context=config.get("ssl_context"),
                security_protocol=settings.security_protocol,
                sasl_mechanism=settings.sasl_mechanism,
                sasl_plain_username=settings.sasl_username,
                sasl_plain_password=config.get("sasl_plain_password"),
            ),
            timeout=timeout_s,
        )
    except Exception as exc:  # reported to the caller, not swallowed
        return "connect", exc
    try:
        # A SASL listener accepts the version request of the connection without
        # authentication, then closes the connection on the first real request.
        await asyncio.wait_for(conn.send(MetadataRequest([])), timeout=timeout_s)
    except Exception as exc:  # reported to the caller, not swallowed
        return "request", exc
    finally:
        conn.close()
    return None


# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH.
_NAME_MISMATCH = frozenset({62, 64})


def _describe_refusal(settings: Settings, server: str, step: str, error: BaseException) -> str:
    """One line: what the broker at `server` refused and which settings to check."""
    chain: list[BaseException] = [error]
    while True:
        nxt = chain[-1].__cause__ or chain[-1].__context__
        if nxt is None or nxt in chain:
            break
        chain.append(nxt)
    protocol = f"ANONSTREAM_SECURITY_PROTOCOL={settings.security_protocol}"
    for exc in chain:
        if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_code in _NAME_MISMATCH:
            return (
                f"the TLS certificate of the broker at {server} does not name that host "
                f"({exc.verify_message}); connect by a name the certificate lists, or set "
                "ANONSTREAM_SSL_CHECK_HOSTNAME=false (allowed: true, false); got "
                f"{settings.ssl_check_hostname}"
            )
        if isinstance(exc, ssl.SSLCertVerificationError):
            return (
                f"the TLS certificate of the broker at {server} was not accepted "
                f"({exc.verify_message}); ANONSTREAM_SSL_CAFILE must name the CA certificate "
                f"that signed it; got {str(settings.ssl_cafile) if settings.ssl_cafile else None!r}"
            )
        if isinstance(exc, ssl.SSLError):
            return (
                f"the TLS handshake with the broker at {server} failed ({exc.reason}); is "
                f"{protocol} the protocol of this listener?"
            )
    name = type(error).__name__
    if "AuthenticationFailed" in name or "Authorization" in name:
        return (
            f"the broker at {server} refused the SASL credentials of "
            f"ANONSTREAM_SASL_USERNAME={settings.sasl_username!r} "
            f"(ANONSTREAM_SASL_MECHANISM={settings.sasl_mechanism}): authentication failed; "
            "check the user name and ANONSTREAM_SASL_PASSWORD (not shown)"
        )
    if "Sasl" in name:
        return (
            f"the listener at {server} does not accept {settings.sasl_mechanism} ({name}); "
            f"is {protocol} the protocol of this listener (allowed: PLAINTEXT, SSL, "
            "SASL_PLAINTEXT, SASL_SSL)?"
        )
    if step == "request":
        return (
            f"the broker at {server} closed the connection at the first request ({name}): "
            f"the listener expects another protocol, such as SASL; is {protocol} the "
            "protocol of this listener (allowed: PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)?"
        )
    return (
        f"the broker at {server} did not complete a {settings.security_protocol} connection "
        f"({name}); check ANONSTREAM_SECURITY_PROTOCOL and the listener's port"
    )


# --------------------------------------------------------------- kafka-python (blocking)
def admin(settings: Settings, **overrides: Any) -> Any:
    """A kafka-python admin client (the caller closes it; no connection check: see
    `admin_client`)."""
    from kafka import KafkaAdminClient

    return KafkaAdminClient(**{**settings.kafka_python_config(), **overrides})


@contextmanager
def admin_client(settings: Settings) -> Iterator[Any]:
    """A kafka-python admin client, after a reachability check; closed on exit."""
    require_reachable(settings)
    client = admin(settings)
    try:
        yield client
    finally:
        client.close()


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


# ---------------------------------------------------------------------- aiokafka (async)
def async_consumer(settings: Settings, **overrides: Any) -> Any:
    """An aiokafka consumer, not started: no group and no auto-commit unless overridden."""
    from aiokafka import AIOKafkaConsumer

    config: dict[str, Any] = {
        **settings.aiokafka_config(),
        "group_id": None,
        "enable_auto_commit": False,
    }
    config.update(overrides)
    return AIOKafkaConsumer(**config)


def async_producer(settings: Settings, **overrides: Any) -> Any:
    """An aiokafka producer, not started: acks=all and idempotent unless overridden."""
    from aiokafka import AIOKafkaProducer

    config: dict[str, Any] = {
        **settings.aiokafka_config(),
        "acks": "all",
        "enable_idempotence": True,
    }
    config.update(overrides)
    return AIOKafkaProducer(**config)


def async_admin(settings: Settings) -> Any:
    """An aiokafka admin client, not started (`await client.start()`, `await client.close()`)."""
    from aiokafka.admin import AIOKafkaAdminClient

    return AIOKafkaAdminClient(**settings.aiokafka_config())


async def topic_partitions(settings: Settings, topic: str) -> list[int]:
    """Partition ids of `topic`; `TopicConfigError` when it does not exist."""
    client = async_admin(settings)
    await client.start()
    try:
        described = await client.describe_topics([topic])
    finally:
        await client.close()
    for entry in described:
        if entry.get("topic") == topic and not entry.get("error_code") and entry.get("partitions"):
            return sorted(p["partition"] for p in entry["partitions"])
    raise TopicConfigError(f"topic {topic} does not exist; run `anonstream topics create`")


# ----------------------------------------------------------------- the default partitioner
# Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2): seed and mixing constant.
_MURMUR2_SEED = 0x9747B28C
_MURMUR2_M = 0x5BD1E995


def default_partitions(keys: Sequence[bytes], partitions: int) -> list[int]:
    """The partition Kafka's default partitioner gives a message with each of `keys`.

    `toPositive(murmur2(key)) % partitions`, as the Java client, kafka-python and aiokafka
    compute it for a keyed message, so that records sent in hand-built batches land where a
    plain `send(key=...)` (and a consent platform's own Kafka producer) puts them: on a
    compacted topic, one key must always live in one partition. Vectorised with numpy over
    keys of equal length (about 0.3 µs per key in bulk; the client libraries' pure-Python
    hash takes ~11 µs per key). The one murmur2 of anonstream: tests check it against the Java
    client's partitioner from the broker's own jar and against kafka-python's.
    """
    import numpy as np

    if partitions < 1:
        raise ValueError(f"partitions must be >= 1; got {partitions}")
    hashes = np.empty(len(keys), dtype=np.uint32)
    by_length: dict[int, list[int]] = {}
    for index, key in enumerate(keys):
        by_length.setdefault(len(key), []).append(index)
    for length, indices in by_length.items():
        data = np.frombuffer(b"".join([keys[i] for i in indices]), dtype=np.uint8)
        data = data.reshape(len(indices), length)
        h = np.full(len(indices), (_MURMUR2_SEED ^ length) & 0xFFFFFFFF, dtype=np.uint32)
        words = length // 4
        if words:
            blocks = np.ascontiguousarray(data[:, : words * 4]).view("<u4")
            for column in range(words):
                k = blocks[:, column] * np.uint32(_MURMUR2_M)
                k ^= k >> np.uint32(24)
                k *= np.uint32(_MURMUR2_M)
                h *= np.uint32(_MURMUR2_M)
                h ^= k
        tail = length % 4
        base = words * 4
        if tail >= 3:
            h ^= data[:, base + 2].astype(np.uint32) << np.uint32(16)
        if tail >= 2:
            h ^= data[:, base + 1].astype(np.uint32) << np.uint32(8)
        if tail >= 1:
            h ^= data[:, base].astype(np.uint32)
            h *= np.uint32(_MURMUR2_M)
        h ^= h >> np.uint32(13)
        h *= np.uint32(_MURMUR2_M)
        h ^= h >> np.uint32(15)
        hashes[indices] = h
    positive = hashes & np.uint32(0x7FFFFFFF)
    result: list[int] = (positive % np.uint32(partitions)).tolist()
    return result


def key_partition(key: bytes, partitions: int) -> int:
    """`default_partitions` of one key (callers with many keys pass them all at once)."""
    return default_partitions([key], partitions)[0]
