"""One canonical form of untrusted text, before any detector looks at it.

URLs, paths, referrers, link targets, search terms and user agents all reach the detectors
(`anonymizers.pii`) and the echo guard (`anonymizers.allowlist`) through `canonical`:

1. percent-decoding repeated to a fixed point, at most `MAX_DECODE_ROUNDS` rounds (text that
   still decodes after them is `UNDECODABLE`: fail closed, nothing of it is kept);
2. Unicode NFKC (the full-width and small forms of `@` and of digits become `@` and ASCII
   digits), then case folding; digits of other scripts become ASCII digits;
3. format and control characters removed (zero-width space, soft hyphen, joiners, bidi marks),
   every kind of white space made a plain space, every dash (U+2010 to U+2015, minus sign...)
   a `-` and the ideographic full stops (U+3002, U+FF61) a `.`.

Each round is linear in the text and the rounds are bounded, so `canonical` is linear. Plain
ASCII text without `%` (nearly every value) takes a fast path: it is only lower-cased.
`compact` is the canonical form with every character but letters and digits removed: what the
echo guard compares, so that no separator, encoding or case hides an identifier.

Pure: no I/O.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final
from urllib.parse import unquote

MAX_DECODE_ROUNDS: Final = 8
"""Percent-decoding rounds before text that still decodes is given up as `UNDECODABLE`."""
UNDECODABLE: Final = "[undecodable]"
"""What stands for text that does not reach a fixed point within `MAX_DECODE_ROUNDS`."""

_SPACE: Final = " "
_DASH: Final = "-"
_DOT: Final = "."
# Full stops NFKC leaves alone (U+FF61 becomes U+3002 under NFKC, which is mapped here).
_EXTRA_DOTS: Final = frozenset("\u3002\uff61\u2e3c")
# Minus signs are mathematical symbols (Sm), not dashes (Pd), but read as one.
_EXTRA_DASHES: Final = frozenset("\u2212\u2796\u2043")
_ESCAPE_RE: Final = re.compile(r"%[0-9A-Fa-f]{2}")
"""A percent-escape: without one, percent-decoding has nothing to do."""
# One character class, each match consumed whole: linear.
_NOT_ALNUM_RE: Final = re.compile(r"[\W_]+")


def _map_char(char: str) -> str:
    """One non-ASCII character of NFKC text in canonical form ('' when it goes)."""
    if char.isspace():
        return _SPACE
    category = unicodedata.category(char)
    if category in ("Cf", "Cc", "Co", "Cn", "Cs"):
        return ""
    if category == "Pd" or char in _EXTRA_DASHES:
        return _DASH
    if category == "Nd":
        return str(unicodedata.decimal(char))
    if char in _EXTRA_DOTS:
        return _DOT
    return char


def _unicode_round(text: str) -> str:
    """NFKC, case folding, and the character mapping of the module docstring (step 2, 3)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    if text.isascii():
        # ASCII control characters other than white space go; white space becomes a space.
        if text.isprintable():
            return text
        return "".join(c if c.isprintable() else (_SPACE if c.isspace() else "") for c in text)
    return "".join(_map_char(c) if not c.isascii() or not c.isprintable() else c for c in text)


def canonical(text: str) -> str:
    """`text` decoded to a fixed point and normalised (module docstring); `UNDECODABLE` when
    percent-decoding does not settle within `MAX_DECODE_ROUNDS` rounds. Idempotent."""
    if text.isascii() and "%" not in text and text.isprintable():
        return text.lower()
    for _ in range(MAX_DECODE_ROUNDS):
        escaped = "%" in text and _ESCAPE_RE.search(text) is not None
        decoded = _unicode_round(unquote(text, errors="replace") if escaped else text)
        if decoded == text:
            return text
        text = decoded
    return UNDECODABLE


def compact(text: str) -> str:
    """The canonical form of `text` with everything but letters and digits removed."""
    return _NOT_ALNUM_RE.sub("", canonical(text))
