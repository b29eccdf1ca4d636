"""The allowlist: the anonymized event holds only the fields the policy names.

Built from `output.fields`; unknown fields never pass because the output is *constructed*
from the allowlist, never copied from the input. Before that, the echo guard removes any
of the event's own identifiers (user id, cookie id, device id, ad id, MAC, IMEI, IP) that a
free-text field (URLs, referrer host, search terms) still holds, in plain or percent-encoded
form: a last line of defence behind the URL and search-term scrubbers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final
from urllib.parse import unquote

from anonymizers import pii
from anonymizers.outcome import Draft
from anonymizers.policy import OutputConfig

FREE_TEXT_FIELDS: Final = ("page_url", "link_url", "referrer_host", "search_terms")
"""Output fields whose text comes from the input and may echo an identifier."""
ECHO_MIN_LENGTH: Final = 4
"""Identifier values shorter than this are not searched for (they would match anywhere)."""


def _folded_views(value: str) -> tuple[str, str]:
    folded = value.casefold()
    return folded, (unquote(folded) if "%" in folded else folded)


def echo_haystack(value: str) -> str:
    """What the echo guard searches in `value`: its casefolded views, NUL-joined.

    A needle found in none of a field's views leaves the field unchanged, so a needle absent
    from every haystack proves the guard has nothing to do (a hit, even a false one across
    the NUL, only sends the event through the guard itself).
    """
    folded, decoded = _folded_views(value)
    return folded if decoded == folded else f"{folded}\x00{decoded}"


def echo_needles(identifiers: Iterable[str]) -> list[str]:
    """The identifiers the echo guard looks for: casefolded, at least `ECHO_MIN_LENGTH` long."""
    return [i.casefold() for i in identifiers if len(i) >= ECHO_MIN_LENGTH]


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
    """The chain's last unit: the output event holds only the fields the policy names, in
    the allowlist's order, never None; whatever a unit wrote beyond them is dropped.

    `build(candidate, identifiers=...)` makes an output event from candidate fields in one
    step, the echo guard included (for tests and tools); `guard` is the echo guard alone.
    """

    def __init__(self, config: OutputConfig) -> None:
        self.fields: tuple[str, ...] = tuple(config.fields)
        self.names: frozenset[str] = frozenset(config.fields)
        self.free_text: tuple[str, ...] = tuple(f for f in FREE_TEXT_FIELDS if f in self.names)
        """The allow-listed fields the echo guard checks."""

    def __call__(self, event: dict[str, Any], out: Draft) -> str | None:
        fields = out.fields
        out.fields = {name: fields[name] for name in self.fields if fields.get(name) is not None}
        return None

    def build(
        self, candidate: Mapping[str, Any], *, identifiers: Sequence[str] = ()
    ) -> tuple[dict[str, Any], list[str]]:
        """The output event, and the free-text fields the echo guard changed or removed."""
        out = {name: candidate[name] for name in self.fields if candidate.get(name) is not None}
        return out, self.guard(out, echo_needles(identifiers))

    def guard(self, out: dict[str, Any], needles: Sequence[str]) -> list[str]:
        """Remove `needles` (from `echo_needles`) from `out`'s free-text fields, in place.

        Returns the fields changed or removed (removed when an echo survives replacement).
        """
        touched: list[str] = []
        if needles:
            for name in self.free_text:
                value = out.get(name)
                if isinstance(value, str):
                    cleaned = strip_echoes(value, needles)
                    if cleaned is not value:
                        touched.append(name)
                        if cleaned is None:
                            del out[name]
                        else:
                            out[name] = cleaned
        return touched


class EchoGuard:
    """The chain's echo guard unit: none of the event's own identifiers (user id, cookie id,
    device id, ad id, MAC, IMEI, its IP as sent and canonical) survives in a free-text output
    field (URLs, referrer host, search terms), plain or percent-encoded.

    The units before it leave the free-text fields' casefolded views in the draft's
    haystack: an identifier found in none of them proves there is nothing to do, which is
    nearly every event; only then are the needles built and the fields rewritten.
    """

    def __init__(self, allowlist: Allowlist) -> None:
        self._allowlist = allowlist

    def __call__(self, event: dict[str, Any], out: Draft) -> str | None:
        haystack = out.haystack
        if not haystack:
            return None
        for needle in out.needles:
            if needle in haystack:
                out.echoed = self._allowlist.guard(out.fields, _event_needles(event, out))
                return None
        for name in out.present:
            value = event[name]
            if (
                isinstance(value, str)
                and len(value) >= ECHO_MIN_LENGTH
                and value.casefold() in haystack
            ):
                out.echoed = self._allowlist.guard(out.fields, _event_needles(event, out))
                return None
        return None


def _event_needles(event: Mapping[str, Any], out: Draft) -> list[str]:
    """The echo guard's needles: the event's identifiers (`present` is in the order of
    `IDENTIFIER_FIELDS`, the order the guard replaces them in), then the IP's."""
    present = out.present
    found = echo_needles(value for name in present if isinstance(value := event[name], str))
    found += out.needles
    return found
