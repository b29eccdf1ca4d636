"""Wire records of the aggregation engine: keys and the shapes of partial, progress and
aggregate records (`schemas/partial.v1.json`, `schemas/aggregate.v2.json`).

Keys are canonical so that a replayed record lands on the same compacted key:
`metric|window_start|window_end|dims|statistic`, where `dims` is `name=value` pairs sorted
by name and joined by `,`, with `\\`, `|`, `,` and `=` escaped by a backslash. The `other`
cell's dims part is `~other`, the total's `~total` (neither contains `=`, so neither can
collide with a real cell; a metric without dimensions has an empty dims part). Partials are
keyed by `partial|partition|metric|window_start|window_end|dims`.

An aggregate record (v2) is flat and typed: one record per statistic of a released cell,
its `value` always a number (or null for a mean of no values), with how it was protected.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

PARTIAL_SCHEMA: Final = "partial.v1"
AGGREGATE_SCHEMA: Final = "aggregate.v2"
OTHER_CELL: Final = "~other"
TOTAL_CELL: Final = "~total"

_ESCAPES = str.maketrans({"\\": "\\\\", "|": "\\|", ",": "\\,", "=": "\\="})


@dataclass(frozen=True, slots=True)
class Record:
    """One message to send: `key` (the Kafka key, UTF-8) and `value` (a JSON object)."""

    key: str
    value: dict[str, Any]


def escape(text: str) -> str:
    """Escape `\\`, `|`, `,` and `=` with a backslash."""
    return text.translate(_ESCAPES)


def dims_part(dimensions: Mapping[str, str]) -> str:
    """Canonical text of a cell's dimensions: sorted `name=value` joined by `,`."""
    return ",".join(f"{escape(k)}={escape(dimensions[k])}" for k in sorted(dimensions))


def window_prefix(metric: str, window_start: str, window_end: str) -> str:
    """The start of every key of one metric window (with the trailing separator)."""
    return f"{escape(metric)}|{window_start}|{window_end}|"


def aggregate_key(
    metric: str, window_start: str, window_end: str, cell: str, statistic: str
) -> str:
    """Key of a released record; `cell` is `dims_part(...)`, `OTHER_CELL` or `TOTAL_CELL`."""
    return f"{window_prefix(metric, window_start, window_end)}{cell}|{statistic}"


def partial_key(partition: int, metric: str, window_start: str, window_end: str, cell: str) -> str:
    """Compaction key of a partial record: one per source partition, metric, window, cell."""
    return f"partial|{partition}|{window_prefix(metric, window_start, window_end)}{cell}"


def progress_key(partition: int, closed_through: str) -> str:
    """Key of a progress record: one per source partition and close step."""
    return f"progress|{partition}|{closed_through}"
