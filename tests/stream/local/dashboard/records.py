"""Aggregate records (schemas/aggregate.v1.json) for dashboard and demo tests."""

from __future__ import annotations

from typing import Any


def record(
    metric: str,
    start_minute: int,
    *,
    cell: str = "cell",
    dims: dict[str, str] | None = None,
    value: Any = 12,
    seconds: int = 60,
) -> dict[str, Any]:
    """An aggregate.v1 record of a window starting at 12:`start_minute`."""
    return {
        "schema": "aggregate.v1",
        "metric": metric,
        "aggregate": "summary" if isinstance(value, dict) else "count",
        "window_start": f"2026-01-01T12:{start_minute:02d}:00Z",
        "window_end": f"2026-01-01T12:{start_minute + 1:02d}:00Z",
        "window_seconds": seconds,
        "cell": cell,
        "dimensions": dims
        if dims is not None
        else ({"page_url": "https://s/p"} if cell == "cell" else {}),
        "value": value,
        "distinct_subjects": None if cell == "other" else 11,
        "k": 10,
        "policy_version": "demo",
    }
