# ruff: noqa: RUF001  (long literal tables of test data)
"""Search terms: normalisation and personal-data detection, drop or redact."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anonymizers.pii import iban_valid, luhn_valid
from anonymizers.policy import SearchTermsConfig
from anonymizers.search_terms import SearchTermScrubber, normalise

REDACT_CASES = [
    pytest.param("Red  Shoes ", "red shoes", None, id="valid-normalised"),
    pytest.param("ＳＨＯＥＳ　４２", "shoes 42", None, id="nfkc-fullwidth"),
    pytest.param("STRASSE Straße", "strasse strasse", None, id="casefold"),
    pytest.param(None, None, None, id="None"),
    pytest.param("", None, None, id="empty"),
    pytest.param("   \t ", None, None, id="blank"),
    pytest.param(12, None, None, id="not-a-string"),
    pytest.param("contact alice.smith@example.com", "contact [email]", "redacted", id="email"),
    pytest.param("bob@localhost please", "[email] please", "redacted", id="email-no-dot"),
    pytest.param("call +33 6 12 34 56 78", "call [phone]", "redacted", id="phone-intl-spaces"),
    pytest.param("0044 20 7183 8750", "[phone]", "redacted", id="phone-00"),
    pytest.param("06.12.34.56.78 plumber", "[phone] plumber", "redacted", id="phone-dots"),
    pytest.param("555-123-4567", "[phone]", "redacted", id="phone-dashes"),
    pytest.param("(555) 123-4567", "[phone]", "redacted", id="phone-parens"),
    pytest.param("4111 1111 1111 1111", "[card]", "redacted", id="card-spaces"),
    pytest.param("4111-1111-1111-1111", "[card]", "redacted", id="card-dashes"),
    pytest.param("card 5500005555555559", "card [card]", "redacted", id="card-compact"),
    pytest.param("FR76 3000 6000 0112 3456 7890 189", "[iban]", "redacted", id="iban-spaces"),
    pytest.param(
        "de89370400440532013000 transfer", "[iban] transfer", "redacted", id="iban-compact"
    ),
    pytest.param("router 192.168.1.1", "router [ip]", "redacted", id="ipv4"),
    pytest.param("2001:db8::1 setup", "[ip] setup", "redacted", id="ipv6"),
    pytest.param("::ffff:81.2.69.160", "[ip]", "redacted", id="ipv4-mapped"),
    pytest.param("mac 00:1a:2b:3c:4d:5e", "mac [mac]", "redacted", id="mac"),
    pytest.param("order 123456", "order [number]", "redacted", id="six-digits"),
    pytest.param("order12345678", "order[number]", "redacted", id="digits-glued"),
    pytest.param("imei 490154203237518", "imei [card]", "redacted", id="imei-luhn"),
    pytest.param("iphone 15 pro 256gb", "iphone 15 pro 256gb", None, id="model-kept"),
    pytest.param("size 42 shoes", "size 42 shoes", None, id="small-number-kept"),
    pytest.param("12345", "12345", None, id="five-digits-kept"),
]


@pytest.mark.parametrize(("raw", "expected", "action"), REDACT_CASES)
def test_redact(raw: object, expected: str | None, action: str | None) -> None:
    """Personal data in search terms is replaced by typed markers."""
    outcome = SearchTermScrubber(SearchTermsConfig(on_pii="redact")).scrub(raw)
    assert (outcome.terms, outcome.action) == (expected, action)


@pytest.mark.parametrize(("raw", "expected", "action"), REDACT_CASES)
def test_drop(raw: object, expected: str | None, action: str | None) -> None:
    """With on_pii = drop, terms holding personal data go entirely; clean terms stay."""
    outcome = SearchTermScrubber(SearchTermsConfig(on_pii="drop")).scrub(raw)
    if action == "redacted":
        assert (outcome.terms, outcome.action) == (None, "dropped_pii")
    else:
        assert outcome.terms == expected


def test_too_long_dropped() -> None:
    """Terms longer than max_length after normalising are dropped."""
    unit = SearchTermScrubber(SearchTermsConfig(max_length=10))
    assert unit.scrub("abcdefghij").terms == "abcdefghij"
    assert tuple(unit.scrub("abcdefghijk")) == (None, "dropped_too_long")


def test_normalise() -> None:
    """NFKC, casefold, whitespace collapsed."""
    assert normalise("  Ｈello\u00a0\u2003World\n") == "hello world"


def _luhn_complete(prefix: str) -> str:
    """Appends the check digit (computed here, independently of the code under test)."""
    digits = [int(c) for c in prefix]
    total = 0
    for index, digit in enumerate(reversed(digits)):
        doubled = digit * 2 if index % 2 == 0 else digit
        total += doubled - 9 if doubled > 9 else doubled
    return prefix + str((10 - total % 10) % 10)


def _iban(country: str, bban: str) -> str:
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    check = 98 - int(numeric) % 97
    return f"{country}{check:02d}{bban}"


@given(st.from_regex(r"4[0-9]{14}", fullmatch=True), st.sampled_from([" ", "-", ""]))
def test_generated_cards_redacted(prefix: str, separator: str) -> None:
    """Any Luhn-valid 16-digit card number, grouped or not, is redacted."""
    card = _luhn_complete(prefix)
    assert luhn_valid(card)
    grouped = separator.join(card[i : i + 4] for i in range(0, 16, 4))
    outcome = SearchTermScrubber(SearchTermsConfig()).scrub(f"pay {grouped} now")
    assert outcome.terms is not None
    assert card not in outcome.terms.replace(" ", "").replace("-", "")
    assert not any(ch.isdigit() for ch in outcome.terms)


@given(
    st.sampled_from(["FR", "DE", "GB", "ES", "NL"]),
    st.from_regex(r"[0-9A-Z]{12,26}", fullmatch=True),
)
def test_generated_ibans_redacted(country: str, bban: str) -> None:
    """Any mod-97-valid IBAN, compact or in groups of four, is redacted."""
    iban = _iban(country, bban)
    assert iban_valid(iban)
    for text in (iban, " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))):
        outcome = SearchTermScrubber(SearchTermsConfig()).scrub(f"virement {text}")
        assert outcome.terms is not None
        assert iban.casefold() not in outcome.terms.replace(" ", "")


@given(st.emails())
def test_generated_emails_redacted(email: str) -> None:
    """Any e-mail address is redacted."""
    outcome = SearchTermScrubber(SearchTermsConfig()).scrub(f"mail {email} x")
    assert outcome.terms is None or (
        "@" not in outcome.terms and email.casefold() not in outcome.terms
    )


@given(
    st.integers(min_value=6, max_value=30).flatmap(
        lambda n: st.from_regex(rf"[0-9]{{{n}}}", fullmatch=True)
    )
)
def test_long_digit_runs_redacted(digits: str) -> None:
    """Six or more digits in a row never survive."""
    outcome = SearchTermScrubber(SearchTermsConfig()).scrub(f"ref {digits}")
    assert outcome.terms is not None and digits not in outcome.terms


@given(st.ip_addresses())
def test_ip_addresses_redacted(address: object) -> None:
    """IPv4 and IPv6 addresses in search terms are redacted."""
    outcome = SearchTermScrubber(SearchTermsConfig()).scrub(f"host {address} down")
    assert outcome.terms is not None and str(address) not in outcome.terms
