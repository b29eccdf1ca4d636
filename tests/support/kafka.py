"""Produce to and read back from the real broker in tests (kafka-python, no consumer group)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from stream import kafka as kafka_clients
from stream.settings import Settings


def produce(
    settings: Settings,
    topic: str,
    values: Iterable[bytes | None],
    *,
    keys: Iterable[bytes | None] | None = None,
    partition: int | None = None,
) -> list[Any]:
    """Send `values` (in order), wait until the broker acknowledged all of them, and return
    their RecordMetadata (topic, partition, offset), in order.
    """
    producer = kafka_clients.producer(settings, max_request_size=4_000_000)
    futures = []
    try:
        key_iter = iter(keys) if keys is not None else None
        for value in values:
            key = next(key_iter) if key_iter is not None else None
            futures.append(producer.send(topic, value=value, key=key, partition=partition))
        producer.flush(timeout=60)
        return [future.get(timeout=60) for future in futures]
    finally:
        producer.close()


def read_topic(
    settings: Settings,
    topic: str,
    *,
    until: Callable[[list[Any]], bool],
    timeout_s: float = 60.0,
    settle_s: float = 1.0,
    check: Callable[[], None] | None = None,
) -> list[Any]:
    """Read `topic` from the beginning until `until(records)` holds, then `settle_s` more
    (so that duplicates arriving just after would be seen). Raises AssertionError on timeout;
    `check` is called while waiting (e.g. a worker's `ensure_alive`).
    """
    consumer = kafka_clients.consumer(settings, topic, consumer_timeout_ms=200)
    records: list[Any] = []
    deadline = time.monotonic() + timeout_s
    satisfied_at: float | None = None
    try:
        while time.monotonic() < deadline:
            if check is not None:
                check()
            batch = consumer.poll(timeout_ms=200)
            for partition_records in batch.values():
                records.extend(partition_records)
            if satisfied_at is None and until(records):
                satisfied_at = time.monotonic()
            if satisfied_at is not None and time.monotonic() - satisfied_at >= settle_s:
                return records
    finally:
        consumer.close()
    raise AssertionError(f"{topic}: condition not met within {timeout_s}s ({len(records)} records)")


def read_all(
    settings: Settings, topic: str, *, idle_s: float = 2.0, timeout_s: float = 60.0
) -> list[Any]:
    """Every record currently in `topic`: read until nothing new arrives for `idle_s`."""
    consumer = kafka_clients.consumer(settings, topic)
    records: list[Any] = []
    deadline = time.monotonic() + timeout_s
    last_new = time.monotonic()
    try:
        while time.monotonic() < deadline and time.monotonic() - last_new < idle_s:
            batch = consumer.poll(timeout_ms=200)
            for partition_records in batch.values():
                records.extend(partition_records)
                last_new = time.monotonic()
    finally:
        consumer.close()
    return records


def unwrap_key_record(settings: Settings, value: bytes) -> bytes:
    """The epoch key in a record of the key topic, unwrapped by hand: AES-256-GCM under the
    KEK of `settings` (its file: base64 of 32 bytes), the epoch as associated data."""
    import base64

    import orjson
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    path = settings.key_encryption_key_file
    assert path is not None, "the settings name no key-encryption key file"
    fields = orjson.loads(value)
    aead = AESGCM(base64.b64decode(path.read_bytes().strip()))
    return aead.decrypt(
        base64.b64decode(fields["nonce_b64"]),
        base64.b64decode(fields["wrapped_b64"]),
        f"anonstream/epoch-key/v2:{fields['epoch']}".encode(),
    )
