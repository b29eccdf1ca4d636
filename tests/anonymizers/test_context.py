# ruff: noqa: E501  (long literal tables of test data)
"""Context reduction: browser/OS family and major, hardware class, language, time on page."""

from __future__ import annotations

from typing import Any

import pytest

from anonymizers.context import (
    ContextAnonymizer,
    clamp_time_on_page,
    parse_user_agent,
    primary_language,
)
from anonymizers.outcome import Draft
from anonymizers.policy import ContextConfig

UA_FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
UA_CASES = [
    pytest.param(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
        ("Chrome", 120, "Windows", 10, "desktop"),
        id="chrome-windows",
    ),
    pytest.param(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
        ("Edge", 120, "Windows", 10, "desktop"),
        id="edge",
    ),
    pytest.param(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
        ("Safari", 17, "iOS", 17, "mobile"),
        id="safari-iphone",
    ),
    pytest.param(
        "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/120.0.6099.119 Mobile/15E148 Safari/604.1",
        ("Chrome", 120, "iOS", 16, "tablet"),
        id="chrome-ipad",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
        ("Samsung Internet", 23, "Android", 14, "mobile"),
        id="samsung",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/116.0.0.0 Safari/537.36",
        ("Chrome", 116, "Android", 13, "tablet"),
        id="android-tablet",
    ),
    pytest.param(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
        ("Safari", 17, "macOS", 10, "desktop"),
        id="safari-mac",
    ),
    pytest.param(
        "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
        ("Firefox", 121, "Linux", None, "desktop"),
        id="firefox-linux",
    ),
    pytest.param(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 OPR/106.0.0.0",
        ("Opera", 106, "Windows", 10, "desktop"),
        id="opera",
    ),
    pytest.param(
        "Mozilla/5.0 (Windows NT 6.1; Trident/7.0; rv:11.0) like Gecko",
        ("Internet Explorer", 11, "Windows", 7, "desktop"),
        id="ie11",
    ),
    pytest.param(
        "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/116.0.0.0 Safari/537.36",
        ("Chrome", 116, "ChromeOS", None, "desktop"),
        id="chromeos",
    ),
    pytest.param(
        "Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/4.0 Chrome/76.0.3809.146 TV Safari/537.36",
        ("Samsung Internet", 4, "Linux", None, "tv"),
        id="smart-tv",
    ),
    pytest.param(
        "Mozilla/5.0 (PlayStation; PlayStation 5/2.26) AppleWebKit/605.1.15 (KHTML, like Gecko)",
        ("Other", None, "Other", None, "console"),
        id="console",
    ),
    pytest.param(
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        ("Other", None, "Other", None, "bot"),
        id="bot",
    ),
    pytest.param("garbage", ("Other", None, "Other", None, "other"), id="malformed"),
]


@pytest.mark.parametrize(("ua", "expected"), UA_CASES)
def test_user_agent_parsing(ua: str, expected: tuple[Any, ...]) -> None:
    """Common user agents reduce to family, major version and hardware class."""
    assert tuple(parse_user_agent(ua)) == expected


LANGUAGE_CASES = [
    pytest.param("fr-FR,fr;q=0.9,en;q=0.8", False, "fr", id="header"),
    pytest.param("fr-FR,fr;q=0.9", True, "fr-FR", id="keep-region"),
    pytest.param("en_gb", True, "en-GB", id="underscore"),
    pytest.param("es-419", True, "es-419", id="un-m49-region"),
    pytest.param("zh-Hant-TW", True, "zh", id="script-not-region"),
    pytest.param("DE", False, "de", id="upper"),
    pytest.param("", False, None, id="empty"),
    pytest.param("*", False, None, id="wildcard"),
    pytest.param("alice@example.com", False, None, id="garbage"),
    pytest.param("english", False, None, id="word"),
]


@pytest.mark.parametrize(("raw", "keep_region", "expected"), LANGUAGE_CASES)
def test_primary_language(raw: str, keep_region: bool, expected: str | None) -> None:
    """Language keeps the primary subtag, and the region only when the policy says so."""
    assert primary_language(raw, keep_region=keep_region) == expected


TIME_CASES = [
    pytest.param(5000, 5000, id="valid"),
    pytest.param(0, 0, id="zero"),
    pytest.param(1_800_000, 1_800_000, id="at-clamp"),
    pytest.param(99_999_999, 1_800_000, id="clamped"),
    pytest.param(1234.9, 1234, id="float"),
    pytest.param(-5, 0, id="negative"),
    pytest.param(float("nan"), None, id="nan"),
    pytest.param(float("inf"), None, id="inf"),
    pytest.param(True, None, id="bool"),
    pytest.param("5000", None, id="string"),
    pytest.param(None, None, id="None"),
]


@pytest.mark.parametrize(("raw", "expected"), TIME_CASES)
def test_time_on_page_clamped(raw: object, expected: int | None) -> None:
    """Time on page is an int in [0, 30 min by default]; non-numbers give nothing."""
    assert clamp_time_on_page(raw, maximum_ms=30 * 60 * 1000) == expected


def test_explicit_sdk_fields_win_and_unknown_becomes_other() -> None:
    """SDK fields map through the same tables; unknown free text never passes through."""
    unit = ContextAnonymizer(ContextConfig())
    out = unit.outcome(
        {"browser": "Chrome 120.0.6099", "os": "Android 14", "hardware": "iPhone15,2"}
    )
    assert (out.browser, out.browser_major, out.os, out.os_major, out.hardware) == (
        "Chrome",
        120,
        "Android",
        14,
        "mobile",
    )
    odd = unit.outcome({"browser": "Alice's Browser 3", "os": "bob-os", "hardware": "SN-99812"})
    assert (odd.browser, odd.os, odd.hardware) == ("Other", "Other", "other")


def test_clamp_follows_policy() -> None:
    """context.time_on_page_max sets the clamp."""
    unit = ContextAnonymizer(ContextConfig(time_on_page_max="10s"))
    assert unit.outcome({"time_on_page_ms": 60_000}).time_on_page_ms == 10_000


def test_unhashable_sdk_fields_are_read_as_absent_not_memoised() -> None:
    """A list where an SDK field belongs (never valid input) reads as absent and raises
    nothing; the user agent still decides."""
    unit = ContextAnonymizer(ContextConfig())
    out = Draft([])
    event = {"user_agent": UA_FIREFOX_LINUX, "browser": ["Chrome"], "os": {"x": 1}}
    assert unit(event, out) is None
    assert out.fields["browser"] == "Firefox" and out.fields["os"] == "Linux"
    assert len(unit.device_memo) == 0
