"""The anonymizer chain: one validated raw event in, an anonymized event or a drop reason out.

`Pipeline.from_policy(policy, *, keys, geo, consent=None)` builds every unit once; calling
the pipeline runs, in order: the consent gate, the event time and epoch key, the subject
(and cookieless visitor id, before the IP goes), geolocation and IP truncation, identifier
pseudonyms, URLs and referrer, search terms, context, the echo guard and the allowlist.
The stream's anonymize agent and `anonstream preview` run this same object.

It fails closed: no key, no subject, an unusable time or event type drop the event with a
reason from `anonymizers.reasons`; a malformed value (IP, URL...) yields no output field.
Exceptions mean programming errors, never bad data.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

from anonymizers import reasons
from anonymizers.allowlist import Allowlist
from anonymizers.consent import ConsentGate, ConsentState
from anonymizers.context import ContextAnonymizer
from anonymizers.fields import EVENT_TYPES, IDENTIFIER_FIELDS
from anonymizers.ip import GeoLookup, IpAnonymizer, IpOutcome, ParsedIp, parse_ip
from anonymizers.keys import KeyProvider
from anonymizers.policy import Policy
from anonymizers.pseudonym import Pseudonymizer
from anonymizers.search_terms import SearchTermScrubber
from anonymizers.urls import ReferrerScrubber, UrlScrubber, host_of_scrubbed

RAW_FIELDS: Final = frozenset(
    {
        "event_id",
        "event_type",
        "occurred_at",
        "user_id",
        "cookie_id",
        "device_id",
        "ad_id",
        "mac",
        "imei",
        "ip",
        "user_agent",
        "os",
        "browser",
        "browser_language",
        "hardware",
        "page_url",
        "referrer_url",
        "link_url",
        "search_terms",
        "time_on_page_ms",
        "gpc",
        "dnt",
        "age_under_16",
        "consent",
    }
)
"""Fields of raw event v1; any other field is unknown and dropped (counted when recording)."""

_TIME_CACHE_SIZE: Final = 65_536
_IP_CACHE_SIZE: Final = 65_536
_RFC3339: Final = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})$"
)
_EVENT_TYPES: Final = frozenset(EVENT_TYPES)


class Anonymized(NamedTuple):
    """An event that passed: the output `event`, its `subject` pseudonym and key `epoch`.

    `actions` lists what each unit did ("ip:geolocated", "search_terms:redacted"...) when
    the pipeline records actions, else it is empty.
    """

    event: dict[str, Any]
    subject: str
    epoch: int
    actions: tuple[str, ...] = ()


class Dropped(NamedTuple):
    """An event that must not be emitted, and why (a value of `anonymizers.reasons`)."""

    reason: str


Outcome = Anonymized | Dropped


class _EventTime:
    """RFC 3339 text to (unix seconds, UTC text to the second, UTC day); cached per minute."""

    def __init__(self) -> None:
        self._minutes: dict[int, tuple[str, str]] = {}
        # "YYYY-MM-DDTHH:MM" (UTC) -> (unix seconds of the minute, output prefix, day)
        self._fast: dict[str, tuple[int, str, str]] = {}

    def __call__(self, raw: object) -> tuple[int, str, str] | None:
        if not isinstance(raw, str) or len(raw) > 64:
            return None
        # Fast path for the collectors' usual "YYYY-MM-DDTHH:MM:SS[.fff]Z": the minute is
        # looked up once, the seconds read directly. Anything else takes the full parser.
        if raw[-1:] == "Z" and len(raw) >= 20 and raw[16] == ":" and raw[10] == "T":
            seconds_text = raw[17:19]
            fraction = raw[19:-1]
            known = self._fast.get(raw[:16])
            if (
                known is not None
                and seconds_text.isdigit()
                and seconds_text.isascii()
                and int(seconds_text) < 60
                and (
                    not fraction
                    or (fraction[0] == "." and fraction[1:].isdigit() and fraction.isascii())
                )
            ):
                base, prefix, day = known
                return base + int(seconds_text), f"{prefix}{seconds_text}Z", day
        if not _RFC3339.match(raw):
            return None
        try:
            moment = datetime.fromisoformat(raw.upper())
        except ValueError:
            return None
        if moment.tzinfo is None or moment.utcoffset() is None:
            return None
        seconds = math.floor(moment.timestamp())
        minute = seconds // 60
        texts = self._minutes.get(minute)
        if texts is None:
            start = datetime.fromtimestamp(minute * 60, tz=UTC)
            texts = (start.strftime("%Y-%m-%dT%H:%M:"), start.strftime("%Y-%m-%d"))
            if len(self._minutes) >= _TIME_CACHE_SIZE:
                self._minutes.clear()
                self._fast.clear()
            self._minutes[minute] = texts
            if 1 <= start.year <= 9999:
                self._fast[texts[0][:16]] = (minute * 60, texts[0], texts[1])
        return seconds, f"{texts[0]}{seconds % 60:02d}Z", texts[1]


class Pipeline:
    """The whole anonymizer chain for one policy. Build with `from_policy`.

    Not thread-safe (its caches are plain dicts): use one per worker process, as the
    stream does (one actor per partition).
    """

    def __init__(
        self,
        policy: Policy,
        *,
        keys: KeyProvider,
        geo: GeoLookup | None,
        consent: ConsentState | None = None,
        record_actions: bool = False,
    ) -> None:
        if keys.rotation_seconds != policy.keys.rotation_seconds:
            raise ValueError(
                f"key provider rotates every {keys.rotation_seconds}s but the policy says "
                f"keys.rotation = {policy.keys.rotation}"
            )
        self.policy = policy
        self._keys = keys
        self._rotation = keys.rotation_seconds
        self._record = record_actions
        self.allowlist = Allowlist(policy.output)
        wanted = self.allowlist.names
        self.gate = ConsentGate(policy.consent, consent)
        self._time = _EventTime()
        self._pseudonyms = Pseudonymizer(policy.identifiers, kept=wanted)
        self._ip = IpAnonymizer(policy.geo, geo)
        # Raw IP text -> (parsed, geolocation): repeated visitors skip parsing and lookup.
        self._ips: dict[str, tuple[ParsedIp | None, IpOutcome | None]] = {}
        self._want_ip = bool(wanted & {"country", "region", "city", "ip_prefix"})
        self._urls = UrlScrubber(policy.urls)
        self._referrers = ReferrerScrubber(policy.urls)
        self._want_page = "page_url" in wanted
        self._want_link = "link_url" in wanted
        self._want_referrer = bool(wanted & {"referrer_host", "referrer_internal"})
        self._search = SearchTermScrubber(policy.search_terms)
        self._want_search = "search_terms" in wanted
        self._context = ContextAnonymizer(policy.context)
        self._want_context = bool(
            wanted
            & {
                "browser",
                "browser_major",
                "os",
                "os_major",
                "hardware",
                "language",
                "time_on_page_ms",
            }
        )

    @classmethod
    def from_policy(
        cls,
        policy: Policy,
        *,
        keys: KeyProvider,
        geo: GeoLookup | None,
        consent: ConsentState | None = None,
        record_actions: bool = False,
    ) -> Pipeline:
        """The chain for `policy`, keyed by `keys`, geolocating with `geo` (None: no geo).

        `consent` is the consent state the gate consults (None: an empty one; event-level
        signals still apply). `record_actions` fills `Anonymized.actions` (preview).
        """
        return cls(policy, keys=keys, geo=geo, consent=consent, record_actions=record_actions)

    def process_batch(self, events: Iterable[Mapping[str, Any]]) -> list[Outcome]:
        """The outcome of each event, in order."""
        return [self(event) for event in events]

    def __call__(self, event: Mapping[str, Any]) -> Outcome:
        reason = self.gate(event)
        if reason is not None:
            return Dropped(reason)
        event_type = event.get("event_type")
        if event_type not in _EVENT_TYPES:
            return Dropped(reasons.INVALID_EVENT)
        when = self._time(event.get("occurred_at"))
        if when is None:
            return Dropped(reasons.INVALID_EVENT)
        seconds, occurred_at, day = when
        epoch = seconds // self._rotation
        key = self._keys.key_for_epoch(epoch)
        if key is None:
            return Dropped(reasons.NO_KEY)
        raw_ip = event.get("ip")
        ip: ParsedIp | None = None
        located: IpOutcome | None = None
        if isinstance(raw_ip, str):
            cached = self._ips.get(raw_ip)
            if cached is None:
                ip = parse_ip(raw_ip)
                located = self._ip(ip) if self._want_ip else None
                if len(self._ips) >= _IP_CACHE_SIZE:
                    self._ips.pop(next(iter(self._ips)), None)
                self._ips[raw_ip] = (ip, located)
            else:
                ip, located = cached
        subject = self._pseudonyms.subject(event, key, ip=ip, day=day)
        if subject is None:
            return Dropped(reasons.NO_SUBJECT)

        candidate: dict[str, Any] = {
            "event_type": event_type,
            "occurred_at": occurred_at,
            "epoch": epoch,
            "subject": subject.pseudonym,
        }
        actions: list[str] | None = [f"subject:{subject.source}"] if self._record else None
        if located is not None:
            country, region, city, prefix = located
            candidate["country"] = country
            candidate["region"] = region
            candidate["city"] = city
            candidate["ip_prefix"] = prefix
        candidate.update(self._pseudonyms.identifiers(event, key))
        page_url = None
        if self._want_page or self._want_referrer:
            page_url = self._urls(event.get("page_url"))
            candidate["page_url"] = page_url
        if self._want_link:
            candidate["link_url"] = self._urls(event.get("link_url"))
        if self._want_referrer and "referrer_url" in event:
            referrer = self._referrers(event["referrer_url"], page_host=host_of_scrubbed(page_url))
            candidate["referrer_host"] = referrer.host
            candidate["referrer_internal"] = referrer.internal
        search = None
        if self._want_search and "search_terms" in event:
            search = self._search(event["search_terms"])
            candidate["search_terms"] = search.terms
        if self._want_context:
            context = self._context(event)
            candidate["browser"] = context.browser
            candidate["browser_major"] = context.browser_major
            candidate["os"] = context.os
            candidate["os_major"] = context.os_major
            candidate["hardware"] = context.hardware
            candidate["language"] = context.language
            candidate["time_on_page_ms"] = context.time_on_page_ms
        out, echoed = self.allowlist(candidate, identifiers=_identifier_values(event, raw_ip, ip))
        if actions is not None:
            self._describe(actions, event, candidate, out, raw_ip, ip, search, echoed)
            return Anonymized(out, subject.pseudonym, epoch, tuple(actions))
        return Anonymized(out, subject.pseudonym, epoch)

    def _describe(
        self,
        actions: list[str],
        event: Mapping[str, Any],
        candidate: Mapping[str, Any],
        out: Mapping[str, Any],
        raw_ip: object,
        ip: ParsedIp | None,
        search: Any,
        echoed: list[str],
    ) -> None:
        """What the units did, for preview reports (only when recording actions)."""
        if raw_ip is not None:
            if ip is None:
                actions.append("ip:malformed_dropped")
            else:
                located = candidate.get("country") is not None
                actions.append("ip:geolocated" if located else "ip:not_located")
                actions.append("ip:truncated" if "ip_prefix" in out else "ip:dropped")
        for name in IDENTIFIER_FIELDS:
            if name in event:
                actions.append(f"{name}:{'pseudonymized' if name in out else 'dropped'}")
        for name in ("page_url", "link_url"):
            if name in event:
                actions.append(f"{name}:{'scrubbed' if name in out else 'dropped'}")
        if "referrer_url" in event:
            actions.append(
                "referrer_url:to_host" if "referrer_host" in out else "referrer_url:dropped"
            )
        if "search_terms" in event:
            action = search.action if search is not None else None
            if action is None:
                action = "normalised" if "search_terms" in out else "dropped"
            actions.append(f"search_terms:{action}")
        if "user_agent" in event:
            actions.append("user_agent:reduced_dropped")
        value = event.get("time_on_page_ms")
        if isinstance(value, int | float) and out.get("time_on_page_ms") not in (None, value):
            actions.append("time_on_page_ms:clamped")
        for name in echoed:
            actions.append(f"{name}:identifier_echo_removed")
        unknown = [name for name in event if name not in RAW_FIELDS]
        if unknown:
            actions.extend("unknown_field:dropped" for _ in unknown)


def _identifier_values(event: Mapping[str, Any], raw_ip: object, ip: ParsedIp | None) -> list[str]:
    """The event's own identifier strings, for the echo guard."""
    values = [v for name in IDENTIFIER_FIELDS if isinstance(v := event.get(name), str)]
    if isinstance(raw_ip, str):
        values.append(raw_ip.strip())
        if ip is not None and ip.text != values[-1]:
            values.append(ip.text)
    return values
