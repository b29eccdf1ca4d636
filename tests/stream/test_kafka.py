"""`stream.kafka`: Kafka's default partitioner, checked against the Java client itself."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka.partitioner.default import murmur2

from stream.kafka import default_partitions, key_partition
from stream.local.broker import ensure_jars
from stream.stages.anonymize import partition_for

JAVA_PARTITIONER = """
import org.apache.kafka.common.utils.Utils;
import java.util.HexFormat;

public class Partitioner {
    public static void main(String[] args) {
        for (String arg : args) {
            String[] parts = arg.split(":", -1);
            byte[] key = HexFormat.of().parseHex(parts[1]);
            System.out.println(Utils.toPositive(Utils.murmur2(key)) % Integer.parseInt(parts[0]));
        }
    }
}
"""
"""Kafka's Java client (the broker's kafka-clients jar): `partitions:hex key` -> partition."""


@given(st.lists(st.binary(max_size=40), max_size=200), st.integers(1, 64))
def test_default_partitions_match_kafkas_partitioner(keys: list[bytes], partitions: int) -> None:
    """Hand-built batches go where kafka-python's keyed send (murmur2) puts each key."""
    expected = [(murmur2(key) & 0x7FFFFFFF) % partitions for key in keys]
    assert default_partitions(keys, partitions) == expected


@pytest.mark.kafka
def test_key_partition_is_the_java_clients(tmp_path: Path) -> None:
    """For 400 keys (empty, ASCII, UTF-8, random bytes; 1 to 64 partitions) the partition is
    the one `Utils.toPositive(Utils.murmur2(key)) % partitions` of Kafka's Java client gives;
    the anonymize stage routes a subject pseudonym the same way."""
    rng = random.Random(20261202)
    keys = [b"", "cookie_id:é".encode(), b"user_id:u-1"]
    keys += [rng.randbytes(rng.randrange(0, 65)) for _ in range(397)]
    counts = [rng.choice((1, 2, 3, 4, 6, 7, 12, 64)) for _ in keys]
    source = tmp_path / "Partitioner.java"
    source.write_text(JAVA_PARTITIONER)
    result = subprocess.run(
        ["java", "-cp", f"{ensure_jars(quiet=True)}/*", str(source)]
        + [f"{n}:{key.hex()}" for n, key in zip(counts, keys, strict=True)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    java = [int(line) for line in result.stdout.split()]
    assert [key_partition(k, n) for k, n in zip(keys, counts, strict=True)] == java
    assert partition_for("Zq81-pseudonym_abcdefg", 7) == key_partition(b"Zq81-pseudonym_abcdefg", 7)


def test_key_partition_refuses_no_partitions() -> None:
    """Zero partitions is a programming error named with the value given."""
    with pytest.raises(ValueError, match="partitions must be >= 1; got 0"):
        key_partition(b"k", 0)
