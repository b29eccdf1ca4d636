"""The one canonical form of untrusted text (`anonymizers.canonical`)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anonymizers.canonical import MAX_DECODE_ROUNDS, UNDECODABLE, canonical, compact


def _nested_escape(text: str, rounds: int) -> str:
    for _ in range(rounds):
        text = text.replace("%", "%25")
    return text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("Shoes", "shoes", id="ascii-lowered"),
        pytest.param("", "", id="empty"),
        pytest.param("a%40b.com", "a@b.com", id="percent-once"),
        pytest.param("a%2540b.com", "a@b.com", id="percent-twice"),
        pytest.param(_nested_escape("a%40b", 5), "a@b", id="percent-six-rounds"),
        pytest.param("\uff21\uff20\uff22", "a@b", id="full-width"),
        pytest.param("a\ufe6bb", "a@b", id="small-commercial-at"),
        pytest.param("%EF%BC%A0", "@", id="encoded-full-width-at"),
        pytest.param("06\u200b12\u00ad34\u2060", "061234", id="format-characters-removed"),
        pytest.param("1\u20132\u22123", "1-2-3", id="dashes"),
        pytest.param("192\u3002168\uff611\u30021", "192.168.1.1", id="ideographic-full-stops"),
        pytest.param("a\u00a0b\tc", "a b c", id="white-space"),
        pytest.param("\u0660\u0666", "06", id="arabic-indic-digits"),
        pytest.param("STRASSE \u00df", "strasse ss", id="case-folded"),
        pytest.param("100%", "100%", id="lone-percent"),
        pytest.param("%zz", "%zz", id="not-an-escape"),
    ],
)
def test_canonical_table(raw: str, expected: str) -> None:
    """Decoded to a fixed point, NFKC, case-folded, invisible characters gone."""
    assert canonical(raw) == expected


def test_no_fixed_point_is_undecodable() -> None:
    """Text still decoding after the bounded rounds is given up, not passed on."""
    assert canonical(_nested_escape("a%40b", MAX_DECODE_ROUNDS + 1)) == UNDECODABLE


def test_compact_keeps_letters_and_digits() -> None:
    """The compact form drops every separator, encoding and case difference."""
    assert compact("6BA7B810-9DAD%2D11d1 80b4_00C04FD430C8") == "6ba7b8109dad11d180b400c04fd430c8"


@given(st.text(max_size=60))
def test_canonical_is_idempotent(text: str) -> None:
    """The canonical form of a canonical form is itself."""
    once = canonical(text)
    assert canonical(once) == once
