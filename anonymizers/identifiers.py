"""One canonical form per identifier type, so that consent matches people, not strings.

Consent records, the consent gate, pseudonyms and erasure all compare identifiers through
`IdentifierForms.canonical`, so every spelling of one identifier is one subject:

- every type: surrounding whitespace removed (`str.strip`: Unicode white space), then
  Unicode NFC (a composed `é` and `e` + combining acute are one character);
- e-mail-like values (`local@domain.tld`, any type) and GUID-form values
  (`8-4-4-4-12` hex digits, as device ids, IDFA and GAID are written) are case-insensitive:
  case-folded (`str.casefold`, then NFC again);
- `mac` (hexadecimal): case-insensitive;
- `user_id`: also case-insensitive, unless the policy says user ids are case-sensitive
  (`identifiers.user_id_case_sensitive`); e-mail-like and GUID-form user ids stay
  case-insensitive either way;
- `cookie_id`, `device_id`, `ad_id`, `imei` of any other shape: case kept (opaque tokens).

`canonical(canonical(x)) == canonical(x)`, and the forms a policy-less writer applies
(`POLICY_FREE`: what every policy agrees on) never change what a policy's forms make of a value:
`forms.canonical(t, POLICY_FREE.canonical(t, x)) == forms.canonical(t, x)`.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = [
    "DEFAULT_FORMS",
    "POLICY_FREE",
    "IdentifierForms",
    "canonical_identifier",
    "canonicaliser",
]

_GUID: Final = re.compile(r"[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}")
# One "@" between a non-empty local part and a dotted domain, no white space: e-mail-like.
_EMAIL_LIKE: Final = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")


def _nfc(value: str) -> str:
    # ASCII is always NFC: skip the normalizer for the common case.
    return value if value.isascii() else unicodedata.normalize("NFC", value)


def _fold(value: str) -> str:
    return value.lower() if value.isascii() else unicodedata.normalize("NFC", value.casefold())


def _case_insensitive_shape(value: str) -> bool:
    return _GUID.fullmatch(value) is not None or _EMAIL_LIKE.fullmatch(value) is not None


def canonical_identifier(id_type: str, value: str, *, user_id_case_sensitive: bool) -> str:
    """The canonical form of identifier `value` of type `id_type` ("user_id"...), see module doc."""
    text = _nfc(value.strip())
    if id_type == "mac" or (id_type == "user_id" and not user_id_case_sensitive):
        return _fold(text)
    if _case_insensitive_shape(text):
        return _fold(text)
    return text


@dataclass(frozen=True, slots=True)
class IdentifierForms:
    """The canonicalisation a policy asks for (`identifiers.user_id_case_sensitive`).

    Hashable and compared by value, so equal forms share memos.
    """

    user_id_case_sensitive: bool = False

    def canonical(self, id_type: str, value: str) -> str:
        """The canonical form of `value` of type `id_type` under these forms."""
        return canonical_identifier(
            id_type, value, user_id_case_sensitive=self.user_id_case_sensitive
        )

    def of_type(self, id_type: str) -> Callable[[str], str]:
        """`canonical` for one type, as one shared object per forms and type (memo keys)."""
        return canonicaliser(self, id_type)


@functools.cache
def canonicaliser(forms: IdentifierForms, id_type: str) -> Callable[[str], str]:
    """`forms.canonical(id_type, ...)` as a function of the value; the same object for equal
    forms and type, so memos keyed by it are shared."""
    return functools.partial(
        canonical_identifier, id_type, user_id_case_sensitive=forms.user_id_case_sensitive
    )


DEFAULT_FORMS: Final = IdentifierForms()
"""The shipped policy's forms: user ids case-insensitive."""
POLICY_FREE: Final = IdentifierForms(user_id_case_sensitive=True)
"""What every policy's forms agree on (trim, NFC, fold e-mail-like and GUID-form values): for
writers that do not know the policy, such as `anonstream consent`."""
