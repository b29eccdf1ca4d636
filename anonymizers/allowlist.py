"""The allowlist: the anonymized event holds only the fields the policy names.

Built from `output.fields`; unknown fields never pass because the output is *constructed*
from the allowlist, never copied from the input. Before that, the echo guard removes any
of the event's own identifiers (user id, cookie id, device id, ad id, MAC, IMEI, IP) that a
free-text field (URLs, referrer host, search terms) still holds, in plain or percent-encoded
form: a last line of defence behind the URL and search-term scrubbers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import unquote

from anonymizers import pii
from anonymizers.policy import OutputConfig

FREE_TEXT_FIELDS: Final = ("page_url", "link_url", "referrer_host", "search_terms")
"""Output fields whose text comes from the input and may echo an identifier."""
ECHO_MIN_LENGTH: Final = 4
"""Identifier values shorter than this are not searched for (they would match anywhere)."""


def _folded_views(value: str) -> tuple[str, str]:
    folded = value.casefold()
    return folded, (unquote(folded) if "%" in folded else folded)


def strip_echoes(value: str, needles: Sequence[str]) -> str | None:
    """`value` with every needle (casefolded identifier) replaced by "[id]".

    None when a needle survives replacement (e.g. only present percent-encoded): fail closed.
    """
    folded, decoded = _folded_views(value)
    hits = [n for n in needles if n in folded or n in decoded]
    if not hits:
        return value
    for needle in hits:
        value = re.sub(re.escape(needle), pii.IDENTIFIER, value, flags=re.IGNORECASE)
    folded, decoded = _folded_views(value)
    if any(n in folded or n in decoded for n in hits):
        return None
    return value


class Allowlist:
    """Builds the output event from candidate fields: only allow-listed, non-None values."""

    def __init__(self, config: OutputConfig) -> None:
        self.fields: tuple[str, ...] = tuple(config.fields)
        self.names: frozenset[str] = frozenset(config.fields)
        self._free_text = tuple(f for f in FREE_TEXT_FIELDS if f in self.names)

    def __call__(
        self, candidate: Mapping[str, Any], *, identifiers: Sequence[str] = ()
    ) -> tuple[dict[str, Any], list[str]]:
        """The output event, and the free-text fields the echo guard changed or removed."""
        out = {name: candidate[name] for name in self.fields if candidate.get(name) is not None}
        touched: list[str] = []
        needles = [i.casefold() for i in identifiers if len(i) >= ECHO_MIN_LENGTH]
        if needles:
            for name in self._free_text:
                value = out.get(name)
                if isinstance(value, str):
                    cleaned = strip_echoes(value, needles)
                    if cleaned is not value:
                        touched.append(name)
                        if cleaned is None:
                            del out[name]
                        else:
                            out[name] = cleaned
        return out, touched
