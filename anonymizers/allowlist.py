"""The allowlist: the anonymized event holds only the fields the policy names.

Built from `output.fields`; unknown fields never pass because the output is *constructed*
from the allowlist, never copied from the input. Before that, the echo guard removes any
of the event's own identifiers (user id, cookie id, device id, ad id, MAC, IMEI, IP) that a
free-text field (URLs, referrer host, search terms) still holds, in any spelling: fields and
identifiers are compared in their compact canonical form (`anonymizers.canonical.compact`:
decoded, NFKC, case-folded, every separator removed), so case, percent-encoding, `+` or `%20`
for a space, GUIDs and ad ids without dashes and MACs in any notation do not hide one; an IP
is also looked for in its other notations (hex, octal, one number, IPv4-mapped IPv6...). An
identifier shorter than `ECHO_MIN_LENGTH` is looked for as a whole path segment or word only.
It is a last line of defence behind the URL and search-term scrubbers.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from anonymizers import pii
from anonymizers.canonical import canonical, compact
from anonymizers.outcome import Draft
from anonymizers.policy import OutputConfig

FREE_TEXT_FIELDS: Final = ("page_url", "link_url", "referrer_host", "search_terms")
"""Output fields whose text comes from the input and may echo an identifier."""
ECHO_MIN_LENGTH: Final = 4
"""Identifiers whose compact form is shorter than this match whole segments or words only
(inside longer text they would match anywhere)."""

_SEGMENT_SPLIT_RE: Final = re.compile(r"[/?&=#;,\s]+")
_WORD_SPLIT_RE: Final = re.compile(r"[\W_]+")
_WHOLE: Final = "\x01"
_ASCII_SEPARATORS_RE: Final = re.compile(r"[^a-z0-9]+")


def echo_haystack(value: str) -> str:
    """What the echo guard searches in `value`: its compact form, then its segments' and
    words' compact forms each between \\x01 (for short identifiers). Letters and digits only
    but for those delimiters, so haystacks of several fields may be NUL-joined."""
    text = canonical(value)
    pieces = {_WORD_SPLIT_RE.sub("", p) for p in _SEGMENT_SPLIT_RE.split(text)}
    pieces.update(_WORD_SPLIT_RE.split(text))
    pieces.discard("")
    whole = _WHOLE.join(sorted(pieces))
    return f"{_WORD_SPLIT_RE.sub('', text)}\x00{_WHOLE}{whole}{_WHOLE}"


def echo_found(needle: str, haystack: str) -> bool:
    """True when `needle` (from `echo_needles`) is in `haystack` (from `echo_haystack`)."""
    if len(needle) >= ECHO_MIN_LENGTH:
        return needle in haystack
    return f"{_WHOLE}{needle}{_WHOLE}" in haystack


# Each octet's spellings in the dotted notations (decimal, zero-padded, octal, hex padded and
# not): an IP's needles are joins of four look-ups (a new IP costs its notations once).
_OCTET_SPELLINGS: Final = tuple(
    tuple(table[o] for o in range(256))
    for table in (
        [str(o) for o in range(256)],
        [f"{o:03d}" for o in range(256)],
        [f"0{o:o}" for o in range(256)],
        [f"0x{o:02x}" for o in range(256)],
        [f"0x{o:x}" for o in range(256)],
    )
)


def _ipv4_needles(octets: Sequence[int]) -> list[str]:
    a, b, c, d = octets
    number = (a << 24) | (b << 16) | (c << 8) | d
    return [
        *(table[a] + table[b] + table[c] + table[d] for table in _OCTET_SPELLINGS),
        f"0x{number:08x}",
        f"{number:08x}",  # also the tail of the IPv4-mapped IPv6 address, exploded
        f"{number:x}",
        str(number),
        f"ffff{number >> 16:x}{number & 0xFFFF:x}",
    ]


def _ip_needles(value: str) -> list[str]:
    """The compact forms of `value`'s notations when it is an IP address (none otherwise):
    built here without separators, as `compact` would leave them."""
    text = value.strip()
    parts = text.split(".")
    if len(parts) == 4 and all(p.isdigit() and p.isascii() and len(p) <= 3 for p in parts):
        octets = [int(p) for p in parts]
        if all(o <= 255 for o in octets):
            return _ipv4_needles(octets)  # dotted decimal, the usual case: no parsing
    # An IPv6 zone ("fe80::1%eth0") is no part of the address's notations, and Python 3.11's
    # IPv6Address with one raises on `.exploded`: the address is looked for without it.
    try:
        address = ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return []
    if isinstance(address, ipaddress.IPv4Address):
        return _ipv4_needles(address.packed)
    needles = [address.exploded.replace(":", ""), address.compressed.replace(":", "")]
    embedded = address.ipv4_mapped or address.sixtofour
    if embedded is None and address.teredo is not None:
        embedded = address.teredo[1]
    if embedded is not None:
        needles += _ipv4_needles(embedded.packed)
    return needles


def echo_needles(identifiers: Iterable[str], *, ips: Iterable[str] = ()) -> list[str]:
    """The identifiers and IP addresses the echo guard looks for, compact (see the module
    docstring); each of `ips` brings its other notations too."""
    needles: list[str] = []
    for identifier in identifiers:
        needle = compact(identifier)
        if needle and needle not in needles:
            needles.append(needle)
    for ip in ips:
        for needle in (compact(ip), *_ip_needles(ip)):
            if needle and needle not in needles:
                needles.append(needle)
    return needles


def _compact_map(text: str) -> tuple[str, list[int]]:
    """`text`'s letters and digits case-folded, and the index in `text` of each of them."""
    chars: list[str] = []
    index: list[int] = []
    if text.isascii():
        lowered = text.lower()
        index = [position for position, char in enumerate(lowered) if char.isalnum()]
        return "".join([lowered[position] for position in index]), index
    for position, char in enumerate(text):
        if char.isalnum():
            folded = char.casefold()
            chars.append(folded)
            index.extend([position] * len(folded))
    return "".join(chars), index


