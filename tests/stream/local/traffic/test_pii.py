"""Synthetic personal data: check digits and formats, against published examples."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.local.traffic import pii
from stream.local.traffic.randomness import Draws
from tests.stream.local.traffic.detectors import iban_valid, luhn_valid


@pytest.mark.parametrize(
    ("payload", "check"),
    [("7992739871", "3"), ("411111111111111", "1"), ("49015420323751", "8")],
    ids=["wikipedia-luhn-example", "visa-test-card", "wikipedia-imei-example"],
)
def test_luhn_check_digit_makes_the_number_valid(payload: str, check: str) -> None:
    """The check digit of published examples (Wikipedia's 79927398713, the Visa test card
    4111 1111 1111 1111, Wikipedia's IMEI 490154203237518)."""
    assert luhn_valid(payload + check)
    assert pii.luhn_check_digit(payload) == check


def test_rib_key_of_a_published_example() -> None:
    """RIB 30006 00001 12345678901 has key 89 (IBAN FR76 3000 6000 0112 3456 7890 189)."""
    assert pii.rib_key("30006", "00001", "12345678901") == "89"
    assert iban_valid("FR7630006000011234567890189")


@given(seed=st.integers(min_value=0, max_value=2**32))
def test_generated_numbers_are_valid(seed: int) -> None:
    """Cards and IMEIs pass Luhn, IBANs pass mod 97 and start FR76, MACs are 6 octets."""
    draws = Draws(seed)
    card = pii.card_number(draws)
    assert luhn_valid(card) and len(card) in (15, 16)
    imei = pii.imei(draws)
    assert luhn_valid(imei) and len(imei) == 15
    iban = pii.iban_fr(draws)
    assert iban_valid(iban) and iban.startswith("FR76") and len(iban) == 27
    assert pii.format_iban(iban, True).replace(" ", "") == iban
    assert len(pii.mac_address(draws).split(":")) == 6
    assert "@" in pii.email_address(draws)


@pytest.mark.parametrize(
    ("style", "expected"),
    [
        (0, "+33 6 12 34 56 78"),
        (1, "06.12.34.56.78"),
        (2, "06-12-34-56-78"),
        (3, "06 12 34 56 78"),
        (4, "0612345678"),
        (5, "+33612345678"),
    ],
)
def test_phone_formats(style: int, expected: str) -> None:
    """French phone numbers in the formats people type."""
    assert pii.format_phone("0612345678", style) == expected


@pytest.mark.parametrize(
    ("style", "expected"),
    [(0, "4970101234567890"), (1, "4970 1012 3456 7890"), (2, "4970-1012-3456-7890")],
)
def test_card_formats(style: int, expected: str) -> None:
    """Card numbers contiguous, spaced or dashed by groups of four."""
    assert pii.format_card("4970101234567890", style) == expected
