"""`TrafficGenerator`: realistic, seeded traffic of a French jewellery shop, as Kafka messages.

Visitors (see `people`) browse in sessions; many sessions run at once and their events
interleave. A session is a walk over pages: page_view, then maybe a search or a link click,
then (usually) a page_leave with the time spent, then the next page, until the visitor
leaves. The generator cuts the event stream into collector messages (one object, or a batch
array of 1..50), plants malformed items, and emits consent records mid-stream.
"""

from __future__ import annotations

import itertools
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from stream.local.traffic import catalogue, pii
from stream.local.traffic.catalogue import SITE, encode_component
from stream.local.traffic.geo import GeoPool
from stream.local.traffic.malformed import REASON_MIX, make_malformed
from stream.local.traffic.people import DEFAULT_PEOPLE, Person, Population
from stream.local.traffic.randomness import Draws, Weighted
from stream.local.traffic.truth import Item, Message, Truth
from stream.settings import Settings

DEFAULT_RATE = 1_000.0  # events (items) per second
DEFAULT_NO_ID_SHARE = 0.10
DEFAULT_MALFORMED_SHARE = 0.01
DEFAULT_OPTOUT_SHARE = 0.02
DEFAULT_LATE_SHARE = 0.002
DEFAULT_MAX_MESSAGE_BYTES: int = Settings.model_fields["max_message_bytes"].default

ACTIVE_SESSIONS = 48  # sessions running at once (their events interleave)
SINGLE_OBJECT_SHARE = 0.3  # messages holding one event object, not an array
MAX_BATCH = 50
JITTER_MS = 800  # events occur up to this long before the collector's clock (which starts
# this much after `start`, so that no event but a late one precedes `start`)
LATE_MS = (30_000, 600_000)  # delay of late events (offline apps, retries), ms
STAMP_BLOCK = 4_096  # simulated timestamps formatted at a time
LOGGED_IN_SHARE = 0.55  # sessions of account holders that are logged in
CONTINUE_SHARE = 0.8  # chance to view another page after leaving one (~5 pages a visit)
PAGE_LEAVE_SHARE = 0.8  # page views followed by a page_leave (beacons get lost)
SEARCH_PII_SHARE = 0.05  # searches carrying personal data
MAC_IMEI_EVENT_SHARE = 0.3  # app events that carry the device's MAC / IMEI when it has one

VIEW, SEARCH, CLICK, LEAVE, DONE = range(5)

PAGE_KINDS: Weighted[str] = Weighted(
    [
        ("product", 0.45),
        ("category", 0.17),
        ("subcategory", 0.06),
        ("home", 0.08),
        ("cart", 0.06),
        ("checkout", 0.03),
        ("account", 0.04),
        ("info", 0.05),
        ("blog", 0.04),
        ("confirmation", 0.01),
        ("password_reset", 0.005),
        ("unsubscribe", 0.005),
    ]
)
SOURCES: Weighted[str] = Weighted(
    [
        ("direct", 0.28),
        ("organic", 0.30),
        ("google_ads", 0.08),
        ("instagram", 0.07),
        ("facebook", 0.05),
        ("pinterest", 0.04),
        ("newsletter", 0.07),
        ("magazine", 0.03),
        ("bing_ads", 0.02),
        ("affiliate", 0.03),
        ("internal", 0.03),
    ]
)
ENGINES: Weighted[str] = Weighted(catalogue.SEARCH_ENGINES)
PII_KINDS = ("email", "phone", "card", "iban", "ip", "digits")
CATEGORY_URLS = tuple(f"{SITE}/{category}" for category in catalogue.CATEGORIES)
ABSURD_DURATIONS = (10**9, 2**31 - 1, 259_200_000, 10**12)


@dataclass(slots=True)
class Session:
    """One visit: who, the fields every event shares, and where the visitor is."""

    person: Person
    base: dict[str, Any]  # every event's fields but its own, after 3 placeholders (event_id...)
    page: str
    page_tags: tuple[str, ...]
    referrer: str | None
    referrer_tags: tuple[str, ...]
    device_ids: bool  # the events may carry the device's MAC / IMEI
    visit: int  # serial number of the session
    consent_due: bool
    state: int = VIEW
    next_page: tuple[str, tuple[str, ...]] | None = None
    leaving: bool = False
    tags: list[str] = field(default_factory=list)


class TrafficGenerator:
    """Seeded shop traffic as Kafka messages, with its ground truth.

    seed: fixes all content (None: a random seed, reported in `parameters()`).
    start: time of the first event (aware datetime); None = now. Ignored when `realtime`.
    rate: events (items, valid or not) per second that timestamps advance by (default 1000).
    realtime: stamp events with the wall clock instead (for paced Kafka output).
    geo_db: `.mmdb` path, or a `GeoPool`; None = the built-in prefix table.
    people: population size (default 20 000), activity Zipf-distributed.
    no_id_share: sessions (hence ~events) without any identifier (default 0.10).
    malformed_share: items that are malformed (default 0.01), every dead-letter reason.
    optout_share: sessions that send a consent record mid-stream (default 0.02).
    late_share: events stamped 30 s..10 min in the past (default 0.002).
    max_message_bytes: the pipeline's limit, for too_large items (default: Settings').
    keep_log: keep every message's items in `truth()["log"]` (memory grows with output).
    """

    def __init__(
        self,
        *,
        seed: int | None = None,
        start: datetime | None = None,
        rate: float = DEFAULT_RATE,
        realtime: bool = False,
        geo_db: Path | str | GeoPool | None = None,
        people: int = DEFAULT_PEOPLE,
        no_id_share: float = DEFAULT_NO_ID_SHARE,
        malformed_share: float = DEFAULT_MALFORMED_SHARE,
        optout_share: float = DEFAULT_OPTOUT_SHARE,
        late_share: float = DEFAULT_LATE_SHARE,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        keep_log: bool = False,
    ) -> None:
        _check_share("no_id_share", no_id_share)
        _check_share("malformed_share", malformed_share)
        _check_share("optout_share", optout_share)
        _check_share("late_share", late_share)
        if not rate > 0:
            raise ValueError(f"rate must be > 0 events/s; got {rate}")
        if people < 1:
            raise ValueError(f"people must be >= 1; got {people}")
        if start is not None and start.tzinfo is None:
            raise ValueError(f"start must carry a time zone; got {start.isoformat()}")
        self.seed = secrets.randbits(48) if seed is None else seed
        self.rate = rate
        self.realtime = realtime
        now = datetime.now(UTC) if start is None else start
        self.start_ms = int(now.timestamp() * 1000)
        self.geo = (
            geo_db
            if isinstance(geo_db, GeoPool)
            else (GeoPool.builtin() if geo_db is None else GeoPool.from_mmdb(Path(geo_db)))
        )
        self.no_id_share = no_id_share
        self.malformed_share = malformed_share
        self.optout_share = optout_share
        self.late_share = late_share
        self.max_message_bytes = max_message_bytes
        self.people = people
        self._draws = Draws(self.seed)
        self._population = Population(size=people, geo=self.geo, draws=self._draws)
        self._products = catalogue.build_products()
        self._product_mix: Weighted[catalogue.Product] = Weighted.zipf(
            self._products, exponent=catalogue.PRODUCT_ZIPF
        )
        self._search_mix: Weighted[str] = Weighted.zipf(catalogue.SEARCH_TERMS, exponent=1.0)
        self._stamps: dict[int, str] = {}  # second -> "YYYY-MM-DDTHH:MM:SS"
        self._ms_per_item = 1000.0 / rate
        self._clock0_ms = self.start_ms + JITTER_MS  # the collector clock at the first item
        self._next_stamp = self._simulated_stamps().__next__
        self._items = 0
        self._pending_consent: list[Message] = []
        self._opted_out: dict[int, list[tuple[str, str]]] = {}
        self._truth = Truth(keep_log=keep_log)
        self._visit_numbers = itertools.count()
        self._sessions = [self._new_session() for _ in range(ACTIVE_SESSIONS)]

    # --- public -------------------------------------------------------------------------

    def messages(self, *, max_items: int | None = None) -> Iterator[Message]:
        """Messages in send order, until `max_items` items (valid + malformed events) were
        generated (None: forever). Consent messages follow the raw message that triggered
        them. Each yielded message is counted in `truth()` as sent."""
        while max_items is None or self._items < max_items:
            limit = sys.maxsize if max_items is None else max_items - self._items
            for message in self._next_messages(limit):
                self._truth.add(message)
                yield message

    def truth(self) -> dict[str, Any]:
        """Ground truth of the messages yielded so far, with `parameters()` under `generator`."""
        return {"generator": self.parameters(), **self._truth.summary()}

    def parameters(self) -> dict[str, Any]:
        """What reproduces this traffic: seed, start, rate and shares."""
        return {
            "seed": self.seed,
            "start": None if self.realtime else _iso(self.start_ms),
            "realtime": self.realtime,
            "rate": self.rate,
            "people": self.people,
            "no_id_share": self.no_id_share,
            "malformed_share": self.malformed_share,
            "optout_share": self.optout_share,
            "late_share": self.late_share,
            "max_message_bytes": self.max_message_bytes,
            "geo_source": self.geo.source,
        }

    # --- messages -----------------------------------------------------------------------

    def _next_messages(self, limit: int) -> list[Message]:
        """One collector message of up to `limit` items, preceded by the standalone malformed
        messages met while filling it and followed by the consent records it triggered."""
        uniform = self._draws.uniform
        if uniform() < SINGLE_OBJECT_SHARE:
            size, as_array = 1, False
        else:
            size, as_array = 1 + int(uniform() * MAX_BATCH), True
        out: list[Message] = []
        batch: list[Item] = []
        for _ in range(limit):
            event, session = self._next_event()
            self._items += 1
            person = session.person
            if uniform() < self.malformed_share:
                bad = make_malformed(
                    self._draws.weighted(REASON_MIX),
                    event,
                    self._draws,
                    max_message_bytes=self.max_message_bytes,
                )
                item = Item(
                    bad.document, bad.data, bad.reason, bad.path, person.index, person.country
                )
                if bad.standalone:  # sent on its own, next to the batch being filled
                    out.append(Message("raw", None, item.data, (item,)))
                    continue
            else:
                tags = tuple(session.tags) if session.tags else ()
                item = _new_item(
                    (
                        event,
                        orjson.dumps(event),
                        None,
                        None,
                        person.index,
                        person.country,
                        tags,
                        session.visit,
                    )
                )
            batch.append(item)
            if len(batch) == size:
                break
        if batch:
            out.append(_raw_message(batch, as_array=as_array))
        out.extend(self._pending_consent)
        self._pending_consent.clear()
        return out

    # --- events -------------------------------------------------------------------------

    def _next_event(self) -> tuple[dict[str, Any], Session]:
        uniform = self._draws.uniform
        sessions = self._sessions
        while True:
            slot = int(uniform() * ACTIVE_SESSIONS)
            session = sessions[slot]
            if session.tags:
                session.tags.clear()
            step = self._advance(session)
            if step is None:
                sessions[slot] = self._new_session()
                continue
            event_type, fields = step
            event = session.base.copy()  # a C-level copy; these keys keep their place first:
            event["event_id"] = self._draws.uuid4()
            event["event_type"] = event_type
            event["occurred_at"] = self._occurred_at(session)
            event.update(fields)
            person = session.person
            if session.device_ids:
                if person.mac is not None and uniform() < MAC_IMEI_EVENT_SHARE:
                    event["mac"] = person.mac
                if person.imei is not None and uniform() < MAC_IMEI_EVENT_SHARE:
                    event["imei"] = person.imei
            if session.consent_due:
                session.consent_due = False
                self._queue_consent(person)
            return event, session

    def _advance(self, s: Session) -> tuple[str, dict[str, Any]] | None:
        """The session's next event (type and own fields), or None when the visit is over."""
        draws = self._draws
        while True:
            if s.state == VIEW:
                fields = {"page_url": s.page}
                s.tags.extend(s.page_tags)
                if s.referrer is not None:
                    fields["referrer_url"] = s.referrer
                    s.tags.extend(s.referrer_tags)
                roll = draws.uniform()
                s.state = SEARCH if roll < 0.12 else CLICK if roll < 0.30 else LEAVE
                return "page_view", fields
            if s.state == SEARCH:
                terms, kind = self._search_terms(s.person)
                s.tags.extend(s.page_tags)
                if kind:
                    s.tags.append(f"search_terms:{kind}")
                tags = (f"page_url:{kind}",) if kind else ()
                s.next_page = (catalogue.search_results_url(terms), tags)
                s.state = LEAVE
                return "search", {"page_url": s.page, "search_terms": terms}
            if s.state == CLICK:
                link, link_tags, internal = self._link()
                s.tags.extend(s.page_tags)
                s.tags.extend(link_tags)
                if internal:
                    page_tags = tuple(t.replace("link_url", "page_url") for t in link_tags)
                    s.next_page = (link, page_tags)
                s.leaving = not internal
                s.state = LEAVE
                return "link_click", {"page_url": s.page, "link_url": link}
            if s.state == LEAVE:
                left = s.page, s.page_tags
                self._move_on(s)
                if draws.chance(PAGE_LEAVE_SHARE):
                    s.tags.extend(left[1])
                    return "page_leave", {
                        "page_url": left[0],
                        "time_on_page_ms": self._time_on_page(s),
                    }
                continue
            return None

    def _move_on(self, s: Session) -> None:
        if s.leaving or not self._draws.chance(CONTINUE_SHARE):
            s.state = DONE
            return
        s.referrer = s.page
        s.referrer_tags = tuple(t.replace("page_url", "referrer_url") for t in s.page_tags)
        s.page, s.page_tags = s.next_page if s.next_page is not None else self._page()
        s.next_page = None
        s.state = VIEW

    def _occurred_at(self, session: Session) -> str:
        """The event's time: the collector clock minus up to JITTER_MS (much more for a late
        event). Simulated times come in blocks from `_simulated_stamps`."""
        if not self.realtime:
            stamp, late = self._next_stamp()
            if late:
                session.tags.append("occurred_at:late")
            return stamp
        stamp_ms = int(time.time() * 1000) - self._draws.below(JITTER_MS)
        if self._draws.chance(self.late_share):
            stamp_ms -= self._draws.between(*LATE_MS)
            session.tags.append("occurred_at:late")
        return self._stamp(stamp_ms)

    def _simulated_stamps(self) -> Iterator[tuple[str, bool]]:
        """(occurred_at, late) of item 0, 1, 2...: item k is stamped `start + JITTER_MS +
        k / rate` minus its jitter, formatted by numpy a block at a time."""
        rng = self._draws.numpy
        first = 0
        while True:
            index = np.arange(first, first + STAMP_BLOCK, dtype=np.float64)
            jitter = (rng.random(STAMP_BLOCK) * JITTER_MS).astype(np.int64)
            late = rng.random(STAMP_BLOCK) < self.late_share
            delay = np.where(late, rng.integers(LATE_MS[0], LATE_MS[1] + 1, STAMP_BLOCK), 0)
            ms = self._clock0_ms + np.floor(index * self._ms_per_item).astype(np.int64)
            stamps = np.datetime_as_string(
                (ms - jitter - delay).astype("datetime64[ms]"), unit="ms"
            ).tolist()
            yield from zip([f"{stamp}Z" for stamp in stamps], late.tolist(), strict=True)
            first += STAMP_BLOCK

    def _stamp(self, ms: int) -> str:
        second, milli = divmod(ms, 1000)
        return f"{self._stamps.get(second) or self._second_prefix(second)}.{milli:03d}Z"

    def _second_prefix(self, second: int) -> str:
        if len(self._stamps) > 4096:
            self._stamps.clear()
        prefix = self._stamps[second] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return prefix

    def _time_on_page(self, s: Session) -> int | float:
        draws = self._draws
        roll = draws.uniform()
        if roll < 0.003:
            s.tags.append("time_on_page_ms:absurd")
            return draws.pick(ABSURD_DURATIONS)
        if roll < 0.013:
            return 0
        value = draws.lognormal(median=25_000.0, sigma=1.3)
        return round(value, 3) if roll > 0.95 else int(value)

    # --- sessions -----------------------------------------------------------------------

    def _new_session(self) -> Session:
        draws = self._draws
        person = self._population.choose()
        cookieless = draws.chance(self.no_id_share)
        logged_in = person.user_id is not None and draws.chance(LOGGED_IN_SHARE)
        base = self._session_base(person, cookieless=cookieless, logged_in=logged_in)
        (page, page_tags), (referrer, referrer_tags) = self._landing(person)
        return Session(
            person=person,
            base=base,
            page=page,
            page_tags=page_tags,
            referrer=referrer,
            referrer_tags=referrer_tags,
            device_ids=not cookieless and (person.mac is not None or person.imei is not None),
            visit=next(self._visit_numbers),
            consent_due=bool(person.subject_ids()) and draws.chance(self.optout_share),
        )

    def _session_base(self, person: Person, *, cookieless: bool, logged_in: bool) -> dict[str, Any]:
        draws = self._draws
        base: dict[str, Any] = dict.fromkeys(("event_id", "event_type", "occurred_at"))
        if not cookieless:
            if logged_in:
                base["user_id"] = person.user_id
            for kind, value in (
                ("cookie_id", person.cookie_id),
                ("device_id", person.device_id),
                ("ad_id", person.ad_id),
            ):
                if value is not None:
                    base[kind] = value
        ip = self._session_ip(person)
        if ip is not None:
            base["ip"] = ip
        base["user_agent"] = person.user_agent
        if person.described:
            base["os"], base["browser"] = person.os, person.browser
            base["hardware"] = person.profile.hardware
        base["browser_language"] = person.language
        if person.gpc is not None:
            base["gpc"] = person.gpc
        if person.dnt is not None:
            base["dnt"] = person.dnt
        if person.under_16 or (logged_in or person.profile.is_app):
            base["age_under_16"] = person.under_16
        if person.consent is not None:
            base["consent"] = dict(person.consent)
        # Fields outside the schema, which the pipeline's allowlist must drop.
        if person.profile.is_app:
            base["app_version"] = person.browser.rsplit(" ", 1)[-1]
        elif draws.chance(0.7):
            base["tracker"] = "bjx-js/2.4.1"
        if draws.chance(0.3):
            base["session_id"] = draws.hex(12)
        return base

    def _session_ip(self, person: Person) -> str | None:
        draws = self._draws
        if person.ipv6 and draws.chance(0.6):
            return draws.pick(person.ipv6)
        if not person.ipv4:
            return draws.pick(person.ipv6) if person.ipv6 else None
        ipv4 = draws.pick(person.ipv4)
        return f"::ffff:{ipv4}" if draws.chance(0.02) else ipv4  # IPv4-mapped, as some proxies log

    # --- pages and referrers ------------------------------------------------------------

    def _page(self) -> tuple[str, tuple[str, ...]]:
        """A page to navigate to, with the PII tags of its URL."""
        draws = self._draws
        kind = draws.weighted(PAGE_KINDS)
        tags: tuple[str, ...] = ()
        if kind == "product":
            url = draws.weighted(self._product_mix).url
            if draws.chance(0.15):
                url += "?" + draws.pick(catalogue.PRODUCT_PARAMS)
            if draws.chance(0.06):
                url += "#" + draws.pick(catalogue.FRAGMENTS)
        elif kind == "category":
            url = draws.pick(CATEGORY_URLS)
            if draws.chance(0.25):
                url += "?" + draws.pick(catalogue.CATEGORY_FILTERS)
        elif kind == "subcategory":
            url = SITE + draws.pick(catalogue.SUBCATEGORIES)
        elif kind == "home":
            url = SITE + "/"
        elif kind == "cart":
            url = f"{SITE}/panier"
        elif kind == "checkout":
            url = SITE + draws.pick(catalogue.CHECKOUT_PAGES)
        elif kind == "account":
            url = SITE + draws.pick(catalogue.ACCOUNT_PAGES)
        elif kind == "info":
            url = SITE + draws.pick(catalogue.INFO_PAGES)
        elif kind == "blog":
            url = SITE + draws.pick(catalogue.BLOG_PAGES)
        elif kind == "confirmation":
            email = pii.email_address(draws)
            url = (
                f"{SITE}/commande/confirmation?commande=CMD-2025-{draws.digits(6)}"
                f"&email={encode_component(email)}"
            )
            tags = ("page_url:email",)
        elif kind == "password_reset":
            url = f"{SITE}/mon-compte/reinitialiser-mot-de-passe/{draws.hex(24)}"
            tags = ("page_url:token",)
        else:
            url = f"{SITE}/newsletter/desinscription/{pii.email_address(draws)}"
            tags = ("page_url:email",)
        if draws.chance(0.03):  # legacy session token in the query string
            url = _with_query(url, f"session={draws.hex(16)}")
            tags = (*tags, "page_url:token")
        return url, tags

    def _landing(
        self, person: Person
    ) -> tuple[tuple[str, tuple[str, ...]], tuple[str | None, tuple[str, ...]]]:
        """First page of a visit and its referrer, decorated by the traffic source."""
        draws = self._draws
        source = draws.weighted(SOURCES)
        url, tags = (SITE + "/", ()) if source == "direct" and draws.chance(0.5) else self._page()
        referrer: str | None = None
        referrer_tags: tuple[str, ...] = ()
        campaign = draws.pick(catalogue.CAMPAIGNS)
        if source == "organic":
            referrer = draws.weighted(ENGINES)
        elif source == "google_ads":
            referrer = "https://www.google.fr/"
            url = _with_query(
                url,
                f"utm_source=google&utm_medium=cpc&utm_campaign={campaign}"
                f"&gclid=EAIaIQobChMI{draws.hex(12)}",
            )
        elif source == "bing_ads":
            referrer = "https://www.bing.com/"
            url = _with_query(url, f"utm_source=bing&utm_medium=cpc&msclkid={draws.hex(16)}")
        elif source in ("instagram", "facebook"):  # link shims carry the landing URL
            referrer = (
                f"https://l.instagram.com/?u={encode_component(url)}&e=AT{draws.hex(10)}"
                if source == "instagram"
                else f"https://lm.facebook.com/l.php?u={encode_component(url)}&h=AT{draws.hex(10)}"
            )
            referrer_tags = tuple(t.replace("page_url", "referrer_url") for t in tags)
            url = _with_query(
                url,
                f"utm_source={source}&utm_medium=social"
                f"&utm_campaign={campaign}&fbclid=IwAR{draws.hex(20)}",
            )
        elif source == "pinterest":
            referrer = f"https://fr.pinterest.com/pin/{draws.digits(15)}/"
            url = _with_query(url, "utm_source=pinterest&utm_medium=social")
        elif source == "newsletter":
            url, tags, referrer, referrer_tags = self._newsletter(person, url, tags, campaign)
        elif source == "magazine":
            referrer = draws.pick(catalogue.MAGAZINES)
        elif source == "affiliate":
            referrer = "https://www.igraal.com/codes-promo/bijoux-example"
            url = _with_query(
                url, f"utm_source=affiliation&utm_medium=cashback&aff_id={draws.digits(5)}"
            )
        elif source == "internal":
            referrer = draws.weighted(self._product_mix).url
        return (url, tags), (referrer, referrer_tags)

    def _newsletter(
        self, person: Person, url: str, tags: tuple[str, ...], campaign: str
    ) -> tuple[str, tuple[str, ...], str | None, tuple[str, ...]]:
        draws = self._draws
        query = f"utm_source=newsletter&utm_medium=email&utm_campaign={campaign}"
        if draws.chance(0.5):  # the e-mail service appends the recipient
            query += f"&email={encode_component(person.email)}"
            tags = (*tags, "page_url:email")
        referrer: str | None = None
        referrer_tags: tuple[str, ...] = ()
        roll = draws.uniform()
        if roll < 0.3:
            referrer = (
                f"https://newsletter.bijoux-example.fr/c/clic?email={encode_component(person.email)}"
                f"&lien={draws.between(1, 40)}"
            )
            referrer_tags = ("referrer_url:email",)
        elif roll < 0.6:
            referrer = draws.pick(catalogue.WEBMAILS)
        return _with_query(url, query), tags, referrer, referrer_tags

    def _link(self) -> tuple[str, tuple[str, ...], bool]:
        """A clicked link: URL, PII tags, internal (True) or outbound."""
        draws = self._draws
        roll = draws.uniform()
        if roll < 0.6:
            url, tags = self._page()
            return url, tuple(t.replace("page_url", "link_url") for t in tags), True
        if roll < 0.8:
            return draws.pick(catalogue.SOCIAL_LINKS), (), False
        if roll < 0.95:
            return draws.pick(catalogue.SERVICE_LINKS), (), False
        if roll < 0.98:  # parcel tracking: a long digit run
            return (
                f"https://www.laposte.fr/outils/suivre-vos-envois?code=6A{draws.digits(11)}",
                ("link_url:digits",),
                False,
            )
        phone = "33" + pii.mobile_number(draws)[1:]  # share with a friend on WhatsApp
        return (
            f"https://api.whatsapp.com/send?phone={phone}&text=Regarde%20cette%20bague",
            ("link_url:phone",),
            False,
        )

    def _search_terms(self, person: Person) -> tuple[str, str | None]:
        """Search terms and the kind of PII they carry (None if none)."""
        draws = self._draws
        roll = draws.uniform()
        if roll < SEARCH_PII_SHARE:
            kind = draws.pick(PII_KINDS)
            return self._pii_terms(kind, person), kind
        if roll < 0.12:
            return draws.pick(catalogue.SEARCH_TYPOS), None
        if roll < 0.25:
            return f"{draws.weighted(self._search_mix)} {draws.weighted(self._search_mix)}", None
        return draws.weighted(self._search_mix), None

    def _pii_terms(self, kind: str, person: Person) -> str:
        draws = self._draws
        if kind == "email":
            return draws.pick(("{}", "commande {}", "{} suivi colis")).format(person.email)
        if kind == "phone":
            number = pii.format_phone(person.phone, draws.below(6))
            return draws.pick(("{}", "rappeler au {}", "mon numéro {}")).format(number)
        if kind == "card":
            card = pii.format_card(pii.card_number(draws), draws.below(3))
            return draws.pick(("{}", "carte {}", "paiement {} refusé")).format(card)
        if kind == "iban":
            iban = pii.format_iban(pii.iban_fr(draws), draws.chance(0.5))
            return draws.pick(("{}", "virement {}", "remboursement {}")).format(iban)
        if kind == "ip":
            address = person.ipv4[0] if person.ipv4 else f"192.168.1.{draws.between(2, 254)}"
            return f"erreur connexion {address}"
        return f"commande {draws.digits(12)}"

    # --- consent ------------------------------------------------------------------------

    def _queue_consent(self, person: Person) -> None:
        """Queue a consent record of `person`, sent after the current raw message."""
        draws = self._draws
        standing = self._opted_out.get(person.index)
        record: dict[str, Any]
        if standing and draws.chance(0.35):
            kind, subject_id = standing.pop(draws.below(len(standing)))
            record = {"subject_type": kind, "subject_id": subject_id, "action": "opt_in"}
        else:
            action = draws.weighted(ACTION_MIX)
            ids = person.subject_ids()
            kind, subject_id = ids[0] if action != "opt_out" else draws.pick(ids)
            record = {"subject_type": kind, "subject_id": subject_id, "action": action}
            if action == "opt_out":
                purposes = draws.weighted(PURPOSE_MIX)
                if purposes:
                    record["purposes"] = list(purposes)
            if standing is not None and (kind, subject_id) in standing:
                standing.remove((kind, subject_id))
            if action == "opt_out":
                self._opted_out.setdefault(person.index, []).append((kind, subject_id))
        record["requested_at"] = self._stamp(self._clock_ms())
        value = orjson.dumps(record)
        item = Item(record, value, person=person.index, country=person.country)
        key = f"{record['subject_type']}:{record['subject_id']}".encode()
        self._pending_consent.append(Message("consent", key, value, (item,)))

    def _clock_ms(self) -> int:
        if self.realtime:
            return int(time.time() * 1000)
        return self._clock0_ms + int(self._items * self._ms_per_item)


ACTION_MIX: Weighted[str] = Weighted([("opt_out", 0.65), ("erase", 0.2), ("child", 0.15)])
PURPOSE_MIX: Weighted[tuple[str, ...]] = Weighted(
    [
        ((), 0.6),
        (("analytics", "advertising", "personalization"), 0.2),
        (("advertising",), 0.12),
        (("analytics",), 0.05),
        (("advertising", "personalization"), 0.03),
    ]
)


def _new_item(fields: tuple[Any, ...]) -> Item:
    """`Item(*fields)` without NamedTuple's Python-level `__new__` (3x faster)."""
    return tuple.__new__(Item, fields)


def _raw_message(items: list[Item], *, as_array: bool) -> Message:
    value = b"[" + b",".join(item.data for item in items) + b"]" if as_array else items[0].data
    return Message("raw", None, value, tuple(items))


def _with_query(url: str, query: str) -> str:
    base, hash_mark, fragment = url.partition("#")
    joined = f"{base}{'&' if '?' in base else '?'}{query}"
    return f"{joined}{hash_mark}{fragment}"


def _iso(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _check_share(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a share between 0 and 1; got {value}")
