"""Context: browser and OS family plus major version, hardware class, language, time on page.

A small table-driven user-agent parser covers the common browsers and systems; anything it
does not know becomes "Other" (free text never passes through). Explicit `browser`, `os`
and `hardware` fields from app SDKs are normalised by the same tables and win over the user
agent. The user agent itself is never an output field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from typing import Any, Final, NamedTuple

from anonymizers.memo import Memo
from anonymizers.outcome import Draft
from anonymizers.policy import ContextConfig

OTHER: Final = "Other"
DEFAULT_CACHE_SIZE: Final = 16_384

# (family, pattern with the major version as group 1); first match wins, so the browsers
# that also say "Chrome" or "Safari" in their user agent come first.
_BROWSERS: Final[tuple[tuple[str, re.Pattern[str]], ...]] = tuple(
    (family, re.compile(pattern))
    for family, pattern in (
        ("Edge", r"\b(?:Edg|EdgA|EdgiOS|Edge)/(\d+)"),
        ("Opera", r"\b(?:OPR|OPiOS|OPT)/(\d+)"),
        ("Samsung Internet", r"\bSamsungBrowser/(\d+)"),
        ("Yandex", r"\bYaBrowser/(\d+)"),
        ("UC Browser", r"\bUCBrowser/(\d+)"),
        ("Firefox", r"\b(?:Firefox|FxiOS)/(\d+)"),
        ("Chrome", r"\b(?:CriOS|Chrome|Chromium)/(\d+)"),
        ("Internet Explorer", r"(?:\bMSIE (\d+)|\bTrident/.*\brv:(\d+))"),
        ("Safari", r"\bVersion/(\d+)[.\d]* (?:Mobile/\S+ )?Safari/"),
        ("Opera", r"^Opera/.*Version/(\d+)"),
    )
)
_BROWSER_NAMES: Final = {
    "edge": "Edge",
    "microsoft edge": "Edge",
    "opera": "Opera",
    "samsung internet": "Samsung Internet",
    "samsungbrowser": "Samsung Internet",
    "yandex": "Yandex",
    "uc browser": "UC Browser",
    "firefox": "Firefox",
    "chrome": "Chrome",
    "chromium": "Chrome",
    "google chrome": "Chrome",
    "internet explorer": "Internet Explorer",
    "ie": "Internet Explorer",
    "safari": "Safari",
    "mobile safari": "Safari",
}

_WINDOWS_NT: Final = {"10.0": 10, "6.3": 8, "6.2": 8, "6.1": 7, "6.0": 6, "5.2": 5, "5.1": 5}
_OSES: Final[tuple[tuple[str, re.Pattern[str]], ...]] = tuple(
    (family, re.compile(pattern))
    for family, pattern in (
        ("Windows", r"\bWindows NT (\d+\.\d+)"),
        ("iOS", r"\b(?:iPhone|iPad|iPod)\b.*? OS (\d+)[_.]"),
        ("Android", r"\bAndroid (\d+)"),
        ("Android", r"\b(Android)\b"),
        ("ChromeOS", r"\b(CrOS)\b"),
        ("macOS", r"\bMac OS X (\d+)[_.]"),
        ("Linux", r"\b(Linux)\b"),
    )
)
_OS_NAMES: Final = {
    "windows": "Windows",
    "ios": "iOS",
    "ipados": "iOS",
    "android": "Android",
    "chromeos": "ChromeOS",
    "chrome os": "ChromeOS",
    "macos": "macOS",
    "mac os x": "macOS",
    "os x": "macOS",
    "linux": "Linux",
    "ubuntu": "Linux",
}

_BOT_RE: Final = re.compile(
    r"bot\b|crawl|spider|slurp|headless|lighthouse|facebookexternalhit|curl/|wget/|python-requests",
    re.IGNORECASE,
)
_TV_RE: Final = re.compile(r"SmartTV|SMART-TV|AppleTV|GoogleTV|Tizen.*TV|Web0S|BRAVIA|HbbTV|CrKey")
_CONSOLE_RE: Final = re.compile(r"PlayStation|Xbox|Nintendo")
_WEARABLE_RE: Final = re.compile(r"\bWatch\b|Wear OS")
_TABLET_RE: Final = re.compile(r"iPad|Tablet|Kindle|Silk/")
_MOBILE_RE: Final = re.compile(r"Mobi|iPhone|iPod|Opera Mini")
_HARDWARE_WORDS: Final = (
    ("bot", ("bot", "crawler", "spider")),
    ("tv", ("tv", "television")),
    ("console", ("console", "playstation", "xbox", "nintendo")),
    ("wearable", ("watch", "wearable")),
    ("tablet", ("tablet", "ipad")),
    ("mobile", ("mobile", "phone", "smartphone", "iphone", "handset")),
    ("desktop", ("desktop", "laptop", "pc", "computer", "notebook", "mac")),
)
_INT_RE: Final = re.compile(r"(\d{1,4})")
_LANGUAGE_RE: Final = re.compile(r"^([A-Za-z]{2,3})(?:[-_]([A-Za-z]{2}|\d{3}))?(?:[-_]|$)")


class Device(NamedTuple):
    """What the user agent tells, reduced: families, major versions, hardware class."""

    browser: str
    browser_major: int | None
    os: str
    os_major: int | None
    hardware: str


_UNKNOWN_DEVICE: Final = Device(OTHER, None, OTHER, None, "other")


def _major(text: str | None) -> int | None:
    if text is None:
        return None
    match = _INT_RE.match(text)
    return int(match.group(1)) if match else None


def parse_user_agent(user_agent: str) -> Device:
    """Families and major versions of browser and OS, and the hardware class."""
    if _BOT_RE.search(user_agent):
        return Device(OTHER, None, OTHER, None, "bot")
    browser, browser_major = OTHER, None
    for family, pattern in _BROWSERS:
        match = pattern.search(user_agent)
        if match:
            browser = family
            browser_major = _major(next((g for g in match.groups() if g), None))
            break
    os_family, os_major = OTHER, None
    for family, pattern in _OSES:
        match = pattern.search(user_agent)
        if match:
            os_family = family
            version = match.group(1)
            os_major = _WINDOWS_NT.get(version) if family == "Windows" else _major(version)
            break
    return Device(browser, browser_major, os_family, os_major, _hardware_of(user_agent, os_family))


def _hardware_of(user_agent: str, os_family: str) -> str:
    if _TV_RE.search(user_agent):
        return "tv"
    if _CONSOLE_RE.search(user_agent):
        return "console"
    if _WEARABLE_RE.search(user_agent):
        return "wearable"
    if _TABLET_RE.search(user_agent) or (os_family == "Android" and "Mobile" not in user_agent):
        return "tablet"
    if _MOBILE_RE.search(user_agent):
        return "mobile"
    if os_family in ("Windows", "macOS", "Linux", "ChromeOS"):
        return "desktop"
    return "other"


def _named(text: str, names: dict[str, str]) -> tuple[str, int | None] | None:
    """A free-text "Family 1.2" from an SDK mapped to (family, major), or None if unknown."""
    lowered = text.strip().lower()
    for name in sorted(names, key=len, reverse=True):
        if lowered.startswith(name):
            rest = lowered[len(name) :].strip(" /v")
            return names[name], _major(rest) if rest else None
    return None


def hardware_class(text: str) -> str:
    """An SDK's hardware text ("iPhone15,2", "Smartphone", "desktop") reduced to a class."""
    lowered = text.lower()
    for hardware, words in _HARDWARE_WORDS:
        if any(word in lowered for word in words):
            return hardware
    return "other"


