"""Tiny HTTP helpers for worker endpoints (stdlib only)."""

from __future__ import annotations

import urllib.error
import urllib.request


def get(url: str, *, timeout_s: float = 2.0) -> tuple[int, str]:
    """(status, body) of a GET; (0, "") when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, OSError):
        return 0, ""


def metric_values(text: str) -> dict[str, float]:
    """Prometheus text exposition -> {"name{labels}": value} (samples only)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        values[name] = float(value)
    return values


def scrape(port: int) -> dict[str, float] | None:
    """The /metrics samples of the worker serving on `port`, or None while it does not answer."""
    status, text = get(f"http://127.0.0.1:{port}/metrics")
    return metric_values(text) if status == 200 else None
