"""A raw event masked for a report: the "before" side of `anonstream preview`'s examples.

The privacy team reads before/after examples; the "before" must not put personal data in a
report file. `mask_event` keeps an event's shape (field names, event type, times, booleans,
the user agent as sent) and replaces what identifies: identifiers, IP and event id by their
field name in brackets, URLs by their scheme, scrubbed host and path with query values and
fragment masked, search terms and other text by their PII-redacted form, unknown fields by
`MASK`. Identifier and IP values echoed anywhere else are removed too.

Pure: no I/O, no environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from anonymizers import pii
from anonymizers.allowlist import strip_echoes
from anonymizers.fields import IDENTIFIER_FIELDS, RAW_FIELDS
from anonymizers.search_terms import normalise
from anonymizers.urls import scrub_text

MASK: Final = "[masked]"
"""What replaces a value that cannot be shown in part."""
URL_FIELDS: Final = ("page_url", "referrer_url", "link_url")


def mask_url(url: str, identifiers: list[str]) -> str:
    """The URL's shape with personal data gone: path scrubbed, query values and fragment
    masked, `identifiers` (case-folded values) removed wherever they are echoed."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
    except ValueError:
        return MASK
    path = "/".join(scrub_text(segment) for segment in parts.path.split("/"))
    query = "&".join(f"{p.partition('=')[0]}=…" for p in parts.query.split("&") if p)
    text = f"{parts.scheme}://{scrub_text(host)}{path}"
    text += f"?{scrub_text(query)}" if query else ""
    text += "#…" if parts.fragment else ""
    return strip_echoes(text, identifiers) or MASK


def mask_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """A raw event fit for a report: identifiers and IP replaced, URLs and terms scrubbed.

    Unknown fields keep their name only. Used for the "before" side of examples.
    """
    identifiers = [
        v.casefold() for n in (*IDENTIFIER_FIELDS, "ip") if isinstance(v := event.get(n), str)
    ]
    masked: dict[str, Any] = {}
    for name, value in event.items():
        if name in IDENTIFIER_FIELDS or name == "ip" or name == "event_id":
            masked[name] = f"[{name}]"
        elif name not in RAW_FIELDS:
            masked[name] = MASK
        elif name in URL_FIELDS and isinstance(value, str):
            masked[name] = mask_url(value, identifiers)
        elif name == "search_terms" and isinstance(value, str):
            masked[name] = strip_echoes(pii.redact(normalise(value))[0], identifiers) or MASK
        elif name == "user_agent" and isinstance(value, str):
            # Shown as sent (version numbers would read as IPs); identifiers still go.
            masked[name] = strip_echoes(value, identifiers) or MASK
        elif isinstance(value, str):
            masked[name] = strip_echoes(pii.redact(value)[0], identifiers) or MASK
        else:
            masked[name] = value
    return masked
