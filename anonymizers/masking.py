"""A raw event masked for a report: the "before" side of `anonymizers preview`'s examples.

The privacy team reads before/after examples; the "before" must not put personal data in a
report file. `mask_event` keeps an event's shape (known field names, event type, time,
booleans and numbers) and replaces what identifies: identifiers, IP and event id by their field
name in brackets; URLs by their scheme, host and path in canonical form (decoded, as the URL
scrubber reads them) scrubbed by the same detectors, with query values and fragment masked;
search terms, the user agent and every other text by their canonical form with the detectors'
findings replaced. Unknown fields are counted under `UNKNOWN_FIELDS`, never named (a field name
is input too). The event's own identifiers are removed wherever they are echoed, in any
spelling (`anonymizers.allowlist.strip_echoes`).

Pure: no I/O, no environment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from anonymizers import pii
from anonymizers.allowlist import echo_needles, strip_echoes
from anonymizers.canonical import canonical
from anonymizers.fields import IDENTIFIER_FIELDS, RAW_FIELDS
from anonymizers.search_terms import normalise
from anonymizers.urls import scrub_text

MASK: Final = "[masked]"
"""What replaces a value that cannot be shown in part."""
UNKNOWN_FIELDS: Final = "[unknown fields]"
"""The key under which a masked event counts the fields the raw schema does not name."""
URL_FIELDS: Final = ("page_url", "referrer_url", "link_url")
_AS_SENT: Final = frozenset({"event_type"})
"""Text fields shown as sent: the schema restricts them to an enumeration."""
_TIME_RE: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})"
)


def mask_url(url: str, needles: list[str]) -> str:
    """The URL's shape with personal data gone: host and path in canonical form and scrubbed,
    query values and fragment masked, `needles` (from `echo_needles`) removed wherever they
    are echoed."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
    except ValueError:
        return MASK
    path = "/".join(scrub_text(segment) for segment in parts.path.split("/"))
    names = [scrub_text(p.partition("=")[0].replace("+", " ")) for p in parts.query.split("&") if p]
    text = f"{canonical(parts.scheme)}://{scrub_text(host)}{path}"
    text += "?" + "&".join(f"{name}=…" for name in names) if names else ""
    text += "#…" if parts.fragment else ""
    return strip_echoes(text, needles) or MASK


def _mask_text(value: str, needles: list[str]) -> str:
    return strip_echoes(pii.redact(value)[0], needles) or MASK


def mask_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """A raw event fit for a report: identifiers and IP replaced, free text scrubbed.

    Unknown fields are only counted. Used for the "before" side of examples.
    """
    needles = echo_needles(
        (v for n in (*IDENTIFIER_FIELDS, "event_id") if isinstance(v := event.get(n), str)),
        ips=[ip] if isinstance(ip := event.get("ip"), str) else [],
    )
    masked: dict[str, Any] = {}
    unknown = 0
    for name, value in event.items():
        if name in IDENTIFIER_FIELDS or name == "ip" or name == "event_id":
            masked[name] = f"[{name}]"
        elif name not in RAW_FIELDS:
            unknown += 1
        elif not isinstance(value, str):
            masked[name] = value if value is None or isinstance(value, bool | int | float) else MASK
        elif name in _AS_SENT:
            masked[name] = value
        elif name == "occurred_at":
            masked[name] = value if _TIME_RE.fullmatch(value) else MASK
        elif name in URL_FIELDS:
            masked[name] = mask_url(value, needles)
        elif name == "search_terms":
            masked[name] = _mask_text(normalise(value), needles)
        else:
            masked[name] = _mask_text(value, needles)
    if unknown:
        masked[UNKNOWN_FIELDS] = unknown
    return masked
