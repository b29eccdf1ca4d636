"""The visitor population: people with stable devices, identifiers, addresses and settings.

A person is created the first time the activity distribution (Zipf over ranks) selects
them, from the shared seeded draws, so populations of any size cost nothing up front.
"""

from __future__ import annotations

from dataclasses import dataclass

from stream.local.traffic import pii
from stream.local.traffic.geo import GeoPool
from stream.local.traffic.randomness import Draws, Weighted

ACTIVITY_ZIPF = 0.8  # exponent of activity by person rank: top person ~3% of sessions at 20k
DEFAULT_PEOPLE = 20_000

CHROME = (
    "131.0.6778.86",
    "130.0.6723.117",
    "129.0.6668.101",
    "128.0.6613.138",
    "126.0.6478.127",
    "124.0.6367.207",
    "120.0.6099.230",
)
EDGE = ("131.0.2903.70", "130.0.2849.80", "129.0.2792.89", "126.0.2592.113")
FIREFOX = ("133.0", "132.0.2", "131.0.3", "128.5.1", "115.17.0")
SAFARI = ("18.2", "18.1.1", "17.6", "17.5", "16.6")
SAMSUNG = ("26.0", "25.0", "24.0", "23.0")
APP = ("4.12.0", "4.11.2", "4.10.1", "4.8.0")
WINDOWS = ("10", "11")
MACOS = ("15.2", "15.1", "14.7.1", "14.6.1", "13.6.9")
IOS = ("18.2", "18.1.1", "17.7.2", "17.6.1", "17.5.1", "16.7.10")
ANDROID = ("15", "14", "13", "12", "11", "10")
LINUX = ("",)
PHONES = (
    "SM-S928B",
    "SM-S918B",
    "SM-A546B",
    "SM-A356B",
    "SM-G991B",
    "Pixel 8",
    "Pixel 7a",
    "2312DRAABG",
    "CPH2581",
)
TABLETS = ("SM-X710", "SM-X210", "Lenovo TB-X606F")


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    """One kind of client: where it runs, what it reports, and its User-Agent template.

    Template fields: {bv} browser version, {bmajor} its major, {ov} OS version, {ov_} the
    OS version with underscores (Apple UAs), {model} device model.
    """

    platform: str  # desktop | mobile | tablet | ios_app | android_app
    hardware: str  # desktop | mobile | tablet
    weight: float
    browser: str
    browser_versions: tuple[str, ...]
    os: str
    os_versions: tuple[str, ...]
    template: str
    models: tuple[str, ...] = ("",)

    @property
    def is_app(self) -> bool:
        """True for the shop's native apps (device ids, no cookies)."""
        return self.platform.endswith("_app")


