"""Versioned wire schemas (JSON Schema files) and a tiny loader; no logic."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

RAW_EVENT_V1 = "raw-event.v1.json"
CONSENT_RECORD_V1 = "consent-record.v1.json"
DEADLETTER_RECORD_V1 = "deadletter-record.v1.json"
PSEUDONYMIZED_EVENT_V1 = "pseudonymized-event.v1.json"
AGGREGATE_V2 = "aggregate.v2.json"
POLICY_V1 = "policy.v1.json"
PARTIAL_V1 = "partial.v1.json"


@functools.cache
def load(name: str) -> dict[str, Any]:
    """Return the JSON Schema stored in this package under `name` (e.g. `RAW_EVENT_V1`)."""
    text = resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema

