"""Hostile input for the intake and the chain: extreme and malformed values of every raw
event field (hypothesis strategies), and a fixed list of poisonous events with the outcome
each must have, stated from the input alone.

Used by the chain's property tests, the stage's, preview's and the broker's hostile-batch
tests, so that they all feed the same input.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
from hypothesis import strategies as st

import schemas

# The raw schema's own field list: a field added there is missed here by the test below.
RAW_PROPERTIES: dict[str, Any] = schemas.load(schemas.RAW_EVENT_V1)["properties"]
EVENT_TYPES = ("page_view", "page_leave", "search", "link_click")

_FIRST = datetime(1, 1, 1)
_LAST = datetime(9999, 12, 31, 23, 59, 59, 999_999)

# Any JSON value (what a broken collector could put anywhere), a few levels deep.
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
# Text a person, a bot or an attacker could send: any code point but lone surrogates (which
# JSON cannot carry in UTF-8), control characters, NUL, RTL marks, combining marks.
hostile_text = st.one_of(
    st.text(max_size=60),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=300),
    st.sampled_from(
        ["", " ", "\x00", "\u202e", "null", "undefined", "NaN", "%00", "%", "%%", "\ufeff", "\t\n"]
    ),
)


@st.composite
def rfc3339(draw: st.DrawFn) -> str:
    """An RFC 3339 time with a zone, over the whole range datetime can write (years 0001 to
    9999, offsets up to +-23:59, 0 to 9 fraction digits, either case)."""
    moment = draw(st.datetimes(min_value=_FIRST, max_value=_LAST))
    fraction = draw(st.integers(0, 9))
    offset = draw(st.integers(-(24 * 60 - 1), 24 * 60 - 1))
    text = (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )
    if fraction:
        digits = f"{moment.microsecond:06d}{draw(st.integers(0, 999)):03d}"
        text += "." + digits[:fraction]
    if offset == 0 and draw(st.booleans()):
        text += "Z"
    else:
        sign = "-" if offset < 0 else "+"
        text += f"{sign}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}"
    return text.lower() if draw(st.booleans()) and draw(st.booleans()) else text


def edge_times() -> list[str]:
    """The first and last instants RFC 3339 can write, with and without an offset that
    carries them out of UTC's years 0001-9999."""
    return [
        "0001-01-01T00:00:00+01:00",
        "0001-01-01T00:59:59.999999999+01:00",
        "0001-01-01T00:00:00+23:59",
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00-01:00",
        "9999-12-31T23:59:59-01:00",
        "9999-12-31T23:00:00-23:59",
        "9999-12-31T23:59:59.999999999Z",
        "9999-12-31T23:59:59+01:00",
        "0999-12-31T23:59:59Z",
        "1969-12-31T23:59:59Z",
    ]


def local_time(text: str) -> tuple[datetime, int]:
    """(the local date and time to the second, the offset in minutes) an RFC 3339 `text`
    states, read from its own characters."""
    upper = text.upper()
    local = datetime(
        int(upper[0:4]),
        int(upper[5:7]),
        int(upper[8:10]),
        int(upper[11:13]),
        int(upper[14:16]),
        int(upper[17:19]),
    )
    if upper.endswith("Z"):
        return local, 0
    sign = -1 if upper[-6] == "-" else 1
    return local, sign * (int(upper[-5:-3]) * 60 + int(upper[-2:]))


def utc_in_range(text: str) -> bool:
    """Whether the UTC instant of an RFC 3339 `text` falls in years 0001-9999: computed on
    the text's own fields (proleptic days, offset minutes), not by the code under test."""
    local, offset = local_time(text)
    days = local.toordinal() - 1  # days since 0001-01-01
    seconds = days * 86_400 + local.hour * 3600 + local.minute * 60 + local.second - offset * 60
    last = (_LAST.toordinal() - 1) * 86_400 + 86_399
    return 0 <= seconds <= last


