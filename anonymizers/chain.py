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
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple, final

from anonymizers import reasons
from anonymizers.allowlist import ECHO_MIN_LENGTH, Allowlist, echo_haystack, echo_needles
from anonymizers.consent import ConsentGate, ConsentState
from anonymizers.context import ContextAnonymizer, clamp_time_on_page
from anonymizers.fields import EVENT_TYPES, IDENTIFIER_FIELDS
from anonymizers.ip import OUTPUT_FIELDS as IP_OUTPUT_FIELDS
from anonymizers.ip import GeoLookup, IpAnonymizer, ipv4_reader, parse_ip
from anonymizers.keys import EpochKey, KeyProvider
from anonymizers.memo import Memo, bounded_put
from anonymizers.native import EXTENSION, native_enabled
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
_CLOCK_MINUTES: Final = 16_384
"""Minutes the extension's event clock holds: any 11 days' worth (consecutive minutes
never share a slot), 512 KiB."""
_IP_CACHE_SIZE: Final = 65_536
_URL_CACHE_SIZE: Final = 65_536
_SEARCH_CACHE_SIZE: Final = 65_536
_CONTEXT_CACHE_SIZE: Final = 16_384
_RFC3339: Final = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})$"
)
_EVENT_TYPES: Final = frozenset(EVENT_TYPES)
_NO_TIME: Final = (0, "", "")


def _empty_dict(size: int) -> dict[str, Any]:
    """A new dict (the extension's `new_dict` sizes it for `size` entries at once)."""
    return {}


_NEW_DICT: Final[Callable[[int], dict[str, Any]]] = (
    _empty_dict if EXTENSION is None else EXTENSION.new_dict
)
_NO_FIELDS: Final[tuple[tuple[str, str], ...]] = ()
"""The IP fields of an event without a usable IP."""
_GEO_FIELDS: Final = IP_OUTPUT_FIELDS
_DEVICE_FIELDS: Final = ("browser", "browser_major", "os", "os_major", "hardware")
_CONTEXT_FIELDS: Final = (*_DEVICE_FIELDS, "language", "time_on_page_ms")


@final
class Anonymized:
    """An event that passed: the output `event`, its `subject` pseudonym and key `epoch`.

    `actions` lists what each unit did ("ip:geolocated", "search_terms:redacted"...) when
    the pipeline records actions, else it is empty. Equal when all four are. (A plain
    class, not a NamedTuple: compiled, making one is a direct call; a NamedTuple was made
    through `tuple.__new__`, ~2,500 instructions, a tenth of an event's chain.)
    """

    __slots__ = ("actions", "epoch", "event", "subject")

    def __init__(
        self, event: dict[str, Any], subject: str, epoch: int, actions: tuple[str, ...] = ()
    ) -> None:
        self.event = event
        self.subject = subject
        self.epoch = epoch
        self.actions = actions

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Anonymized):
            return NotImplemented
        return (
            self.event == other.event
            and self.subject == other.subject
            and self.epoch == other.epoch
            and self.actions == other.actions
        )

    def __repr__(self) -> str:
        return (
            f"Anonymized(event={self.event!r}, subject={self.subject!r}, epoch={self.epoch!r}, "
            f"actions={self.actions!r})"
        )


class Dropped(NamedTuple):
    """An event that must not be emitted, and why (a value of `anonymizers.reasons`)."""

    reason: str


Outcome = Anonymized | Dropped
# Outcomes are immutable: one Dropped per reason serves every event.
_DROPPED: Final = {reason: Dropped(reason) for reason in reasons.ALL}
_INVALID: Final = _DROPPED[reasons.INVALID_EVENT]
_NO_KEY: Final = _DROPPED[reasons.NO_KEY]
_NO_SUBJECT: Final = _DROPPED[reasons.NO_SUBJECT]

# What the chain caches per raw value (each a pure function of that value and the policy;
# never None). The many are tuples of strings, numbers and tuples only, which the garbage
# collector stops tracking (a tuple holding a dict it tracks for ever, and walks at every
# full collection: with 65,536 IP entries that was most of a collection's work):
# IP text -> (canonical text or None if malformed, output (name, value) pairs, echo needles,
# located);
_IpEntry = tuple[str | None, tuple[tuple[str, str], ...], tuple[str, ...], bool]
# URL -> (scrubbed URL, its host, echo haystack);
_UrlEntry = tuple[str | None, str | None, str]
# referrer URL -> (host, named by urls.internal_hosts, echo haystack);
_ReferrerEntry = tuple[str | None, bool, str]
# search terms -> (output terms, action for reports, echo haystack).
_SearchEntry = tuple[str | None, str | None, str]