_WIN = "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"
_MAC = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)"
_BLINK = "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{bmajor}.0.0.0"
_IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS {ov_} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"  # noqa: E501
_IPAD = "Mozilla/5.0 (iPad; CPU OS {ov_} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
PROFILES: tuple[DeviceProfile, ...] = (
    DeviceProfile(
        "desktop",
        "desktop",
        0.22,
        "Chrome",
        CHROME,
        "Windows",
        WINDOWS,
        f"{_WIN} {_BLINK} Safari/537.36",
    ),
    DeviceProfile(
        "desktop",
        "desktop",
        0.09,
        "Edge",
        EDGE,
        "Windows",
        WINDOWS,
        f"{_WIN} {_BLINK} Safari/537.36 Edg/{{bv}}",
    ),
    DeviceProfile(
        "desktop",
        "desktop",
        0.05,
        "Firefox",
        FIREFOX,
        "Windows",
        WINDOWS,
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{bmajor}.0) Gecko/20100101 Firefox/{bmajor}.0",  # noqa: E501
    ),
    DeviceProfile(
        "desktop",
        "desktop",
        0.05,
        "Safari",
        SAFARI,
        "macOS",
        MACOS,
        f"{_MAC} AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{{bv}} Safari/605.1.15",
    ),
    DeviceProfile(
        "desktop",
        "desktop",
        0.03,
        "Chrome",
        CHROME,
        "macOS",
        MACOS,
        f"{_MAC} {_BLINK} Safari/537.36",
    ),
    DeviceProfile(
        "desktop",
        "desktop",
        0.01,
        "Firefox",
        FIREFOX,
        "Linux",
        LINUX,
        "Mozilla/5.0 (X11; Linux x86_64; rv:{bmajor}.0) Gecko/20100101 Firefox/{bmajor}.0",
    ),
    DeviceProfile(
        "desktop",
        "desktop",
        0.01,
        "Chrome",
        CHROME,
        "Linux",
        LINUX,
        f"Mozilla/5.0 (X11; Linux x86_64) {_BLINK} Safari/537.36",
    ),
    DeviceProfile(
        "mobile",
        "mobile",
        0.15,
        "Mobile Safari",
        SAFARI,
        "iOS",
        IOS,
        f"{_IPHONE} Version/{{bv}} Mobile/15E148 Safari/604.1",
    ),
    DeviceProfile(
        "mobile",
        "mobile",
        0.03,
        "Chrome Mobile iOS",
        CHROME,
        "iOS",
        IOS,
        f"{_IPHONE} CriOS/{{bv}} Mobile/15E148 Safari/604.1",
    ),
    DeviceProfile(
        "mobile",
        "mobile",
        0.12,
        "Chrome Mobile",
        CHROME,
        "Android",
        ANDROID,
        f"Mozilla/5.0 (Linux; Android {{ov}}; K) {_BLINK} Mobile Safari/537.36",
    ),
    DeviceProfile(
        "mobile",
        "mobile",
        0.04,
        "Samsung Internet",
        SAMSUNG,
        "Android",
        ANDROID,
        "Mozilla/5.0 (Linux; Android {ov}; SAMSUNG {model}) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/{bv} Chrome/125.0.0.0 Mobile Safari/537.36",  # noqa: E501
        PHONES[:5],
    ),
    DeviceProfile(
        "mobile",
        "mobile",
        0.01,
        "Firefox Mobile",
        FIREFOX,
        "Android",
        ANDROID,
        "Mozilla/5.0 (Android {ov}; Mobile; rv:{bmajor}.0) Gecko/{bmajor}.0 Firefox/{bmajor}.0",
    ),
    DeviceProfile(
        "tablet",
        "tablet",
        0.04,
        "Mobile Safari",
        SAFARI,
        "iPadOS",
        IOS,
        f"{_IPAD} Version/{{bv}} Mobile/15E148 Safari/604.1",
    ),
    DeviceProfile(
        "tablet",
        "tablet",
        0.02,
        "Chrome",
        CHROME,
        "Android",
        ANDROID,
        f"Mozilla/5.0 (Linux; Android {{ov}}; {{model}}) {_BLINK} Safari/537.36",
        TABLETS,
    ),
    DeviceProfile(
        "ios_app",
        "mobile",
        0.07,
        "BijouxExemple iOS",
        APP,
        "iOS",
        IOS,
        "BijouxExemple/{bv} (fr.bijoux-example.app; build:{build}; iOS {ov}) Alamofire/5.9.1",
    ),
    DeviceProfile(
        "android_app",
        "mobile",
        0.06,
        "BijouxExemple Android",
        APP,
        "Android",
        ANDROID,
        "BijouxExemple/{bv} (Android {ov}; {model}) okhttp/4.12.0",
        PHONES,
    ),
)
PROFILE_MIX: Weighted[DeviceProfile] = Weighted([(p, p.weight) for p in PROFILES])