def _ip_forms(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[str]:
    text = str(address)
    forms = [text, f" {text}\n", text.upper()]
    if address.version == 4:
        value = int(address)
        forms += [
            f"::ffff:{text}",
            str(ipaddress.IPv6Address((0x2002 << 112) | (value << 80) | 1)),
            str(ipaddress.IPv6Address((0x2001_0000 << 96) | (value ^ 0xFFFF_FFFF))),
            f"64:ff9b::{text}",
            f"{text}:8080",
            "0" + text,
        ]
    else:
        forms += [f"[{text}]", f"{text}%eth0", f"{text}/64"]
    return forms


ip_values = st.one_of(
    st.ip_addresses().flatmap(lambda a: st.sampled_from(_ip_forms(a))),
    hostile_text,
    st.sampled_from(["::", "::1", "0.0.0.0", "255.255.255.255", "1.2.3", "1.2.3.4.5", "x" * 128]),
)
url_values = st.one_of(
    st.builds(
        "{}://{}{}{}?{}#{}".format,
        st.sampled_from(["http", "https", "HTTPS", "ftp", "javascript", "data", "", "http:"]),
        st.one_of(
            st.sampled_from(["shop.example", "xn--bcher-kva.example", "[::1]", "1.2.3.4:99999"]),
            hostile_text,
        ),
        st.one_of(st.just(""), st.text(max_size=40).map(lambda t: "/" + t)),
        st.sampled_from(["", "/u/alice@example.com", "/%E0%A4%A", "/" + "9" * 30]),
        st.text(max_size=40),
        st.text(max_size=10),
    ),
    hostile_text,
    st.text(max_size=8192, min_size=8000),
)
number_values = st.one_of(
    st.integers(0, 2**64 - 1),
    st.floats(min_value=0, allow_nan=False, allow_infinity=False),
    st.integers(-(2**63), -1),
    st.floats(max_value=-1e-300, allow_nan=False, allow_infinity=False),
)


def _of_type(declared: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values of the declared JSON type, extreme ones included."""
    kind = declared.get("type")
    if kind == "boolean":
        return st.booleans()
    if kind == "number":
        return number_values
    if kind == "object":
        return st.dictionaries(
            st.one_of(st.sampled_from(["analytics", "advertising", "personalization"]), st.text()),
            st.one_of(st.booleans(), json_values),
            max_size=4,
        )
    if "enum" in declared:
        return st.one_of(st.sampled_from(declared["enum"]), hostile_text)
    limit = int(declared.get("maxLength", 256))
    at_limit = st.text(min_size=limit - 2, max_size=limit)
    return mostly(
        st.one_of(hostile_text, at_limit), st.text(min_size=limit + 1, max_size=limit + 2)
    )


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`good` nine times in ten, else `bad`: enough valid events reach the chain."""
    return st.integers(0, 9).flatmap(lambda roll: bad if roll == 9 else good)


FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    name: _of_type(declared) for name, declared in RAW_PROPERTIES.items()
}
FIELD_VALUES.update(
    {
        "event_type": mostly(st.sampled_from(EVENT_TYPES), hostile_text),
        "occurred_at": mostly(st.one_of(rfc3339(), st.sampled_from(edge_times())), hostile_text),
        "ip": ip_values,
        "page_url": url_values,
        "referrer_url": url_values,
        "link_url": url_values,
        "search_terms": st.one_of(
            hostile_text,
            st.sampled_from(
                [
                    "alice@example.com 4111 1111 1111 1111",
                    "+33 6 12 34 56 78",
                    "\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18",
                ]
            ),
        ),
    }
)


@st.composite
def hostile_events(draw: st.DrawFn) -> dict[str, Any]:
    """A raw event: every field present or not, each with an extreme or malformed value of
    its type (nine times in ten) or any JSON value; unknown fields; now and then a required
    field missing."""
    event: dict[str, Any] = {
        "event_id": draw(mostly(st.text(min_size=1, max_size=128), FIELD_VALUES["event_id"])),
        "event_type": draw(FIELD_VALUES["event_type"]),
        "occurred_at": draw(FIELD_VALUES["occurred_at"]),
    }
    optional = sorted(set(RAW_PROPERTIES) - set(event))
    if draw(st.integers(0, 3)) != 0:
        # A subject, most of the time, so that most valid events run the whole chain.
        event["cookie_id"] = draw(st.text(min_size=1, max_size=64))
    for name in draw(st.sets(st.sampled_from(optional))):
        event[name] = draw(mostly(FIELD_VALUES[name], json_values))
    if draw(st.booleans()):
        event.update(draw(st.dictionaries(st.text(max_size=10), json_values, max_size=3)))
    for name in ("event_id", "event_type", "occurred_at"):
        if draw(st.integers(0, 19)) == 19:
            event.pop(name, None)
    return event


@dataclass(frozen=True)
class Message:
    """One raw Kafka message value and how many items it counts for (an object or a junk
    value: 1; an array: its length, or 1 when empty)."""

    value: bytes
    items: int


@st.composite
def hostile_messages(draw: st.DrawFn) -> Message:
    """A raw message: one hostile event, an array of them mixed with non-objects, or junk."""
    shape = draw(st.sampled_from(["event", "batch", "junk"]))
    if shape == "event":
        return Message(orjson.dumps(draw(hostile_events())), 1)
    if shape == "batch":
        items = draw(st.lists(mostly(hostile_events(), json_values), max_size=8))
        return Message(orjson.dumps(items), max(1, len(items)))
    junk = draw(
        st.one_of(
            st.binary(max_size=64),
            st.sampled_from([b"", b"[", b"{}", b"nul", b"1e400", b'"\\ud800"', b"[" * 2000]),
        )
    )
    return Message(junk, 1)


@dataclass(frozen=True)
class Poison:
    """A poisonous batch item and where it must end: `dead_letter` (with `reason` from the
    dead-letter schema and, for schema violations, `rule`) or dropped with drop `reason`."""

    item: Any
    dead_letter: bool
    reason: str
    rule: str | None = None


TIME_RULE = "range 0001-01-01T00:00:00Z..9999-12-31T23:59:59Z (UTC)"
"""The rule an out-of-range time breaks, as the dead-letter record must name it (written out
here, not imported from the code under test)."""


def poisonous_items(good: dict[str, Any]) -> list[Poison]:
    """Items that once raised inside the chain or are malformed, built from a `good` event
    (which must carry a subject and analytics consent), each with its expected outcome.

    Times in years 0001 or 9999 that an offset carries out of UTC's range are dead-lettered;
    those still in range are valid but no pseudonym key exists for their epoch in the stream
    (`no_key`; preview generates keys for any epoch and anonymizes them).
    """
    anonymous = {k: v for k, v in good.items() if k not in ("cookie_id", "user_id", "ip")}
    return [
        Poison(
            {**good, "occurred_at": "0001-01-01T00:00:00+01:00"},
            True,
            "schema_violation",
            TIME_RULE,
        ),
        Poison(
            {**good, "occurred_at": "9999-12-31T23:59:59-01:00"},
            True,
            "schema_violation",
            TIME_RULE,
        ),
        Poison(
            {**good, "occurred_at": "0001-01-01T00:00:00+23:59"},
            True,
            "schema_violation",
            TIME_RULE,
        ),
        Poison({**good, "occurred_at": "9999-12-31T23:59:59.999999999Z"}, False, "no_key"),
        Poison({**good, "occurred_at": "0001-01-01T00:00:00-01:00"}, False, "no_key"),
        Poison(
            {**good, "occurred_at": "2024-05-01T10:00:00.1234567890Z"},
            True,
            "schema_violation",
            "format date-time",
        ),
        Poison({**good, "time_on_page_ms": -1}, True, "schema_violation", "minimum 0"),
        Poison(
            {**good, "event_type": "\x00"},
            True,
            "schema_violation",
            "enum page_view|page_leave|search|link_click",
        ),
        Poison({**good, "consent": {"analytics": "yes"}}, True, "schema_violation", "type boolean"),
        Poison({**anonymous, "ip": "81.2.69.160:443"}, False, "no_subject"),
        Poison(7, True, "not_object"),
        Poison(None, True, "not_object"),
        Poison([good], True, "not_object"),
    ]


SITE = "https://shop.example/p/"


def good_event(name: str, now: datetime, **extreme: Any) -> dict[str, Any]:
    """A valid page view at `now` whose path (`name`, letters only: the URL scrubber keeps
    it) tells it apart downstream; `extreme` adds valid but extreme values."""
    return {
        "event_id": f"good-{name}",
        "event_type": "page_view",
        "occurred_at": now.isoformat().replace("+00:00", "Z"),
        "cookie_id": f"cookie-{name}-{uuid.uuid4().hex}",
        "ip": "192.0.2.10",
        "page_url": SITE + name,
        "consent": {"analytics": True},
        **extreme,
    }


@dataclass(frozen=True)
class HostileBatch:
    """One batch mixing good events and poisonous items: `items` in order, the `goods`, and
    the poison at each position of `items`."""

    items: list[Any]
    goods: list[dict[str, Any]]
    poison_at: dict[int, Poison]

    def dead_letters(self) -> dict[int, tuple[str, str | None]]:
        """Position -> (dead-letter reason, rule) of the items that must be dead-lettered."""
        return {
            position: (poison.reason, poison.rule)
            for position, poison in self.poison_at.items()
            if poison.dead_letter
        }

    def drops(self) -> Counter[str]:
        """Drop reason -> how many poisonous items the stream must drop with it."""
        return Counter(p.reason for p in self.poison_at.values() if not p.dead_letter)


def hostile_batch(now: datetime) -> HostileBatch:
    """Good events (some with extreme valid values: IPv6 transition addresses, a huge time on
    page, control characters, a zone offset, the IPv6 loopback) interleaved with every
    poisonous item of `poisonous_items`: good, poison, good, poison..., then the rest."""
    west = timezone(timedelta(hours=-9, minutes=-30))
    goods = [
        good_event("plain", now),
        good_event("sixtofour", now, ip="2002:c000:20a::1"),
        good_event("teredo", now, ip="2001:0:4136:e378:8000:63bf:3fff:fdd2"),
        good_event("huge", now, time_on_page_ms=1e308),
        good_event("control", now, user_agent="\x00\u202e" * 500, search_terms="\x00"),
        good_event("offset", now, occurred_at=now.astimezone(west).isoformat(), ip="::1"),
    ]
    items: list[Any] = []
    poison_at: dict[int, Poison] = {}
    for index, poison in enumerate(poisonous_items(good_event("poison", now))):
        if index < len(goods):
            items.append(goods[index])
        poison_at[len(items)] = poison
        items.append(poison.item)
    return HostileBatch(items, goods, poison_at)
