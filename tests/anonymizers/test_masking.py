"""The masked "before" side of preview examples (`anonymizers.masking`): identifiers, IP and
personal data never reach a report, the event's shape does."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anonymizers.masking import MASK, UNKNOWN_FIELDS, mask_event, mask_url

BASE = {"event_type": "page_view", "occurred_at": "2026-01-01T00:00:00Z", "gpc": True}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param(
            {"user_id": "u-4711", "event_id": "e-1", "cookie_id": "c-9"},
            {"user_id": "[user_id]", "event_id": "[event_id]", "cookie_id": "[cookie_id]"},
            id="valid-identifiers",
        ),
        pytest.param({"ip": "203.0.113.7"}, {"ip": "[ip]"}, id="ipv4"),
        pytest.param({"ip": "2001:db8::1"}, {"ip": "[ip]"}, id="ipv6"),
        pytest.param({"ip": "::ffff:192.0.2.1"}, {"ip": "[ip]"}, id="ipv4-mapped-ipv6"),
        pytest.param({"ip": "999.1"}, {"ip": "[ip]"}, id="malformed-ip"),
        pytest.param({"page_url": "http://[::1"}, {"page_url": MASK}, id="malformed-url"),
        pytest.param(
            {"page_url": None, "time_on_page_ms": 1200},
            {"page_url": None, "time_on_page_ms": 1200},
            id="none-and-numbers-kept",
        ),
        pytest.param({"search_terms": ""}, {"search_terms": MASK}, id="empty-terms"),
        pytest.param(
            {"shoe_size": "44", "alice@example.com": 1},
            {UNKNOWN_FIELDS: 2},
            id="unknown-fields-counted-not-named",
        ),
        pytest.param(
            {"page_url": "https://shop.example/rings?colour=gold&size=52#reviews"},
            {"page_url": "https://shop.example/rings?colour=…&size=…#…"},
            id="query-values-and-fragment",
        ),
    ],
)
def test_mask_event_table(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    """Identifiers and the IP become their field name, unreadable URLs a mask, query values
    and fragments an ellipsis, unknown fields a count; type, time and flags stay as sent."""
    assert mask_event({**BASE, **fields}) == {**BASE, **expected}


def test_identifiers_echoed_elsewhere_are_removed() -> None:
    """An identifier or IP repeated in a URL path, the user agent or another text field is
    replaced wherever it appears, case-insensitively."""
    masked = mask_event(
        {
            **BASE,
            "user_id": "Jean-Dupont-1984",
            "ip": "2001:db8::1",
            "page_url": "https://shop.example/u/jean-dupont-1984/orders",
            "user_agent": "Mozilla/5.0 (JEAN-DUPONT-1984)",
            "browser": "Firefox 2001:db8::1",
        }
    )
    text = repr(masked).casefold()
    assert "jean-dupont-1984" not in text and "2001:db8::1" not in text
    assert masked["page_url"].startswith("https://shop.example/u/") and "orders" in text
    assert masked["user_agent"].startswith("mozilla/5.0 (")


def test_mask_url_keeps_scheme_host_and_query_names() -> None:
    """Scheme, host and parameter names stay; every query value goes."""
    masked = mask_url("HTTPS://Shop.Example/a?q=bague&email=jean@example.fr", [])
    assert masked.startswith("https://shop.example/a?")
    assert "q=…" in masked and "email=…" in masked
    assert "bague" not in masked and "jean@example.fr" not in masked


@given(
    identifier=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=8, max_size=24),
    field=st.sampled_from(["page_url", "referrer_url", "link_url", "search_terms", "browser"]),
)
def test_no_identifier_survives_in_any_text_field(identifier: str, field: str) -> None:
    """Whatever the identifier and the field that echoes it, the masked event never holds it."""
    value = f"https://shop.example/p/{identifier}" if field.endswith("url") else identifier
    masked = mask_event({**BASE, "cookie_id": identifier, field: value})
    assert identifier not in repr(masked).casefold()


@pytest.mark.parametrize(
    ("fields", "secret"),
    [
        pytest.param(
            {"page_url": "https://shop.example/u/alice%40example.com/orders"},
            "alice@example.com",
            id="percent-encoded-email-in-path",
        ),
        pytest.param(
            {"page_url": "https://shop.example/u/alice%2540example.com"},
            "alice@example.com",
            id="double-encoded-email-in-path",
        ),
        pytest.param(
            {"user_agent": "Mozilla/5.0 (Linux; Android 14) bob.martin@example.org"},
            "bob.martin@example.org",
            id="email-in-user-agent",
        ),
        pytest.param(
            {"user_agent": "MyApp/1.0 (client 203.0.113.77)"}, "203.0.113.77", id="ip-in-user-agent"
        ),
        pytest.param(
            {"user_agent": "MyApp/1.0 imei=490154203237518"},
            "490154203237518",
            id="imei-in-user-agent",
        ),
    ],
)
def test_before_side_masked_by_the_detectors(fields: dict[str, Any], secret: str) -> None:
    """Personal data in a URL path (encoded) or the user agent never reaches the "before" side."""
    masked = repr(mask_event({**BASE, **fields}))
    assert secret not in masked and secret.split("@")[0] not in masked