_LANG_HEADER = "fr-FR,fr;q=0.9,en-US;q=0.8,en;q=0.7"
LANGUAGES: dict[str, Weighted[str]] = {
    "FR": Weighted(
        [
            ("fr-FR", 0.84),
            ("fr", 0.05),
            (_LANG_HEADER, 0.04),
            ("en-US", 0.04),
            ("en-GB", 0.01),
            ("pt-PT", 0.01),
            ("ar", 0.01),
        ]
    ),
    "BE": Weighted(
        [("fr-BE", 0.50), ("nl-BE", 0.35), ("fr-FR", 0.08), ("en-US", 0.04), ("de-DE", 0.03)]
    ),
    "CH": Weighted(
        [("fr-CH", 0.45), ("de-CH", 0.35), ("it-CH", 0.05), ("fr-FR", 0.08), ("en-US", 0.07)]
    ),
    "CA": Weighted([("fr-CA", 0.60), ("en-CA", 0.30), ("en-US", 0.10)]),
    "LU": Weighted([("fr-LU", 0.60), ("de-LU", 0.20), ("lb-LU", 0.10), ("fr-FR", 0.10)]),
    "MA": Weighted([("fr-MA", 0.60), ("ar-MA", 0.40)]),
    "DE": Weighted([("de-DE", 0.90), ("en-US", 0.10)]),
    "GB": Weighted([("en-GB", 1.0)]),
    "US": Weighted([("en-US", 1.0)]),
    "ES": Weighted([("es-ES", 0.90), ("en-US", 0.10)]),
    "IT": Weighted([("it-IT", 0.90), ("en-US", 0.10)]),
    "NL": Weighted([("nl-NL", 0.90), ("en-US", 0.10)]),
}
OTHER_LANGUAGES: Weighted[str] = Weighted([("en-US", 0.6), ("fr-FR", 0.3), ("en-GB", 0.1)])

ACCOUNT_SHARE = 0.35  # people with a customer account (user_id when logged in)
EMAIL_USER_ID_SHARE = 0.2  # accounts whose user_id is the login e-mail (legacy collectors)
UNDER_16_SHARE = 0.03
DESCRIBED_SHARE = 0.92  # people whose collector fills browser/os/hardware (not only the UA)
SIGNALS_SHARE = 0.85  # web people whose collector reports gpc/dnt
CONSENT_OBJECT_SHARE = 0.8  # people whose events carry the CMP's consent object
IPV6_SHARE = 0.45


@dataclass(slots=True)
class Person:
    """One visitor and everything stable about them."""

    index: int
    country: str
    profile: DeviceProfile
    user_agent: str
    browser: str
    os: str
    language: str
    ipv4: tuple[str, ...]
    ipv6: tuple[str, ...]
    cookie_id: str | None
    device_id: str | None
    ad_id: str | None
    mac: str | None
    imei: str | None
    user_id: str | None
    email: str
    phone: str
    gpc: bool | None
    dnt: bool | None
    under_16: bool
    consent: dict[str, bool] | None
    described: bool

    def subject_ids(self) -> list[tuple[str, str]]:
        """The person's (subject_type, subject_id) pairs, in the pipeline's subject order."""
        pairs = (
            ("user_id", self.user_id),
            ("cookie_id", self.cookie_id),
            ("device_id", self.device_id),
            ("ad_id", self.ad_id),
        )
        return [(kind, value) for kind, value in pairs if value is not None]


class Population:
    """`size` people whose activity follows Zipf by rank; created on first selection."""

    def __init__(self, *, size: int, geo: GeoPool, draws: Draws) -> None:
        self._draws = draws
        self._geo = geo
        self._people: dict[int, Person] = {}
        self._activity: Weighted[int] = Weighted.zipf(range(size), exponent=ACTIVITY_ZIPF)

    def choose(self) -> Person:
        """A person, the more active the more likely."""
        index = self._draws.weighted(self._activity)
        person = self._people.get(index)
        if person is None:
            person = self._people[index] = _new_person(index, self._geo, self._draws)
        return person


