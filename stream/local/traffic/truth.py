"""Ground truth: what the generator sent, counted from the messages themselves.

Nothing here calls pipeline code: counts come from the generator's own items (the event
objects it built, the reasons it planted), so tests can compare the pipeline with them.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from typing import Any, NamedTuple

from stream.local.traffic.malformed import REASONS

EVENT_TYPES = ("page_view", "page_leave", "search", "link_click")
SUBJECT_TYPES = ("user_id", "cookie_id", "device_id", "ad_id")
IDENTIFIERS = (*SUBJECT_TYPES, "mac", "imei")
ACTIONS = ("opt_out", "opt_in", "erase", "child")
ANALYTICS = "analytics"
# Which consent state an event falls under when several of its identifiers have one.
BLOCK_PRECEDENCE = ("child", "erase", "opt_out")
_RANK = {state: rank for rank, state in enumerate(BLOCK_PRECEDENCE)}
PROFILE_FLAGS = ("none", "gpc", "dnt", "age_under_16", "consent_analytics_false")
VISIT_CACHE = 4096  # visits whose shared facts are remembered (48 run at once)


class Item(NamedTuple):
    """One unit of a message: a raw event (valid or not) or a consent record.

    `data` is its bytes as sent: inside a batch, its own JSON; alone, the whole message.
    `document` is read-only (events of one visit share nested objects such as `consent`):
    `orjson.loads(item.data)` gives a private copy to modify.
    """

    document: dict[str, Any] | None  # the JSON object, if it is one (invalid ones too)
    data: bytes
    reason: str | None = None  # dead-letter reason; None for a valid event or a record
    path: str | None = None  # JSON path of a planted schema violation
    person: int | None = None  # index of the person behind it
    country: str | None = None  # country of the person's IP network (geolocation truth)
    tags: tuple[str, ...] = ()  # planted features, e.g. "search_terms:email", "occurred_at:late"
    visit: int | None = None  # serial number of the visit (session) it belongs to


class Message(NamedTuple):
    """One Kafka message: topic kind (`raw` or `consent`), key, value and its items."""

    topic_kind: str
    key: bytes | None
    value: bytes
    items: tuple[Item, ...]


def blocking_state(record: dict[str, Any]) -> str | None:
    """The state a consent record puts its subject in for analytics: `child`, `erase`,
    `opt_out` (when its purposes include analytics; absent purposes mean all), or None."""
    action = record["action"]
    if action in ("child", "erase"):
        return str(action)
    if action == "opt_out" and ANALYTICS in record.get("purposes", (ANALYTICS,)):
        return "opt_out"
    return None


@dataclass(slots=True)
class _VisitFacts:
    profile: tuple[bool, bool, bool, bool, bool, str | None]
    keys: list[str]  # "type:id" of the subject identifiers present, in subject order
    state: str | None  # blocking consent state of the visit's identifiers
    states_version: int  # `Truth._states_version` `state` was computed at
    events: int = 0  # valid events counted, not yet in `Truth._profiles`


class Truth:
    """Running counts over the messages in send order; `summary()` is the ground truth."""

    def __init__(self, *, keep_log: bool = False) -> None:
        self.messages: Counter[str] = Counter()
        self.events_by_type: Counter[str] = Counter(dict.fromkeys(EVENT_TYPES, 0))
        self.malformed: Counter[str] = Counter(dict.fromkeys(REASONS, 0))
        self.batch_sizes: Counter[int] = Counter()
        self.single_messages = 0
        self.consent_by_action: Counter[str] = Counter(dict.fromkeys(ACTIONS, 0))
        self.consent_by_subject_type: Counter[str] = Counter(dict.fromkeys(SUBJECT_TYPES, 0))
        self.after_record: Counter[str] = Counter(dict.fromkeys(BLOCK_PRECEDENCE, 0))
        self.tags: Counter[str] = Counter()
        self.people: set[int] = set()
        self.subjects: set[str] = set()  # "type:id" of each event's subject
        self.first_at: str | None = None
        self.last_at: str | None = None
        self._states: dict[str, str] = {}  # "type:id" -> blocking state of its latest record
        self._states_version = 0  # bumped by every consent record
        self._visits: dict[int, _VisitFacts] = {}
        self._unnumbered = itertools.count(-1, -1)  # keys for items without a visit number
        # (no identifier, gpc, dnt, under 16, analytics refused, country) -> valid events
        self._profiles: Counter[tuple[bool, bool, bool, bool, bool, str | None]] = Counter()
        self.log: list[dict[str, Any]] | None = [] if keep_log else None

    def add(self, message: Message) -> None:
        """Count one message, in send order."""
        seq = sum(self.messages.values())
        self.messages[message.topic_kind] += 1
        if message.topic_kind == "consent":
            self._add_consent(message)
        else:
            self._add_raw(message)
        if self.log is not None:
            self.log.append(_log_entry(seq, message))

    def _add_consent(self, message: Message) -> None:
        record = message.items[0].document
        assert record is not None
        self.consent_by_action[record["action"]] += 1
        self.consent_by_subject_type[record["subject_type"]] += 1
        key = f"{record['subject_type']}:{record['subject_id']}"
        state = blocking_state(record)
        if state is None:
            self._states.pop(key, None)
        else:
            self._states[key] = state
        self._states_version += 1

    def _add_raw(self, message: Message) -> None:
        items = message.items
        if message.value == b"[]":  # the empty batch (a malformed message)
            self.batch_sizes[0] += 1
        elif message.value[:1] == b"[":
            self.batch_sizes[len(items)] += 1
        else:
            self.single_messages += 1
        events = [item for item in items if item.reason is None]
        if len(events) < len(items):
            self.malformed.update(item.reason for item in items if item.reason is not None)
        if events:
            self._add_events(events)

    def _add_events(self, items: list[Item]) -> None:
        """Count the valid events of one message (bulk operations where possible)."""
        documents: list[dict[str, Any]] = [item.document for item in items]  # type: ignore[misc]
        self.events_by_type.update([event["event_type"] for event in documents])
        stamps = [event["occurred_at"] for event in documents]
        low, high = min(stamps), max(stamps)
        if self.first_at is None or low < self.first_at:
            self.first_at = low
        if self.last_at is None or high > self.last_at:
            self.last_at = high
        for tags in [item.tags for item in items if item.tags]:
            self.tags.update(tags)
        visits = self._visits
        for item, event in zip(items, documents, strict=True):
            facts = visits.get(item.visit) if item.visit is not None else None
            if facts is None:
                facts = self._learn(item, event)
            facts.events += 1
            if self._states:
                if facts.states_version != self._states_version:
                    facts.state = self._consent_state(facts.keys)
                    facts.states_version = self._states_version
                if facts.state is not None:
                    self.after_record[facts.state] += 1

    def _learn(self, item: Item, event: dict[str, Any]) -> _VisitFacts:
        """Read the fields every event of a visit shares (identifiers, IP, signals) once."""
        keys = [f"{kind}:{event[kind]}" for kind in SUBJECT_TYPES if kind in event]
        if keys:
            self.subjects.add(keys[0])
        if item.person is not None:
            self.people.add(item.person)
        consent = event.get("consent")
        profile = (
            not keys and "mac" not in event and "imei" not in event,
            event.get("gpc") is True,
            event.get("dnt") is True,
            event.get("age_under_16") is True,
            isinstance(consent, dict) and consent.get(ANALYTICS) is False,
            item.country,
        )
        facts = _VisitFacts(profile, keys, self._consent_state(keys), self._states_version)
        if len(self._visits) >= VISIT_CACHE:
            self._flush_visits()
        visit = next(self._unnumbered) if item.visit is None else item.visit
        self._visits[visit] = facts
        return facts

    def _flush_visits(self) -> None:
        """Move the events counted per visit into the per-profile totals; forget the visits."""
        for facts in self._visits.values():
            self._profiles[facts.profile] += facts.events
        self._visits.clear()

    def _consent_state(self, keys: list[str]) -> str | None:
        found: str | None = None
        for key in keys:
            state = self._states.get(key)
            if state is not None and (found is None or _RANK[state] < _RANK[found]):
                found = state
        return found

    def summary(self) -> dict[str, Any]:
        """The ground-truth summary (see docs/guides/traffic.md, "Ground truth", for each field)."""
        self._flush_visits()
        events = sum(self.events_by_type.values())
        malformed = sum(self.malformed.values())
        flags: Counter[str] = Counter()
        countries: Counter[str] = Counter()
        for profile, n in self._profiles.items():
            for name, flag in zip(PROFILE_FLAGS, profile[:-1], strict=True):
                flags[name] += n if flag else 0
            if profile[-1] is not None:
                countries[profile[-1]] += n
        summary: dict[str, Any] = {
            "messages": {"raw": self.messages["raw"], "consent": self.messages["consent"]},
            "items": events + malformed,
            "events": events,
            "events_by_type": dict(self.events_by_type),
            "malformed_by_reason": dict(self.malformed),
            "batches": {
                "single_messages": self.single_messages,
                "array_messages": sum(self.batch_sizes.values()),
                "array_sizes": {str(size): n for size, n in sorted(self.batch_sizes.items())},
            },
            "events_without_identifiers": flags["none"],
            "consent_records_by_action": dict(self.consent_by_action),
            "consent_records_by_subject_type": dict(self.consent_by_subject_type),
            "events_after_consent_record": dict(self.after_record),
            "events_with_gpc": flags["gpc"],
            "events_with_dnt": flags["dnt"],
            "events_age_under_16": flags["age_under_16"],
            "events_consent_analytics_false": flags["consent_analytics_false"],
            "distinct_people": len(self.people),
            "distinct_subjects": len(self.subjects),
            "events_by_country": dict(sorted(countries.items())),
            "tags": dict(sorted(self.tags.items())),
            "first_occurred_at": self.first_at,
            "last_occurred_at": self.last_at,
        }
        if self.log is not None:
            summary["log"] = self.log
        return summary


def _log_entry(seq: int, message: Message) -> dict[str, Any]:
    if message.topic_kind == "consent":
        item = message.items[0]
        key = message.key.decode() if message.key else None
        return {
            "seq": seq,
            "topic": "consent",
            "key": key,
            "record": item.document,
            "person": item.person,
        }
    return {
        "seq": seq,
        "topic": "raw",
        "items": [
            {
                "reason": item.reason,
                "path": item.path,
                "event": item.document if item.reason is None else None,
                "person": item.person,
                "country": item.country,
                "tags": list(item.tags),
            }
            for item in message.items
        ],
    }
