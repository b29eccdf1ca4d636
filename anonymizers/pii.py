"""Detect and redact personal data in free text: one detector for search terms and URL parts.

Finds e-mail addresses, IBANs (mod-97), MAC addresses, IPv4 and IPv6 addresses, UUIDs, card
numbers (Luhn), phone numbers (international `+33 6 12 34 56 78`, national with spaces, dots
or dashes, `(555) 123-4567`) and runs of 6 or more digits. Each is replaced by a typed marker
such as `[email]`. Detection errs on the side of redacting: a date like `12.05.2024` reads as
a phone number and goes, which costs a little analytic value and no privacy.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Final

EMAIL: Final = "[email]"
PHONE: Final = "[phone]"
CARD: Final = "[card]"
IBAN: Final = "[iban]"
IP: Final = "[ip]"
MAC: Final = "[mac]"
UUID: Final = "[uuid]"
NUMBER: Final = "[number]"
TOKEN: Final = "[token]"  # noqa: S105 (a redaction marker, not a secret)
IDENTIFIER: Final = "[id]"

DIGIT_RUN_MIN: Final = 6
"""A run of this many digits or more is redacted wherever it stands."""

_EMAIL_RE: Final = re.compile(r"[\w.%+\-]+@[\w\-]+(?:\.[\w\-]+)+", re.UNICODE)
_AT_SIGN_RE: Final = re.compile(r"\S*@\S*")
_IBAN_RE: Final = re.compile(
    r"\b[A-Za-z]{2}[0-9]{2}(?:[A-Za-z0-9]{11,30}|(?: [A-Za-z0-9]{4}){2,7}(?: [A-Za-z0-9]{1,4})?)\b"
)
_MAC_RE: Final = re.compile(r"\b[0-9A-Fa-f]{2}(?:([:\-])[0-9A-Fa-f]{2})(?:\1[0-9A-Fa-f]{2}){4}\b")
UUID_RE: Final = re.compile(
    r"\b[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\b"
)
_IPV6_RE: Final = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:\d+\.\d+\.\d+\.\d+|[0-9A-Fa-f]{0,4})(?![\w:]|\.\d)"
)
_IPV4_RE: Final = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.])")
# Digit groups joined by one separator, optionally led by + or 00 and an area code in ().
_NUMBER_RE: Final = re.compile(
    r"(?<![\w+])(?:\+|\b00)?(?:\(\d{1,5}\)[ .\-]?)?\d+(?:[ .\-/]\d+)*(?![\w])"
)
_SEPARATORS_RE: Final = re.compile(r"[^\d]")
_NON_DIGITS_RE: Final = re.compile(r"\D+")
_DIGIT_RUN_RE: Final = re.compile(rf"\d{{{DIGIT_RUN_MIN},}}")


def luhn_valid(digits: str) -> bool:
    """True when the digit string passes the Luhn check (card numbers, IMEIs)."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    """True for a structurally valid IBAN (15-34 characters, ISO 13616 mod-97 == 1)."""
    compact = candidate.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34 or not compact[:2].isalpha() or not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    numeric = "".join(str(int(char, 36)) for char in rearranged)
    return int(numeric) % 97 == 1


def _classify_number(match: re.Match[str]) -> str | None:
    text = match.group(0)
    digits = _SEPARATORS_RE.sub("", text)
    count = len(digits)
    grouped = count != len(text)
    international = text.startswith("+") or (text.startswith("00") and grouped)
    if 13 <= count <= 19 and luhn_valid(digits):
        return CARD
    if international and 7 <= count <= 15:
        return PHONE
    if grouped and 7 <= count <= 15 and not text.startswith(("-", ".", "/")):
        return PHONE
    if any(len(run) >= DIGIT_RUN_MIN for run in _NON_DIGITS_RE.split(text)):
        return NUMBER
    return None


def _sub_valid(
    pattern: re.Pattern[str], marker: str, check: Callable[[str], bool]
) -> Callable[[str, list[str]], str]:
    def apply(text: str, found: list[str]) -> str:
        def replace(match: re.Match[str]) -> str:
            if check(match.group(0)):
                found.append(marker)
                return marker
            return match.group(0)

        return pattern.sub(replace, text)

    return apply


def _is_ip(candidate: str) -> bool:
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True


def _always(_: str) -> bool:
    return True


def _numbers(text: str, found: list[str]) -> str:
    def replace(match: re.Match[str]) -> str:
        marker = _classify_number(match)
        if marker is None:
            return match.group(0)
        found.append(marker)
        return marker

    return _NUMBER_RE.sub(replace, text)


def _emails(text: str, found: list[str]) -> str:
    def replace(match: re.Match[str]) -> str:
        found.append(EMAIL)
        return EMAIL

    text = _EMAIL_RE.sub(replace, text)
    if "@" in text:
        # Fail closed on anything else around an @ (a half-typed or odd address).
        text = _AT_SIGN_RE.sub(replace, text)
    return text


_STAGES: Final = (
    _emails,
    _sub_valid(UUID_RE, UUID, _always),
    _sub_valid(_MAC_RE, MAC, _always),
    _sub_valid(_IPV6_RE, IP, _is_ip),
    _sub_valid(_IPV4_RE, IP, _is_ip),
    _sub_valid(_IBAN_RE, IBAN, iban_valid),
    _numbers,
    # Digit runs glued to letters ("order12345678") escape the number pattern's boundaries.
    _sub_valid(_DIGIT_RUN_RE, NUMBER, _always),
)


def might_contain_pii(text: str) -> bool:
    """False only when `text` has neither a digit nor an @ nor a colon: nothing to find."""
    if "@" in text or ":" in text:
        return True
    return any(char.isdigit() for char in text)


def redact(text: str) -> tuple[str, list[str]]:
    """`text` with every finding replaced by its marker, and the markers found (in order)."""
    found: list[str] = []
    if not might_contain_pii(text):
        return text, found
    for stage in _STAGES:
        text = stage(text, found)
    return text, found