def _is_alnum_at(text: str, position: int) -> bool:
    return 0 <= position < len(text) and text[position].isalnum()


def _echo_spans(text: str, needles: Sequence[str]) -> list[tuple[int, int]]:
    """Where in `text` the needles stand, separators between their characters included; a
    short needle only where it is a whole segment or word."""
    folded, index = _compact_map(text)
    spans: list[tuple[int, int]] = []
    for needle in needles:
        whole = len(needle) < ECHO_MIN_LENGTH
        start = folded.find(needle)
        while start != -1:
            end = start + len(needle)
            first, last = index[start], index[end - 1] + 1
            if whole and (_is_alnum_at(text, first - 1) or _is_alnum_at(text, last)):
                start = folded.find(needle, start + 1)
                continue
            spans.append((first, last))
            start = folded.find(needle, end)
    return spans


def _replace_echoes(text: str, needles: Sequence[str]) -> str:
    spans = sorted(_echo_spans(text, needles))
    if not spans:
        return text
    pieces: list[str] = []
    cursor = 0
    for first, last in spans:
        if last <= cursor:
            continue
        if first >= cursor:
            pieces.append(text[cursor:first])
            pieces.append(pii.IDENTIFIER)
        cursor = last
    pieces.append(text[cursor:])
    return "".join(pieces)


def strip_echoes(value: str, needles: Sequence[str]) -> str | None:
    """`value` with every needle (identifiers; `echo_needles` gives them compact, with an IP's
    notations) replaced by "[id]".

    Replaced where it stands in `value` when it can be; otherwise in `value`'s canonical form
    (the result is then that form). None when a needle survives both (fail closed).
    """
    haystack = echo_haystack(value)
    hits = [c for n in needles if (c := compact(n)) and echo_found(c, haystack)]
    if not hits:
        return value
    canonical_value = canonical(value)
    for text in (value,) if canonical_value == value else (value, canonical_value):
        cleaned = _replace_echoes(text, hits)
        haystack = echo_haystack(cleaned)
        if not any(echo_found(n, haystack) for n in hits):
            return cleaned
    return None


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
    device id, ad id, MAC, IMEI, its IP in every notation) survives in a free-text output
    field (URLs, referrer host, search terms), in any spelling (module docstring).

    The units before it leave the free-text fields' echo haystacks in the draft: an
    identifier found in none of them proves there is nothing to do, which is nearly every
    event; only then are the fields rewritten. The IP's notations (`ip_probes`) come from the
    draft: the IP unit, always earlier in the chain, memoises them with the rest of its entry.
    """

    def __init__(self, allowlist: Allowlist) -> None:
        self._allowlist = allowlist

    def __call__(self, event: dict[str, Any], out: Draft) -> str | None:
        haystack = out.haystack
        if not haystack:
            return None
        # Identifiers mostly differ from event to event: their compact form is computed here
        # (ASCII: lower-cased, separators removed); the IP's notations are in the draft.
        for name in out.present:
            value = event[name]
            if isinstance(value, str):
                if value.isascii() and "%" not in value:
                    needle = _ASCII_SEPARATORS_RE.sub("", value.lower())
                else:
                    needle = compact(value)
                if needle and echo_found(needle, haystack):
                    self._guard(event, out)
                    return None
        for probe in out.needles:
            if probe in haystack:
                self._guard(event, out)
                return None
        return None

    def _guard(self, event: dict[str, Any], out: Draft) -> None:
        # `present` is in the order of IDENTIFIER_FIELDS, the order the guard replaces them in.
        values = [v for name in out.present if isinstance(v := event[name], str)]
        raw_ip = event.get("ip")
        needles = echo_needles(values, ips=[raw_ip] if isinstance(raw_ip, str) else [])
        out.echoed = self._allowlist.guard(out.fields, needles)


# What the echo guard memoises per raw identifier or IP: its needles, and the strings whose
# presence in a haystack is what `echo_found` tests (the needle, or a short one between
# delimiters).
_NeedleEntry = tuple[tuple[str, ...], tuple[str, ...]]


def _entry_of(needles: list[str]) -> _NeedleEntry:
    probes = tuple(n if len(n) >= ECHO_MIN_LENGTH else f"{_WHOLE}{n}{_WHOLE}" for n in needles)
    return tuple(needles), probes


def _ip_entry(raw_ip: str) -> _NeedleEntry:
    return _entry_of(echo_needles((), ips=(raw_ip,)))


def ip_probes(raw_ip: str) -> tuple[str, ...]:
    """What the echo guard looks for in the haystack for an event whose IP is `raw_ip`: every
    notation's compact form (short ones between delimiters)."""
    return _ip_entry(raw_ip)[1]
