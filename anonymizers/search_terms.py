"""Search terms: normalise, then drop or redact personal data before any aggregation.

Normalising (NFKC, casefold, whitespace collapsed) makes full-width "Shoes  " and "shoes"
one term and turns full-width digits into the ASCII ones the detectors see. Detection is
`anonymizers.pii`: e-mail addresses, phone numbers, Luhn-valid card numbers, IBANs
(mod-97), IP and MAC addresses, UUIDs and runs of 6+ digits.
"""

from __future__ import annotations

import unicodedata
from typing import Final, NamedTuple

from anonymizers import pii
from anonymizers.policy import SearchTermsConfig


def normalise(text: str) -> str:
    """NFKC, casefold, collapse runs of whitespace to one space, strip."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


class SearchOutcome(NamedTuple):
    """Terms to output (None when dropped or empty) and what was done, for reports."""

    terms: str | None
    action: str | None


_NONE: Final = SearchOutcome(None, None)


class SearchTermScrubber:
    """Normalises and scrubs search terms per `SearchTermsConfig` (`on_pii`, `max_length`).

    Actions reported: `redacted`, `dropped_pii`, `dropped_too_long`, or None when clean.
    """

    def __init__(self, config: SearchTermsConfig) -> None:
        self._drop = config.on_pii == "drop"
        self._max_length = config.max_length

    def __call__(self, raw: object) -> SearchOutcome:
        if not isinstance(raw, str):
            return _NONE
        terms = normalise(raw)
        if not terms:
            return _NONE
        redacted, found = pii.redact(terms)
        action = None
        if found:
            if self._drop:
                return SearchOutcome(None, "dropped_pii")
            terms, action = redacted, "redacted"
        # Length is judged after redaction so a long card number alone does not drop a term.
        if len(terms) > self._max_length:
            return SearchOutcome(None, "dropped_too_long")
        return SearchOutcome(terms, action)
