"""Detect and redact personal data in free text: one detector per kind, for every caller.

`redact(text)` brings `text` to its canonical form (`anonymizers.canonical`: decoded, NFKC,
case-folded, invisible characters gone) and replaces each finding by a typed marker such as
`[email]`:

- e-mail addresses, also written `name (at) domain dot com`, `name [at] domain [dot] com` and
  the like (then the whole text goes), and anything else around an `@`;
- UUIDs and advertising ids (with or without dashes), MAC addresses (colons, dashes, dots,
  spaces or none);
- IPv6 addresses (checked by `ipaddress`), IPv4 addresses in any notation (dotted decimal,
  octal, hexadecimal, a single hex number, parts joined by dots, underscores or dashes);
- IBANs (checked by `python-stdnum`, or mod-97 for countries it does not know);
- numbers split by any separators (spaces, dots, dashes, slashes, commas, underscores,
  brackets): card numbers (Luhn, `python-stdnum`), phone numbers (`phonenumbers`, several
  countries' formats) and any 6 or more digits, also glued to letters.

Every pattern runs in linear time: on RE2 (`google-re2`, linear by construction), or on
Python's engine where the pattern is linear by construction (each match can start only where a
run starts, consecutive parts have disjoint classes) and RE2's cost per match would show; the
work per match is bounded by its length, so `redact` is linear (`test_linear_time.py` feeds
adversarial text at the schema's maximum sizes to every field). Detection errs on the side of
redacting: a date like `12.05.2024` reads as a phone number and goes, which costs a little
analytic value and no privacy.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Final

import phonenumbers
import re2
from stdnum import iban as stdnum_iban
from stdnum import luhn
from stdnum.iso7064 import mod_97_10

from anonymizers.canonical import UNDECODABLE, canonical

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
"""This many digits or more in one run (separators allowed) are redacted wherever they stand."""
PHONE_REGIONS: Final = ("FR", "US", "GB", "DE", "ES", "IT", "IN", "BR")
"""Countries whose national phone formats are tried on numbers written without `+` or `00`."""

# Python's engine, made linear by hand: a match may start only where its first run starts
# (the look-behind), and the classes of consecutive parts are disjoint, so each run of the
# text is scanned a bounded number of times; RE2 (linear by construction) for the others,
# where its higher cost per match does not add up.
_EMAIL_RE: Final = re.compile(r"(?<![\w.%+\-])[\w.%+\-]+@[\w\-]+(?:\.[\w\-]+)+")
_AT_SIGN_RE: Final = re.compile(r"(?<!\S)\S*@\S*")
# Spelled-out "at" and "dot", bracketed or between separators, read after every run of
# separators (white space, _ or -) became one space: each alternative has a bounded length.
_SEPARATOR_RUN_RE: Final = re.compile(r"[\s_\-]+")
_SPELLED_AT_RE: Final = re.compile(r" ?[(\[{<] ?(?:at|@) ?[)\]}>] ?| at | ?@ ?")
_SPELLED_DOT_RE: Final = re.compile(r" ?[(\[{<] ?(?:dot|\.) ?[)\]}>] ?| dot(?: |$)| ?\. ?")
_SPELLED_HINT_RE: Final = re2.compile(r"(?:^|[^a-z])at(?:$|[^a-z])|@")
UUID_RE: Final = re2.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
HEX_TOKEN_MIN: Final = 16
"""A run of this many hex digits or more (a UUID or ad id without dashes, a hash) is a token."""
_HEX_TOKEN_RE: Final = re2.compile(rf"\b[0-9a-f]{{{HEX_TOKEN_MIN},}}\b")
_MAC: Final = (
    r"\b[0-9a-f]{2}(?:[:\-. _][0-9a-f]{2}){5}\b"
    r"|\b[0-9a-f]{4}[.:\-][0-9a-f]{4}[.:\-][0-9a-f]{4}\b|\b[0-9a-f]{12}\b"
)
_MAC_RE: Final = re2.compile(_MAC)
_IPV6_RE: Final = re2.compile(r"(?:[0-9a-f]{0,4}:){2,7}(?:\d+\.\d+\.\d+\.\d+|[0-9a-f]{0,4})")
IPV6_SURE_COLONS: Final = 5
"""A run of hex groups with this many colons is redacted as an address even if malformed."""
_IPV4_PART: Final = r"(?:0x[0-9a-f]*|[0-9]+)"
_IPV4_RE: Final = re.compile(rf"(?<![0-9]){_IPV4_PART}(?:[._\-]{_IPV4_PART})+|0x[0-9a-f]{{7,8}}")
_IPV4_SPLIT_RE: Final = re.compile(r"[._\-]")
_IBAN_RE: Final = re2.compile(r"\b[a-z]{2}[0-9]{2}(?:[ \-_.,/]?[a-z0-9]){11,40}")
# ISO 7064 value of each IBAN character (a letter counts as two digits) and 10 ** its digits.
_IBAN_VALUES: Final = {
    c: (int(c, 36), 10 if int(c, 36) < 10 else 100) for c in "0123456789abcdefghijklmnopqrstuvwxyz"
}
_IBAN_MIN: Final = 15
_IBAN_MAX: Final = 34
# At least DIGIT_RUN_MIN digits joined by up to three separators at a time, optionally led
# by + or a bracket: one candidate number, whatever its spacing.
_NUMBER_RE: Final = re.compile(
    rf"\+?\(?\d(?:[ .\-/,_()]{{0,3}}\d){{{DIGIT_RUN_MIN - 1},}}", re.ASCII
)
_NON_DIGITS_RE: Final = re.compile(r"\D+", re.ASCII)
_DIGIT_RUN_RE: Final = re.compile(rf"\d{{{DIGIT_RUN_MIN},}}", re.ASCII)
# Digits, @, colons, the word "at" and MAC addresses written in letters only.
_MAYBE_PII_RE: Final = re2.compile(rf"[0-9@:]|(?:^|[^a-z])at(?:$|[^a-z])|{_MAC}")

_Stage = Callable[[str, list[str]], str]


def luhn_valid(digits: str) -> bool:
    """True when the digit string passes the Luhn check (card numbers, IMEIs)."""
    return digits.isdigit() and luhn.is_valid(digits)


def iban_valid(candidate: str) -> bool:
    """True for a structurally valid IBAN (15-34 characters, ISO 13616 mod-97 == 1).

    A country `python-stdnum` knows must also have its length and format; any other country
    code only the generic checks (fail closed: unknown countries are still redacted).
    """
    compact = "".join(candidate.split()).upper()
    if not _IBAN_MIN <= len(compact) <= _IBAN_MAX or not compact.isalnum():
        return False
    if not compact[:2].isalpha() or not compact[2:4].isdigit():
        return False
    if stdnum_iban.is_valid(compact):
        return True
    return mod_97_10.is_valid(compact[4:] + compact[:4])


def _is_phone(text: str, digits: str) -> bool:
    """True when `phonenumbers` finds a possible number in `digits` (`text` as written)."""
    candidates: list[tuple[str, str | None]]
    if text.startswith("+") or digits.startswith("00"):
        candidates = [("+" + digits.removeprefix("00"), None)]
    else:
        candidates = [(digits, region) for region in PHONE_REGIONS]
    for number, region in candidates:
        try:
            parsed = phonenumbers.parse(number, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_possible_number(parsed):
            return True
    return False


def _classify_number(text: str) -> str | None:
    digits = _NON_DIGITS_RE.sub("", text)
    count = len(digits)
    if 13 <= count <= 19 and luhn_valid(digits):
        return CARD
    # A bare run of digits reads as a number (an order id); grouped or international, a phone.
    if 7 <= count <= 15 and count != len(text) and _is_phone(text, digits):
        return PHONE
    if count >= DIGIT_RUN_MIN:
        return NUMBER
    return None


def _ipv4_part(part: str) -> int | None:
    """The value of one inet_aton part (decimal, 0-led octal, 0x hex), None if malformed."""
    if part.startswith("0x"):
        return int(part[2:], 16) if 0 < len(part) - 2 <= 8 else (0 if part == "0x" else None)
    if len(part) > 1 and part.startswith("0"):
        return int(part, 8) if len(part) <= 12 and set(part) <= set("01234567") else None
    return int(part) if len(part) <= 10 else None


def _ipv4_quad(parts: list[str]) -> bool:
    values = [_ipv4_part(p) for p in parts]
    return all(v is not None and v <= 255 for v in values)


def _is_ipv4_run(run: str) -> bool:
    """True when a run of numbers joined by . _ or - is, or holds, an IPv4 address.

    Four consecutive parts of at most 255 each (any notation) make an address. Two or three
    parts, or one, count (as inet_aton reads them) only when a part is written in hex or
    octal, so that version numbers like `2.4.1` stay.
    """
    if "0" not in run and run.count(".") + run.count("_") + run.count("-") < 3:
        return False  # under four parts and none in hex or octal: the common case, no split
    parts = _IPV4_SPLIT_RE.split(run)
    parts = [p for p in parts if p]
    if len(parts) >= 4:
        if (
            len(parts) > 4
            and sum(len(p) for p in parts) >= DIGIT_RUN_MIN
            and run.isascii()
            and (all(p.isdigit() for p in parts))
        ):
            return False  # a long dotted number (a phone, a date): the number stage takes it
        return any(_ipv4_quad(parts[i : i + 4]) for i in range(len(parts) - 3))
    unusual = [p for p in parts if p.startswith("0x") or (len(p) > 1 and p.startswith("0"))]
    if not unusual:
        return False
    if len(parts) == 1:
        return parts[0].startswith("0x") and len(parts[0]) >= 9
    values = [_ipv4_part(p) for p in parts]
    if any(v is None for v in values):
        return False
    head = [v for v in values[:-1] if v is not None]
    last = values[-1]
    return all(v <= 255 for v in head) and last is not None and last < 256 ** (5 - len(parts))


def _mixes_digits_and_hex_letters(text: str) -> bool:
    return _has_hex_letter(text) and any(c.isdigit() for c in text)


def _has_hex_letter(text: str) -> bool:
    return any(c in "abcdef" for c in text)


def _ipv6_found(candidate: str) -> bool:
    if candidate.count(":") >= IPV6_SURE_COLONS:
        return True
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


def _sub_checked(
    pattern: re2._Regexp | re.Pattern[str], marker: str, check: Callable[[str], bool] | None = None
) -> _Stage:
    """A stage replacing each match of `pattern` that passes `check` (all when None)."""

    def apply(text: str, found: list[str]) -> str:
        def replace(match: re2._Match | re.Match[str]) -> str:
            value: str = match.group(0)
            if check is None or check(value):
                found.append(marker)
                return marker
            return value

        result: str = pattern.sub(replace, text)
        return result

    return apply


def _emails(text: str, found: list[str]) -> str:
    if _SPELLED_HINT_RE.search(text) and ("." in text or "dot" in text):
        spelled = _SEPARATOR_RUN_RE.sub(" ", text)
        spelled = _SPELLED_DOT_RE.sub(".", _SPELLED_AT_RE.sub("@", spelled))
        if spelled != text and _EMAIL_RE.search(spelled):
            found.append(EMAIL)
            return EMAIL  # where it stands in `text` is unclear: the whole text goes
    if "@" in text:
        text = _sub_checked(_EMAIL_RE, EMAIL)(text, found)
        # Fail closed on anything else around an @ (a half-typed or odd address).
        text = _sub_checked(_AT_SIGN_RE, EMAIL)(text, found)
    return text


def _iban_ends(value: str) -> int:
    """The end (in `value`) of the longest IBAN `value` starts with, or -1.

    Each prefix of 15-34 letters and digits is tried by ISO 7064 mod 97-10 in one pass (the
    remainder carried from one prefix to the next), so a candidate costs its length; only a
    prefix that passes is checked in full by `iban_valid`.
    """
    chars: list[str] = []
    ends: list[int] = []
    for position, char in enumerate(value):
        if char.isascii() and char.isalnum():
            chars.append(char)
            ends.append(position + 1)
            if len(chars) == _IBAN_MAX:
                break
    if len(chars) < _IBAN_MIN:
        return -1
    tail = "".join(str(_IBAN_VALUES[c.lower()][0]) for c in chars[:4])
    shift, tail_value = 10 ** len(tail), int(tail)
    remainder = 0
    best = -1
    for count, char in enumerate(chars[4:], start=5):
        number, scale = _IBAN_VALUES[char.lower()]
        remainder = (remainder * scale + number) % 97
        if (
            count >= _IBAN_MIN
            and (remainder * shift + tail_value) % 97 == 1
            and iban_valid("".join(chars[:count]))
        ):
            best = ends[count - 1]
    return best


def _ibans(text: str, found: list[str]) -> str:
    def replace(match: re2._Match) -> str:
        value: str = match.group(0)
        end = _iban_ends(value)
        if end < 0:
            return value
        found.append(IBAN)
        return IBAN + value[end:]

    result: str = _IBAN_RE.sub(replace, text)
    return result


def _numbers(text: str, found: list[str]) -> str:
    def replace(match: re.Match[str]) -> str:
        value: str = match.group(0)
        marker = _classify_number(value)
        if marker is None:
            return value
        found.append(marker)
        return marker

    result: str = _NUMBER_RE.sub(replace, text)
    return result


_STAGES: Final[tuple[_Stage, ...]] = (
    _emails,
    _sub_checked(UUID_RE, UUID),
    _ibans,
    _sub_checked(_HEX_TOKEN_RE, TOKEN, _mixes_digits_and_hex_letters),
    # MAC addresses in digits only are numbers, which the number stage redacts (a card
    # number's groups would read as a dotted MAC).
    _sub_checked(_MAC_RE, MAC, _has_hex_letter),
    _sub_checked(_IPV6_RE, IP, _ipv6_found),
    _sub_checked(_IPV4_RE, IP, _is_ipv4_run),
    _numbers,
    # Digit runs glued to letters ("order12345678") escape the number pattern's grouping.
    _sub_checked(_DIGIT_RUN_RE, NUMBER),
)


def might_contain_pii(text: str) -> bool:
    """False only when canonical `text` has no digit, @, colon, word "at" or MAC address."""
    return _MAYBE_PII_RE.search(text) is not None


def redact(text: str) -> tuple[str, list[str]]:
    """The canonical form of `text` with every finding replaced by its marker, and the
    markers found (in order). Text that cannot be decoded is `UNDECODABLE` as a whole."""
    found: list[str] = []
    text = canonical(text)
    if text == UNDECODABLE:
        return text, [UNDECODABLE]
    if not might_contain_pii(text):
        return text, found
    for stage in _STAGES:
        text = stage(text, found)
    return text, found
