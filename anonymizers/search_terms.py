"""Search terms: normalise, then drop or redact personal data before any aggregation.

Normalising (the canonical form of `anonymizers.canonical`: percent-decoded to a fixed point,
NFKC, case-folded, invisible characters gone; then whitespace collapsed) makes full-width
"Shoes  " and "shoes" one term and turns full-width digits into the ASCII ones the detectors
see. Detection is
`anonymizers.pii`: e-mail addresses, phone numbers, Luhn-valid card numbers, IBANs
(mod-97), IP and MAC addresses, UUIDs and runs of 6+ digits.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

from anonymizers import pii
from anonymizers.allowlist import echo_haystack
from anonymizers.canonical import canonical
from anonymizers.memo import Memo
from anonymizers.outcome import Draft
from anonymizers.policy import SearchTermsConfig


def normalise(text: str) -> str:
    """The canonical form, runs of whitespace collapsed to one space, stripped."""
    return " ".join(canonical(text).split())


class SearchOutcome(NamedTuple):
    """Terms to output (None when dropped or empty) and what was done, for reports."""

    terms: str | None
    action: str | None


_NONE: Final = SearchOutcome(None, None)


# What the unit memoises per raw search terms: (output terms, action for reports, echo
# haystack).
_SearchEntry = tuple[str | None, str | None, str]
DEFAULT_CACHE_SIZE: Final = 65_536


class SearchTermScrubber:
    """The chain's search-terms unit: normalises and scrubs search terms per
    `SearchTermsConfig` (`on_pii`, `max_length`).

    As a unit it writes `search_terms` (when the output keeps them), the action for preview
    reports and the echo haystack; results are memoised by raw terms. `scrub(raw)` is the
    same as a value. Actions reported: `redacted`, `dropped_pii`, `dropped_too_long`, or
    None when clean.
    """

    def __init__(self, config: SearchTermsConfig, *, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        self._drop = config.on_pii == "drop"
        self._max_length = config.max_length
        self.memo: Memo[str, _SearchEntry] = Memo(self._entry, max_size=cache_size)
        self._table = self.memo.plain_table

    def __call__(self, event: dict[str, Any], out: Draft) -> str | None:
        terms = event.get("search_terms")
        if isinstance(terms, str):
            entry = self._table.get(terms)
            if entry is None:
                entry = self.memo.miss(terms)
            clean, out.search_action, haystack = entry
            if clean is not None:
                out.fields["search_terms"] = clean
                out.haystack = f"{out.haystack}\x00{haystack}"
        return None

    def _entry(self, terms: str) -> _SearchEntry:
        outcome = self.scrub(terms)
        haystack = "" if outcome.terms is None else echo_haystack(outcome.terms)
        return outcome.terms, outcome.action, haystack

    def scrub(self, raw: object) -> SearchOutcome:
        """The output terms of `raw` and what was done (not memoised)."""
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
