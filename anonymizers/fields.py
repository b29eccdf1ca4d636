"""The one catalogue of fields: what a raw event may hold, what an anonymized event may carry.

Raw fields are those of the raw event's wire schema (`schemas/raw-event.v1.json`); anything
else on an event is unknown and dropped. Output fields are the `OutputField` literal (the
pseudonymized event's schema is generated from `OUTPUT_FIELD_SCHEMAS` here). The policy's
`output.fields` allowlist may name only output fields, metric dimensions only the
`DimensionField`s. Raw inputs (ip, user_agent...) are not output fields at all: naming one is
a policy error, so no setting can pass a raw value through. Every tuple below is derived from
its literal type, so each list is written once.
"""

from __future__ import annotations

from typing import Any, Final, Literal, get_args

import schemas

OutputField = Literal[
    "event_type",
    "occurred_at",
    "epoch",
    "subject",
    "country",
    "region",
    "city",
    "ip_prefix",
    "page_url",
    "referrer_host",
    "referrer_internal",
    "link_url",
    "search_terms",
    "browser",
    "browser_major",
    "os",
    "os_major",
    "language",
    "hardware",
    "time_on_page_ms",
    "user_id",
    "cookie_id",
    "device_id",
    "ad_id",
    "mac",
    "imei",
]

DimensionField = Literal[
    "event_type",
    "country",
    "region",
    "city",
    "page_url",
    "referrer_host",
    "referrer_internal",
    "link_url",
    "search_terms",
    "browser",
    "browser_major",
    "os",
    "os_major",
    "language",
    "hardware",
]

ValueField = Literal["time_on_page_ms"]

IdentifierField = Literal["user_id", "cookie_id", "device_id", "ad_id", "mac", "imei"]
SubjectField = Literal["user_id", "cookie_id", "device_id", "ad_id"]
EventType = Literal["page_view", "page_leave", "search", "link_click"]

IDENTIFIER_FIELDS: Final[tuple[str, ...]] = get_args(IdentifierField)
"""Identifiers, in the order the echo guard replaces them."""
SUBJECT_FIELDS: Final[tuple[str, ...]] = get_args(SubjectField)
EVENT_TYPES: Final[tuple[str, ...]] = get_args(EventType)
OUTPUT_FIELDS: Final[tuple[str, ...]] = get_args(OutputField)
RAW_FIELDS: Final[frozenset[str]] = frozenset(schemas.load(schemas.RAW_EVENT_V1)["properties"])
"""Fields of raw event v1 (its schema's properties); any other field is unknown and dropped."""
REQUIRED_OUTPUT_FIELDS: Final[tuple[str, ...]] = ("event_type", "occurred_at", "epoch", "subject")
"""Always in the output: the stream keys by `subject`, windows by `occurred_at`."""

_PSEUDONYM = {
    "type": "string",
    "pattern": "^[A-Za-z0-9_-]{22}$",
    "description": (
        "Keyed pseudonym: base64url of the first 16 bytes of HMAC-SHA256 under the epoch key."
    ),
}
_TEXT = {"type": "string"}

OUTPUT_FIELD_SCHEMAS: Final[dict[str, dict[str, Any]]] = {
    "event_type": {"enum": list(EVENT_TYPES)},
    "occurred_at": {
        "type": "string",
        "format": "date-time",
        "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$",
        "description": "Event time in UTC, RFC 3339, truncated to the second.",
    },
    "epoch": {
        "type": "integer",
        "description": (
            "floor(unix seconds of occurred_at / keys.rotation): the key of the pseudonyms."
        ),
    },
    "subject": {
        **_PSEUDONYM,
        "description": "Pseudonym of the first identifier present (identifiers.subject_order), "
        "or a cookieless daily visitor id from IP and user agent.",
    },
    "country": {"type": "string", "description": "ISO 3166-1 alpha-2 country code."},
    "region": {
        "type": "string",
        "description": (
            "First subdivision: ISO 3166-2 subdivision code, or its English name when the "
            'database has no code; "unknown" when the country is known but not the region.'
        ),
    },
    "city": {
        "type": "string",
        "description": 'English city name; "unknown" when the country is known but not the city.',
    },
    "ip_prefix": {
        "type": "string",
        "description": (
            "The IP truncated to the policy's prefix (IPv4 at most /24, IPv6 at most /48), "
            "CIDR text."
        ),
    },
    "page_url": {
        **_TEXT,
        "description": "Scrubbed URL: scheme, host, path, allow-listed query parameters.",
    },
    "referrer_host": {**_TEXT, "description": "Host of the referring page."},
    "referrer_internal": {
        "type": "boolean",
        "description": "True when the referrer is one of the site's own hosts.",
    },
    "link_url": {**_TEXT, "description": "Scrubbed URL of the clicked link."},
    "search_terms": {
        **_TEXT,
        "description": "Normalised search terms with personal data redacted.",
    },
    "browser": {**_TEXT, "description": "Browser family."},
    "browser_major": {"type": "integer", "minimum": 0, "description": "Browser major version."},
    "os": {**_TEXT, "description": "Operating system family."},
    "os_major": {"type": "integer", "minimum": 0, "description": "Operating system major version."},
    "language": {
        **_TEXT,
        "description": "Primary language subtag, with region if the policy keeps it.",
    },
    "hardware": {
        "enum": ["desktop", "mobile", "tablet", "tv", "console", "wearable", "bot", "other"],
        "description": "Hardware class.",
    },
    "time_on_page_ms": {
        "type": "integer",
        "minimum": 0,
        "description": "Time on page in milliseconds, clamped to context.time_on_page_max.",
    },
    "user_id": _PSEUDONYM,
    "cookie_id": _PSEUDONYM,
    "device_id": _PSEUDONYM,
    "ad_id": _PSEUDONYM,
    "mac": _PSEUDONYM,
    "imei": _PSEUDONYM,
}
"""JSON Schema of each output field: `schemas/pseudonymized-event.v1.json` is built from it."""


def pseudonymized_event_schema() -> dict[str, Any]:
    """The JSON Schema of the anonymized event (`schemas/pseudonymized-event.v1.json`)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://anonstream.dev/schemas/pseudonymized-event.v1.json",
        "title": "Pseudonymized event v1",
        "description": (
            "One anonymized event on events.pseudonymized, where a message is a JSON array of "
            "anonymized events whose subjects all hash (Kafka's murmur2, as a message keyed "
            "by the subject would) to the message's partition. Flat object "
            "holding only the fields the policy's output.fields allowlist names; a field whose "
            "value could not be derived safely is absent, never null. Generated from "
            "anonymizers.fields."
        ),
        "type": "object",
        "required": list(REQUIRED_OUTPUT_FIELDS),
        "additionalProperties": False,
        "properties": {name: dict(schema) for name, schema in OUTPUT_FIELD_SCHEMAS.items()},
    }
