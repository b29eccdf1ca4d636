"""Generated shop traffic for the end-to-end tests, with what each event must look like after
anonymisation, written down by the test rather than computed by the code under test.

Every person has a cookie id (their subject), an IP address in one network of the test
geolocation database (`tests.anonymizers.conftest.CITY_NETWORKS`, whose country and region
the table `PLACES` repeats), and a home raw partition: all their events go there, in time
order, so the order of one person's events (which decides the contribution caps) survives
the anonymize stage. Pages are clean URLs (no query, no digits, no token) that the URL
scrubber keeps as they are; search terms are lower-case words that normalisation keeps.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

SITE = "https://shop.example/p/"
PAGES: tuple[str, ...] = tuple(
    SITE + name
    for name in (
        "accueil",
        "bagues",
        "colliers",
        "bracelets",
        "montres",
        "boucles",
        "promotions",
        "contact",
        "livraison",
        "cadeaux",
    )
)
TERMS: tuple[str, ...] = ("bague or", "collier perles", "montre", "boucles argent", "gravure")
# (first three octets, lowest and highest host, country and region the chain must give).
# "unknown": the database knows the country but has no subdivision for 192.0.2.0/24;
# "Zurich": a subdivision without an ISO code (the chain falls back to its English name).
PLACES: tuple[tuple[str, int, int, str, str], ...] = (
    ("81.2.69.", 1, 254, "GB", "ENG"),
    ("203.0.113.", 1, 126, "FR", "IDF"),
    ("203.0.113.", 129, 254, "DE", "BE"),
    ("198.51.100.", 1, 254, "US", "CA"),
    ("192.0.2.", 1, 254, "NL", "unknown"),
    ("100.64.7.", 1, 254, "CH", "Zurich"),
)
DURATIONS_MS: tuple[int, ...] = (0, 800, 4_500, 12_000, 61_000, 300_000, 2_400_000)


def rfc3339_ms(t_ms: int) -> str:
    """RFC 3339 UTC text of a time in milliseconds since the Unix epoch."""
    moment = datetime.fromtimestamp(t_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Person:
    """One visitor: cookie id, address, expected geolocation and home raw partition."""

    cookie: str
    ip: str
    country: str
    region: str
    raw_partition: int


@dataclass(frozen=True, slots=True)
class Sent:
    """One raw event, its person, and the anonymized fields the test expects for it."""

    t_ms: int
    raw: dict[str, Any]
    person: Person
    view: dict[str, Any]


@dataclass
class Traffic:
    """Events in send order (each person's in time order) and the people."""

    people: dict[str, Person] = field(default_factory=dict)
    events: list[Sent] = field(default_factory=list)

    def person(self, cookie: str, *, raw_partition: int, place: int, rng: random.Random) -> Person:
        """A new person at `PLACES[place]` (a random host of that network)."""
        network, lowest, highest, country, region = PLACES[place]
        ip = f"{network}{rng.randint(lowest, highest)}"
        person = Person(cookie, ip, country, region, raw_partition)
        self.people[cookie] = person
        return person

    def add(self, person: Person, t_ms: int, event_type: str, **fields: Any) -> Sent:
        """Append one event of `person` at `t_ms` carrying `fields` (page_url, ...)."""
        raw: dict[str, Any] = {
            "event_id": str(uuid.uuid4()),
            "event_type": event_type,
            "occurred_at": rfc3339_ms(t_ms),
            "cookie_id": person.cookie,
            "ip": person.ip,
            **fields,
        }
        view: dict[str, Any] = {
            "event_type": event_type,
            "t": t_ms // 1000,
            "subject": person.cookie,
            "country": person.country,
            "region": person.region,
            **fields,
        }
        sent = Sent(t_ms, raw, person, view)
        self.events.append(sent)
        return sent

    def sort(self) -> None:
        """Time order (stable: same-millisecond events keep their order)."""
        self.events.sort(key=lambda s: s.t_ms)

    def views(self, *, without: Sequence[str] = ()) -> list[dict[str, Any]]:
        """The expected anonymized fields of every event, in send order."""
        skip = set(without)
        return [s.view for s in self.events if s.person.cookie not in skip]

    def messages(self, *, seed: int = 7, max_batch: int = 30) -> Iterator[tuple[int, bytes]]:
        """(raw partition, message value): per partition in time order, as collectors send
        them: single event objects and JSON arrays of 2..max_batch events."""
        rng = random.Random(seed)
        by_partition: dict[int, list[dict[str, Any]]] = {}
        for sent in self.events:
            by_partition.setdefault(sent.person.raw_partition, []).append(sent.raw)
        for partition, raws in sorted(by_partition.items()):
            i = 0
            while i < len(raws):
                size = 1 if rng.random() < 0.3 else rng.randint(2, max_batch)
                chunk = raws[i : i + size]
                i += size
                body = chunk[0] if size == 1 else chunk
                yield partition, orjson.dumps(body)

    def jsonl(self) -> bytes:
        """The raw events as a JSONL file, in send order (for `anonstream preview`)."""
        return b"".join(orjson.dumps(s.raw) + b"\n" for s in self.events)


def shop(
    *,
    seed: int,
    start_ms: int,
    minutes: int,
    people: int,
    partitions: int = 4,
    prefix: str = "p",
) -> Traffic:
    """`people` visitors browsing for `minutes` minutes from `start_ms`: page views of a
    Zipf-like page choice (some people view a page several times or many pages a minute, so
    the caps L and M bite), page leaves with a time on page, searches."""
    rng = random.Random(seed)
    traffic = Traffic()
    weights = [1 / (i + 1) for i in range(len(PAGES))]
    crowd = [
        traffic.person(
            f"{prefix}-{seed}-{i}",
            raw_partition=i % partitions,
            place=rng.randrange(len(PLACES)),
            rng=rng,
        )
        for i in range(people)
    ]
    activity = {p.cookie: rng.choice((0.15, 0.3, 0.6, 0.9)) for p in crowd}
    for minute in range(minutes):
        for person in crowd:
            if rng.random() >= activity[person.cookie]:
                continue
            views = rng.choice((1, 1, 2, 3, 5))
            for _ in range(views):
                t_ms = start_ms + minute * 60_000 + rng.randrange(59_000)
                page = rng.choices(PAGES, weights)[0]
                traffic.add(person, t_ms, "page_view", page_url=page)
                if rng.random() < 0.6:
                    traffic.add(
                        person,
                        t_ms + rng.randrange(1, 900),
                        "page_leave",
                        page_url=page,
                        time_on_page_ms=rng.choice(DURATIONS_MS) + rng.randrange(1000),
                    )
                if rng.random() < 0.2:
                    terms = rng.choice(TERMS)
                    traffic.add(person, t_ms + rng.randrange(1, 900), "search", search_terms=terms)
    traffic.sort()
    return traffic


def busy_person(traffic: Traffic, cookie: str, *, start_ms: int, minutes: int) -> None:
    """A busy person: every minute, views of the three most visited pages, a page leave and
    a search, so that they weigh in many released cells."""
    person = traffic.person(cookie, raw_partition=2, place=1, rng=random.Random(cookie))
    for minute in range(minutes):
        t = start_ms + minute * 60_000 + 30_000
        for i, page in enumerate(PAGES[:3]):
            traffic.add(person, t + i, "page_view", page_url=page)
        traffic.add(person, t + 5, "page_leave", page_url=PAGES[0], time_on_page_ms=9_000)
        traffic.add(person, t + 6, "search", search_terms=TERMS[0])
    traffic.sort()
