"""Independent detectors of personal data in text and URLs, for checking the generator's tags.

Written from the formats' definitions (Luhn, ISO 13616 mod 97, French numbering plan),
not from the generator's code.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import unquote

KINDS = ("email", "phone", "card", "iban", "ip", "digits")

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
PHONE_FR = re.compile(r"(?<!\d)(?<!\d )(?:\+33 ?|\b0|phone=33)[67](?:[ .-]?\d{2}){4}(?![ .-]?\d)")
CARD = re.compile(r"\b\d(?:[ -]?\d){12,18}\b")
IBAN_FR = re.compile(r"\bFR\d{2}(?: ?[0-9A-Z]{4}){5} ?[0-9A-Z]{3}\b")
DIGIT_RUN = re.compile(r"\d{10,}")
IP_CANDIDATE = re.compile(r"[0-9a-fA-F:.]{7,}")
TOKEN = re.compile(r"session=[0-9a-f]{32}|/reinitialiser-mot-de-passe/[0-9a-f]{48}")
SHOP_ADDRESS = "service-client@bijoux-example.fr"  # the shop's own address is not PII


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of a digit string is 0 mod 10."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    """ISO 13616: move the first 4 chars to the end, letters to 10..35, mod 97 == 1."""
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def pii_kinds(text: str) -> set[str]:
    """Kinds of personal data found in free text. Structured kinds are matched first and
    cut out, so that e.g. 16 digits inside an IBAN are not also taken for a card."""
    found = set()
    text = text.replace(SHOP_ADDRESS, "")
    for kind, pattern, valid in (
        ("email", EMAIL, lambda m: True),
        ("iban", IBAN_FR, lambda m: iban_valid(m.replace(" ", ""))),
        ("card", CARD, lambda m: len(_digits(m)) in (15, 16) and luhn_valid(_digits(m))),
        ("phone", PHONE_FR, lambda m: True),
        ("ip", IP_CANDIDATE, _is_ip),
        ("digits", DIGIT_RUN, lambda m: True),
    ):
        for match in pattern.findall(text):
            if valid(match):
                found.add(kind)
                text = text.replace(match, " ")
    return found


def _digits(text: str) -> str:
    return re.sub(r"[ -]", "", text)


def url_kinds(url: str) -> set[str]:
    """Kinds of personal data in a URL (decoded first), tokens included."""
    text = unquote(unquote(url))
    found = pii_kinds(text)
    if TOKEN.search(text):
        found.add("token")
    return found


def _is_ip(candidate: str) -> bool:
    try:
        ipaddress.ip_address(candidate.strip(".:"))
    except ValueError:
        return False
    return candidate.count(".") == 3 or candidate.count(":") >= 2