class _EventTime:
    """RFC 3339 text to (epoch, UTC text to the second, UTC day); cached per minute.

    The collectors' usual "YYYY-MM-DDTHH:MM:SS[.fff]Z" takes a fast path: its minute is
    looked up and the seconds read directly (by the extension's `EventClock` where it is
    built and on, else by the Python below). Anything else takes the full parser, which also
    fills the fast path (only with minutes it has validated).
    """

    def __init__(self, rotation_seconds: int) -> None:
        self._rotation = rotation_seconds
        # With minute-aligned epochs, the whole minute shares its epoch.
        self._minute_epochs = rotation_seconds % 60 == 0
        self._minutes: dict[int, tuple[str, str]] = {}
        # The fast path: the extension's clock, else "YYYY-MM-DDTHH:MM:" (UTC) -> (unix
        # seconds of the minute, day, epoch of the minute).
        self._clock: Any = None
        if EXTENSION is not None and native_enabled():
            self._clock = EXTENSION.EventClock(_CLOCK_MINUTES, rotation_seconds)
        self._fast: dict[str, tuple[int, str, int]] = {}

    def read(self, raw: object) -> tuple[int, str, str]:
        """(epoch, UTC text to the second, UTC day) of `raw`; `_NO_TIME` (day "") when
        unusable (not None: mypyc returns a fixed tuple without allocating it)."""
        if not isinstance(raw, str):
            return _NO_TIME
        clock = self._clock
        if clock is not None:
            known: tuple[int, str, str] | None = clock.read(raw)
            if known is not None:
                return known
            return self._parse(raw)
        fast = self._fast.get(raw[:17])
        if fast is not None:
            size = len(raw)
            # Seconds 00-59, then "Z" or a fraction of 1-9 ASCII digits and "Z".
            if (
                size >= 20
                and raw[-1] == "Z"
                and raw[17] in "012345"
                and raw[18] in "0123456789"
                and (
                    size == 20
                    or (raw[19] == "." and size <= 30 and raw[20:-1].isdigit() and raw.isascii())
                )
            ):
                base, day, epoch = fast
                if not self._minute_epochs:
                    epoch = (base + int(raw[17:19])) // self._rotation
                return epoch, raw if size == 20 else raw[:19] + "Z", day
        return self._parse(raw)

    def _parse(self, raw: str) -> tuple[int, str, str]:
        if len(raw) > 64 or not _RFC3339.match(raw):
            return _NO_TIME
        try:
            moment = datetime.fromisoformat(raw.upper())
        except ValueError:
            return _NO_TIME
        if moment.tzinfo is None or moment.utcoffset() is None:
            return _NO_TIME
        seconds = math.floor(moment.timestamp())
        minute = seconds // 60
        texts = self._minutes.get(minute)
        if texts is None:
            start = datetime.fromtimestamp(minute * 60, tz=UTC)
            texts = (start.strftime("%Y-%m-%dT%H:%M:"), start.strftime("%Y-%m-%d"))
            bounded_put(self._minutes, minute, texts, max_size=_TIME_CACHE_SIZE)
            if self._clock is None and 1 <= start.year <= 9999:
                base = minute * 60
                known = (base, texts[1], base // self._rotation)
                bounded_put(self._fast, texts[0], known, max_size=_TIME_CACHE_SIZE)
        if self._clock is not None and len(texts[0]) == 17:
            # Four-digit years: the form the clock reads. (Put again whenever this minute
            # comes here: the clock may have given its slot to another minute since.)
            base = minute * 60
            self._clock.put(texts[0], base, texts[1], base // self._rotation)
        return seconds // self._rotation, f"{texts[0]}{seconds % 60:02d}Z", texts[1]


class Pipeline:
    """The whole anonymizer chain for one policy. Build with `from_policy`.

    Not thread-safe (its caches are plain dicts): use one per worker process, as the
    stream does (one actor per partition).

    The units' results for a raw value (IP, URL, referrer, search terms, user agent,
    language) are memoised here, already reduced to the allow-listed output fields, so a
    value seen before costs one dict look-up. Each is a pure function of that value and the
    policy (`tests/anonymizers/test_memo.py` checks the chain against the plain composition
    of its units); the memos are bounded and live in process memory only.
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
        self._record = record_actions
        self.allowlist = Allowlist(policy.output)
        wanted = self.allowlist.names
        self.gate = ConsentGate(policy.consent, consent)
        self._time = _EventTime(keys.rotation_seconds)
        self._pseudonyms = Pseudonymizer(policy.identifiers, kept=wanted)
        self._keeps_identifiers = self._pseudonyms.keeps_identifiers
        self._geo_fields = tuple(name for name in _GEO_FIELDS if name in wanted)
        self._ip = IpAnonymizer(policy.geo, geo, fields=self._geo_fields)
        self._geo = geo
        self._ipv4_value = ipv4_reader()
        self._ips: Memo[str, _IpEntry] = Memo(
            self._ip_entry, max_size=_IP_CACHE_SIZE, values="object"
        )
        # The units below are uncached: their results are memoised here, once.
        self._urls = UrlScrubber(policy.urls, cache_size=0)
        self._url_entries: Memo[str, _UrlEntry] = Memo(self._url_entry, max_size=_URL_CACHE_SIZE)
        self._referrers = ReferrerScrubber(policy.urls, cache_size=0)
        self._referrer_entries: Memo[str, _ReferrerEntry] = Memo(
            self._referrer_entry, max_size=_URL_CACHE_SIZE
        )
        self._want_page = "page_url" in wanted
        self._want_link = "link_url" in wanted
        self._want_referrer_host = "referrer_host" in wanted
        self._want_referrer_internal = "referrer_internal" in wanted
        self._want_referrer = self._want_referrer_host or self._want_referrer_internal
        # The page's host decides whether a referrer is internal.
        self._want_page_host = self._want_page or self._want_referrer_internal
        self._search = SearchTermScrubber(policy.search_terms)
        self._search_entries: Memo[str, _SearchEntry] = Memo(
            self._search_entry, max_size=_SEARCH_CACHE_SIZE
        )
        self._want_search = "search_terms" in wanted
        self._context = ContextAnonymizer(policy.context, cache_size=0)
        self._device_fields = tuple(name for name in _DEVICE_FIELDS if name in wanted)
        self._devices: Memo[str, dict[str, Any]] = Memo(
            self._device_entry, max_size=_CONTEXT_CACHE_SIZE
        )
        self._want_language = "language" in wanted
        self._languages: Memo[str, dict[str, Any]] = Memo(
            self._language_entry, max_size=_CONTEXT_CACHE_SIZE
        )
        # The memos' dicts, read directly on the hot path (see anonymizers.memo).
        self._ip_table = self._ips.table
        self._url_table = self._url_entries.plain_table
        self._referrer_table = self._referrer_entries.plain_table
        self._search_table = self._search_entries.plain_table
        self._device_table = self._devices.plain_table
        self._language_table = self._languages.plain_table
        self._new_out = _NEW_DICT if native_enabled() else _empty_dict
        self._out_size = len(self.allowlist.fields)
        self._want_time_on_page = "time_on_page_ms" in wanted
        self._time_on_page_max = policy.context.time_on_page_max_ms
        self._last_epoch = -1
        self._last_key: EpochKey | None = None

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
        """The outcome of each event, in order.

        The key of an epoch is asked of the key provider once per batch (a batch is one
        synchronous call: no key can be destroyed during it).
        """
        keys: dict[int, EpochKey | None] = {}
        # The last epoch's key (when it has one), for this batch only (`_run` sets them).
        self._last_key = None
        key_for_epoch = self._keys.key_for_epoch
        results: list[Outcome] = []
        append = results.append
        for event in events:
            append(self._run(event if type(event) is dict else dict(event), keys, key_for_epoch))
        return results

    def cache_stats(self) -> dict[str, tuple[int, int, int]]:
        """(entries, bound, misses) of each cache, by name: what a worker's caches hold.

        Sizes and counts only; never the cached keys or values.
        """
        memos: dict[str, Memo[Any, Any]] = {
            "ip": self._ips,
            "url": self._url_entries,
            "referrer": self._referrer_entries,
            "search_terms": self._search_entries,
            "user_agent": self._devices,
            "language": self._languages,
        }
        memos.update({f"consent_digest:{n}": m for n, m in self.gate.digest_memos().items()})
        memos.update({f"pseudonym:{n}": m for n, m in self._pseudonyms.memos().items()})
        stats = {name: (len(m), m.max_size, m.misses) for name, m in memos.items()}
        if self._geo is not None:
            # Misses here are records read from the database, for the IP memo's misses.
            stats["geo"] = self._geo.cache_stats()
        return stats

    def __call__(self, event: Mapping[str, Any]) -> Outcome:
        return self.process_batch((event,))[0]

    def _run(
        self,
        event: dict[str, Any],
        keys: dict[int, EpochKey | None],
        key_for_epoch: Callable[[int], EpochKey | None],
    ) -> Outcome:
        # The identifier fields present (usually one, often none): the gate, the subject and
        # the echo guard loop over these only.
        present = [name for name in IDENTIFIER_FIELDS if name in event]
        reason = self.gate.check(event, present)
        if reason is not None:
            return _DROPPED[reason]
        event_type = event.get("event_type")
        if not isinstance(event_type, str) or event_type not in _EVENT_TYPES:
            return _INVALID
        epoch, occurred_at, day = self._time.read(event.get("occurred_at"))
        if not day:
            return _INVALID
        key = self._last_key
        if key is None or epoch != self._last_epoch:
            # Most events of a batch share their epoch: they skip this dict look-up (of
            # an int: hashing and comparing number objects).
            if epoch in keys:
                key = keys[epoch]
            else:
                key = keys[epoch] = key_for_epoch(epoch)
            self._last_epoch = epoch
            self._last_key = key
        if key is None:
            return _NO_KEY
        raw_ip = event.get("ip")
        if isinstance(raw_ip, str):
            ip_entry = self._ip_table.get(raw_ip)
            if ip_entry is None:
                ip_entry = self._ips.miss(raw_ip)
            ip_text, ip_fields, needles, located = ip_entry
        else:
            ip_text, ip_fields, needles, located = None, _NO_FIELDS, (), False
        subject, source = self._pseudonyms.find_subject(
            event, present, key, ip_text=ip_text, day=day
        )
        if not subject:
            return _NO_SUBJECT

        # Built in the order of the default allowlist; only allow-listed, non-None values.
        # Sized for every allow-listed field at once: no resizing as fields are added.
        out: dict[str, Any] = self._new_out(self._out_size)
        out["event_type"] = event_type
        out["occurred_at"] = occurred_at
        out["epoch"] = epoch
        out["subject"] = subject
        # (Names of their own: compiled, a loop variable keeps the type it gets here.)
        for geo_name, geo_value in ip_fields:
            out[geo_name] = geo_value
        if self._keeps_identifiers:
            out.update(self._pseudonyms.identifiers(event, key))
        # The echo guard's haystack: the free-text output fields, casefolded.
        haystack = ""
        page_host = None
        if self._want_page_host:
            page = event.get("page_url")
            if isinstance(page, str):
                url_entry = self._url_table.get(page)
                if url_entry is None:
                    url_entry = self._url_entries.miss(page)
                page_url, page_host, haystack = url_entry
                if page_url is not None and self._want_page:
                    out["page_url"] = page_url
                else:
                    haystack = ""
        if self._want_referrer:
            referrer = event.get("referrer_url")
            if isinstance(referrer, str):
                referrer_entry = self._referrer_table.get(referrer)
                if referrer_entry is None:
                    referrer_entry = self._referrer_entries.miss(referrer)
                host, configured_internal, referrer_hay = referrer_entry
                if host is not None:
                    if self._want_referrer_host:
                        out["referrer_host"] = host
                        haystack = f"{haystack}\x00{referrer_hay}"
                    if self._want_referrer_internal:
                        out["referrer_internal"] = configured_internal or host == page_host
        if self._want_link:
            link = event.get("link_url")
            if isinstance(link, str):
                url_entry = self._url_table.get(link)
                if url_entry is None:
                    url_entry = self._url_entries.miss(link)
                link_url, _, link_hay = url_entry
                if link_url is not None:
                    out["link_url"] = link_url
                    haystack = f"{haystack}\x00{link_hay}"
        search_action = None
        if self._want_search:
            terms = event.get("search_terms")
            if isinstance(terms, str):
                search_entry = self._search_table.get(terms)
                if search_entry is None:
                    search_entry = self._search_entries.miss(terms)
                clean_terms, search_action, search_hay = search_entry
                if clean_terms is not None:
                    out["search_terms"] = clean_terms
                    haystack = f"{haystack}\x00{search_hay}"
        if self._device_fields:
            if (
                event.get("browser") is None
                and event.get("os") is None
                and event.get("hardware") is None
            ):
                user_agent = event.get("user_agent")
                if isinstance(user_agent, str) and user_agent:
                    device = self._device_table.get(user_agent)
                    if device is None:
                        device = self._devices.miss(user_agent)
                    out.update(device)
            else:
                # App SDK fields override the user agent: rare, not memoised.
                context = self._context(event)
                for name in self._device_fields:
                    value = getattr(context, name)
                    if value is not None:
                        out[name] = value
        if self._want_language:
            language = event.get("browser_language")
            if isinstance(language, str):
                primary = self._language_table.get(language)
                if primary is None:
                    primary = self._languages.miss(language)
                out.update(primary)
        if self._want_time_on_page:
            time_on_page = event.get("time_on_page_ms")
            if time_on_page is not None:
                clamped = clamp_time_on_page(time_on_page, maximum_ms=self._time_on_page_max)
                if clamped is not None:
                    out["time_on_page_ms"] = clamped

        echoed: list[str] = _NO_ECHOES
        if haystack:
            # The event's own identifiers, then the IP's needles from its memo entry; the
            # guard only runs (and the needle list is only built) when one is found.
            for needle in needles:
                if needle in haystack:
                    echoed = self.allowlist.guard(out, _event_needles(event, present, needles))
                    break
            else:
                for field in present:
                    value = event[field]
                    if (
                        isinstance(value, str)
                        and len(value) >= ECHO_MIN_LENGTH
                        and value.casefold() in haystack
                    ):
                        all_needles = _event_needles(event, present, needles)
                        echoed = self.allowlist.guard(out, all_needles)
                        break
        if self._record:
            actions = [f"subject:{source}"]
            _describe(actions, event, out, raw_ip, ip_text, located, search_action, echoed)
            return Anonymized(out, subject, epoch, tuple(actions))
        return Anonymized(out, subject, epoch)

    # ---------------------------------------------------------------- memoised per raw value
    def _ip_entry(self, raw_ip: str) -> _IpEntry:
        ip = parse_ip(raw_ip, self._ipv4_value)
        # The echo guard looks for the address as sent and in canonical form.
        sent = raw_ip.strip()
        if ip is None:
            return None, _NO_FIELDS, tuple(echo_needles((sent,))), False
        fields, located = self._ip.output_fields(ip) if self._geo_fields else ((), False)
        texts = (sent,) if ip.text == sent else (sent, ip.text)
        return ip.text, fields, tuple(echo_needles(texts)), located

    def _url_entry(self, url: str) -> _UrlEntry:
        scrubbed = self._urls(url)
        if scrubbed is None:
            return None, None, ""
        return scrubbed, host_of_scrubbed(scrubbed), echo_haystack(scrubbed)

    def _referrer_entry(self, referrer: str) -> _ReferrerEntry:
        host = self._referrers.host(referrer)
        if host is None:
            return None, False, ""
        return host, self._referrers.configured_internal(host), echo_haystack(host)

    def _search_entry(self, terms: str) -> _SearchEntry:
        outcome = self._search(terms)
        haystack = "" if outcome.terms is None else echo_haystack(outcome.terms)
        return outcome.terms, outcome.action, haystack

    # User agents and languages are few: their fields stay dicts (a faster `update`).
    def _device_entry(self, user_agent: str) -> dict[str, Any]:
        device = self._context.device(user_agent)
        found = ((name, getattr(device, name)) for name in self._device_fields)
        return {name: value for name, value in found if value is not None}

    def _language_entry(self, raw_language: str) -> dict[str, Any]:
        primary = self._context.language(raw_language)
        return {} if primary is None else {"language": primary}


_NO_ECHOES: Final[list[str]] = []
"""What the echo guard changed in most events: nothing (shared, never appended to)."""


def _event_needles(
    event: Mapping[str, Any], present: list[str], ip_needles: tuple[str, ...]
) -> list[str]:
    """The echo guard's needles: the event's identifiers (`present` is in the order of
    `IDENTIFIER_FIELDS`, the order the guard replaces them in), then the IP's."""
    found = echo_needles(value for name in present if isinstance(value := event[name], str))
    found += ip_needles
    return found


def _describe(
    actions: list[str],
    event: Mapping[str, Any],
    out: Mapping[str, Any],
    raw_ip: object,
    ip_text: str | None,
    located: bool,
    search_action: str | None,
    echoed: list[str],
) -> None:
    """What the units did, for preview reports (only when recording actions)."""
    if raw_ip is not None:
        if ip_text is None:
            actions.append("ip:malformed_dropped")
        else:
            actions.append("ip:geolocated" if located else "ip:not_located")
            actions.append("ip:truncated" if "ip_prefix" in out else "ip:dropped")
    for name in IDENTIFIER_FIELDS:
        if name in event:
            actions.append(f"{name}:{'pseudonymized' if name in out else 'dropped'}")
    for name in ("page_url", "link_url"):
        if name in event:
            actions.append(f"{name}:{'scrubbed' if name in out else 'dropped'}")
    if "referrer_url" in event:
        actions.append("referrer_url:to_host" if "referrer_host" in out else "referrer_url:dropped")
    if "search_terms" in event:
        action = search_action
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