def _new_person(index: int, geo: GeoPool, draws: Draws) -> Person:
    country = draws.weighted(geo.country_mix)
    profile = draws.weighted(PROFILE_MIX)
    user_agent, browser, os_name = _user_agent(profile, draws)
    is_app = profile.is_app
    is_firefox = profile.browser.startswith("Firefox")
    has_account = draws.chance(ACCOUNT_SHARE)
    email = pii.email_address(draws)
    reports_signals = not is_app and draws.chance(SIGNALS_SHARE)
    ipv4_count = draws.between(1, 3 if profile.hardware == "mobile" else 2)  # mobiles roam
    return Person(
        index=index,
        country=country,
        profile=profile,
        user_agent=user_agent,
        browser=browser,
        os=os_name,
        language=draws.weighted(LANGUAGES.get(country, OTHER_LANGUAGES)),
        ipv4=_addresses(geo, country, version=4, count=ipv4_count, draws=draws),
        ipv6=_addresses(geo, country, version=6, count=1 + draws.below(2), draws=draws)
        if draws.chance(IPV6_SHARE)
        else (),
        cookie_id=None if is_app else _cookie_id(draws),
        device_id=_device_id(profile, draws) if is_app else None,
        ad_id=_ad_id(profile, draws) if is_app and draws.chance(0.4) else None,
        mac=_mac(profile, draws),
        imei=pii.imei(draws) if profile.platform == "android_app" and draws.chance(0.12) else None,
        user_id=(email if draws.chance(EMAIL_USER_ID_SHARE) else f"u{draws.digits(7)}")
        if has_account
        else None,
        email=email,
        phone=pii.mobile_number(draws),
        gpc=draws.chance(0.30 if is_firefox else 0.05) if reports_signals else None,
        dnt=draws.chance(0.25 if is_firefox else 0.12) if reports_signals else None,
        under_16=draws.chance(UNDER_16_SHARE),
        consent=_consent(draws) if draws.chance(CONSENT_OBJECT_SHARE) else None,
        described=draws.chance(DESCRIBED_SHARE),
    )


def _user_agent(profile: DeviceProfile, draws: Draws) -> tuple[str, str, str]:
    version = draws.pick(profile.browser_versions)
    os_version = draws.pick(profile.os_versions)
    if profile.browser == "Mobile Safari":  # Safari's version follows the OS on iOS/iPadOS
        version = ".".join(os_version.split(".")[:2])
    agent = profile.template.format(
        bv=version,
        bmajor=version.split(".")[0],
        ov=os_version,
        ov_=os_version.replace(".", "_"),
        model=draws.pick(profile.models),
        build=version.replace(".", ""),
    )
    return agent, f"{profile.browser} {version}", f"{profile.os} {os_version}".strip()


def _addresses(
    geo: GeoPool, country: str, *, version: int, count: int, draws: Draws
) -> tuple[str, ...]:
    found = (geo.address(country, version=version, draws=draws) for _ in range(count))
    return tuple(address for address in found if address is not None)


def _cookie_id(draws: Draws) -> str:
    style = draws.below(20)
    if style < 9:
        return draws.uuid4()
    if style < 16:  # Google Analytics `_ga` cookie: random number and first-visit time
        first_visit = draws.between(1_600_000_000, 1_735_000_000)
        return f"GA1.1.{draws.between(10**8, 2 * 10**9)}.{first_visit}"
    return f"bjx_{draws.hex(16)}"


def _device_id(profile: DeviceProfile, draws: Draws) -> str:
    # iOS identifierForVendor is an upper-case UUID; Android's ANDROID_ID is 16 hex digits.
    return draws.uuid4().upper() if profile.platform == "ios_app" else draws.hex(8)


def _ad_id(profile: DeviceProfile, draws: Draws) -> str:
    uuid = draws.uuid4()
    return uuid.upper() if profile.platform == "ios_app" else uuid


def _mac(profile: DeviceProfile, draws: Draws) -> str | None:
    if profile.platform == "android_app" and draws.chance(0.25):
        return pii.mac_address(draws)
    if profile.platform == "ios_app" and draws.chance(0.10):
        return "02:00:00:00:00:00"  # what iOS has returned to apps since iOS 7
    return None


def _consent(draws: Draws) -> dict[str, bool]:
    analytics = not draws.chance(0.18)
    advertising = not draws.chance(0.9 if not analytics else 0.4)
    return {
        "analytics": analytics,
        "advertising": advertising,
        "personalization": not draws.chance(0.3),
    }
