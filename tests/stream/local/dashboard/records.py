"""Aggregate records (schemas/aggregate.v2.json) for dashboard and demo tests."""

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
    statistic: str = "count",
    aggregate: str = "count",
) -> dict[str, Any]:
    """An aggregate.v2 record (one statistic) of a window starting at 12:`start_minute`."""
    return {
        "schema": "aggregate.v2",
        "metric": metric,
        "statistic": statistic,
        "aggregate": aggregate,
        "window_start": f"2026-01-01T12:{start_minute:02d}:00Z",
        "window_end": f"2026-01-01T12:{start_minute + 1:02d}:00Z",
        "window_seconds": seconds,
        "cell": cell,
        "dimensions": dims
        if dims is not None
        else ({"page_url": "https://s/p"} if cell == "cell" else {}),
        "value": value,
        "distinct_subjects": None if cell == "other" else 11,
        "mode": "exact",
        "k": 10,
        "threshold": 10,
        "noise_sd": None,
        "rho": None,
        "epsilon": None,
        "delta": None,
        "suppression": "other",
        "policy_version": "demo",
        "policy_hash": "0" * 16,
    }


def summary_records(
    metric: str, start_minute: int, *, dims: dict[str, str], values: dict[str, Any]
) -> list[dict[str, Any]]:
    """The records of one summary cell: one per statistic."""
    return [
        record(metric, start_minute, dims=dims, value=v, statistic=s, aggregate="summary")
        for s, v in values.items()
    ]