def primary_language(text: str, *, keep_region: bool) -> str | None:
    """First language of an Accept-Language-like value: "fr-FR,fr;q=0.9" -> "fr" (or "fr-FR")."""
    first = text.split(",", 1)[0].split(";", 1)[0].strip()
    match = _LANGUAGE_RE.match(first)
    if not match:
        return None
    language = match.group(1).lower()
    region = match.group(2)
    if keep_region and region:
        return f"{language}-{region.upper()}"
    return language


def clamp_time_on_page(value: object, *, maximum_ms: int) -> int | None:
    """Milliseconds as an int in [0, maximum_ms]; None for anything that is not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return int(min(max(value, 0), maximum_ms))


class ContextOutcome(NamedTuple):
    """The context fields of the anonymized event."""

    browser: str | None
    browser_major: int | None
    os: str | None
    os_major: int | None
    hardware: str | None
    language: str | None
    time_on_page_ms: int | None


DEVICE_FIELDS: Final = ("browser", "browser_major", "os", "os_major", "hardware")
"""The output fields a device gives, in output order."""
CONTEXT_FIELDS: Final = (*DEVICE_FIELDS, "language", "time_on_page_ms")
_DeviceKey = tuple[object, object, object, object]
"""(user_agent, browser, os, hardware) as the event has them."""


class ContextAnonymizer:
    """The chain's context unit: the context of an event reduced per `ContextConfig`; the
    user agent is used, never kept.

    As a unit it writes the allow-listed fields among `fields`: the device (browser and OS
    families and majors, hardware class; an app SDK's explicit `browser`, `os` and
    `hardware` win over the user agent), the primary language and the clamped time on page.
    Devices are memoised per (user agent, SDK fields) and languages per value (bounded,
    process memory only). `outcome(event)` gives all seven as a value.
    """

    def __init__(
        self,
        config: ContextConfig,
        *,
        fields: Collection[str] = CONTEXT_FIELDS,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self._keep_region = config.language_region
        self._max_ms = config.time_on_page_max_ms
        self._device_fields = tuple(name for name in DEVICE_FIELDS if name in fields)
        self._want_language = "language" in fields
        self._want_time = "time_on_page_ms" in fields
        self._devices: Memo[str, Device] = Memo(parse_user_agent, max_size=cache_size)
        self._languages: Memo[str, str | None] = Memo(self._primary_language, max_size=cache_size)
        # The unit's memos hold the output fields themselves (a dict `update` per event).
        self.device_memo: Memo[_DeviceKey, dict[str, Any]] = Memo(
            self._device_entry, max_size=cache_size
        )
        self.language_memo: Memo[str, dict[str, Any]] = Memo(
            self._language_entry, max_size=cache_size
        )
        self._device_table = self.device_memo.plain_table
        self._language_table = self.language_memo.plain_table

    def __call__(self, event: dict[str, Any], out: Draft) -> str | None:
        fields = out.fields
        if self._device_fields:
            key = (
                event.get("user_agent"),
                event.get("browser"),
                event.get("os"),
                event.get("hardware"),
            )
            try:
                device = self._device_table.get(key)
                if device is None:
                    device = self.device_memo.miss(key)
            except TypeError:  # an unhashable value (never after the raw schema): not memoised
                device = self._device_entry(key)
            fields.update(device)
        if self._want_language:
            language = event.get("browser_language")
            if isinstance(language, str):
                primary = self._language_table.get(language)
                if primary is None:
                    primary = self.language_memo.miss(language)
                fields.update(primary)
        if self._want_time:
            time_on_page = event.get("time_on_page_ms")
            if time_on_page is not None:
                clamped = clamp_time_on_page(time_on_page, maximum_ms=self._max_ms)
                if clamped is not None:
                    fields["time_on_page_ms"] = clamped
        return None

    def _device_entry(self, key: _DeviceKey) -> dict[str, Any]:
        user_agent, browser, os_family, hardware = key
        found = self._device_of(user_agent, browser, os_family, hardware)
        pairs = zip(DEVICE_FIELDS, found, strict=True)
        return {
            name: value
            for name, value in pairs
            if value is not None and name in self._device_fields
        }

    def _language_entry(self, raw_language: str) -> dict[str, Any]:
        primary = self.language(raw_language)
        return {} if primary is None else {"language": primary}

    def device(self, user_agent: object) -> Device:
        """The parsed user agent (cached); unknown for a missing or non-string one."""
        if not isinstance(user_agent, str) or not user_agent:
            return _UNKNOWN_DEVICE
        return self._devices[user_agent]

    def language(self, raw_language: object) -> str | None:
        """The primary language of an Accept-Language-like value (cached); None if unusable."""
        if not isinstance(raw_language, str):
            return None
        return self._languages[raw_language]

    def time_on_page(self, value: object) -> int | None:
        """Milliseconds clamped to the policy's maximum; None when absent or not a number."""
        if value is None:
            return None
        return clamp_time_on_page(value, maximum_ms=self._max_ms)

    def _primary_language(self, raw_language: str) -> str | None:
        return primary_language(raw_language, keep_region=self._keep_region)

    def _device_of(
        self, user_agent: object, browser: object, os_family: object, hardware: object
    ) -> tuple[str | None, int | None, str | None, int | None, str | None]:
        """(browser, browser_major, os, os_major, hardware): the user agent's, each part an
        SDK field names overridden by it."""
        out_browser: str | None = None
        browser_major: int | None = None
        out_os: str | None = None
        os_major: int | None = None
        out_hardware: str | None = None
        if isinstance(user_agent, str) and user_agent:
            device = self.device(user_agent)
            out_browser, browser_major = device.browser, device.browser_major
            out_os, os_major, out_hardware = device.os, device.os_major, device.hardware
        if isinstance(browser, str) and browser:
            out_browser, browser_major = _named(browser, _BROWSER_NAMES) or (OTHER, None)
        if isinstance(os_family, str) and os_family:
            out_os, os_major = _named(os_family, _OS_NAMES) or (OTHER, None)
        if isinstance(hardware, str) and hardware:
            out_hardware = hardware_class(hardware)
        return out_browser, browser_major, out_os, os_major, out_hardware

    def outcome(self, event: Mapping[str, object]) -> ContextOutcome:
        """All seven context fields of `event` (None where nothing is derived)."""
        device = self._device_of(
            event.get("user_agent"), event.get("browser"), event.get("os"), event.get("hardware")
        )
        return ContextOutcome(
            *device,
            self.language(event.get("browser_language")),
            self.time_on_page(event.get("time_on_page_ms")),
        )
