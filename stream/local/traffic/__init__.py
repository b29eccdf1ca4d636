"""Realistic traffic of a French jewellery shop for demos, tests and benchmarks.

`TrafficGenerator(seed=..., start=..., rate=...).messages(max_items=N)` yields Kafka
messages (`Message(topic_kind, key, value, items)`) in send order; `truth()` is the ground
truth of what was yielded. `write_files` and `send_to_kafka` deliver them; `generate_cli` is
`anonstream generate`. See docs/guides/traffic.md.
"""

from __future__ import annotations

from stream.local.traffic.cli import generate_cli
from stream.local.traffic.exceptions import GeoDatabaseError, TrafficError
from stream.local.traffic.generator import TrafficGenerator
from stream.local.traffic.geo import GeoPool
from stream.local.traffic.sinks import output_paths, send_to_kafka, write_files
from stream.local.traffic.truth import Item, Message

__all__ = [
    "GeoDatabaseError",
    "GeoPool",
    "Item",
    "Message",
    "TrafficError",
    "TrafficGenerator",
    "generate_cli",
    "output_paths",
    "send_to_kafka",
    "write_files",
]
