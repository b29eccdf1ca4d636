"""Ground truth: what the generator sent, counted from the messages themselves.

Nothing here calls pipeline code: counts come from the generator's own items (the event
objects it built, the reasons it planted), so tests can compare the pipeline with them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, NamedTuple

from stream.traffic.malformed import REASONS

EVENT_TYPES = ("page_view", "page_leave", "search", "link_click")
SUBJECT_TYPES = ("user_id", "cookie_id", "device_id", "ad_id")
IDENTIFIERS = (*SUBJECT_TYPES, "mac", "imei")
ACTIONS = ("opt_out", "opt_in", "erase", "child")
ANALYTICS = "analytics"
# Which consent state an event falls under when several of its identifiers have one.
BLOCK_PRECEDENCE = ("child", "erase", "opt_out")
_RANK = {state: rank for rank, state in enumerate(BLOCK_PRECEDENCE)}


class Item(NamedTuple):
    """One unit of a message: a raw event (valid or not) or a consent record.

    `data` is its bytes as sent: inside a batch, its own JSON; alone, the whole message.
    """

    document: dict[str, Any] | None  # the JSON object, if it is one (invalid ones too)
    data: bytes
    reason: str | None = None  # dead-letter reason; None for a valid event or a record
    path: str | None = None  # JSON path of a planted schema violation
    person: int | None = None  # index of the person behind it
    country: str | None = None  # country of the person's IP network (geolocation truth)
    tags: tuple[str, ...] = ()  # planted features, e.g. "search_terms:email", "occurred_at:late"


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


class Truth:
    """Running counts over the messages in send order; `summary()` is the ground truth."""

    def __init__(self, *, keep_log: bool = False) -> None:
        self.messages: Counter[str] = Counter()
        self.events_by_type: Counter[str] = Counter(dict.fromkeys(EVENT_TYPES, 0))
        self.malformed: Counter[str] = Counter(dict.fromkeys(REASONS, 0))
        self.batch_sizes: Counter[int] = Counter()
        self.single_object_messages = 0
        self.consent_by_action: Counter[str] = Counter(dict.fromkeys(ACTIONS, 0))
        self.consent_by_subject_type: Counter[str] = Counter(dict.fromkeys(SUBJECT_TYPES, 0))
        self.after_record: Counter[str] = Counter(dict.fromkeys(BLOCK_PRECEDENCE, 0))
        self.signals: Counter[str] = Counter(
            dict.fromkeys(("gpc", "dnt", "age_under_16", "consent_analytics_false"), 0)
        )
        self.by_country: Counter[str] = Counter()
        self.tags: Counter[str] = Counter()
        self.without_identifiers = 0
        self.people: set[int] = set()
        self.subjects: set[tuple[str, str]] = set()
        self.first_at: str | None = None
        self.last_at: str | None = None
        self._states: dict[str, str] = {}  # "type:id" -> blocking state of its latest record
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

    def _add_raw(self, message: Message) -> None:
        if message.value[:1] == b"[":
            self.batch_sizes[len(message.items)] += 1
        else:
            self.single_object_messages += 1
        for item in message.items:
            if item.reason is not None:
                self.malformed[item.reason] += 1
            else:
                assert item.document is not None
                self._add_event(item, item.document)

    def _add_event(self, item: Item, event: dict[str, Any]) -> None:
        self.events_by_type[event["event_type"]] += 1
        stamp = event["occurred_at"]
        if self.first_at is None or stamp < self.first_at:
            self.first_at = stamp
        if self.last_at is None or stamp > self.last_at:
            self.last_at = stamp
        for kind in SUBJECT_TYPES:
            if kind in event:
                self.subjects.add((kind, event[kind]))
                break
        else:
            if "mac" not in event and "imei" not in event:
                self.without_identifiers += 1
        if item.person is not None:
            self.people.add(item.person)
        if item.country is not None:
            self.by_country[item.country] += 1
        if item.tags:
            self.tags.update(item.tags)
        self._add_signals(event)
        if self._states:
            self._add_consent_state(event)

    def _add_signals(self, event: dict[str, Any]) -> None:
        signals = self.signals
        if event.get("gpc") is True:
            signals["gpc"] += 1
        if event.get("dnt") is True:
            signals["dnt"] += 1
        if event.get("age_under_16") is True:
            signals["age_under_16"] += 1
        consent = event.get("consent")
        if consent is not None and consent.get(ANALYTICS) is False:
            signals["consent_analytics_false"] += 1

    def _add_consent_state(self, event: dict[str, Any]) -> None:
        found: str | None = None
        for kind in SUBJECT_TYPES:
            if kind in event:
                state = self._states.get(f"{kind}:{event[kind]}")
                if state is not None and (found is None or _RANK[state] < _RANK[found]):
                    found = state
        if found is not None:
            self.after_record[found] += 1

    def summary(self) -> dict[str, Any]:
        """The ground-truth summary (see docs/generator-readme-section.md for each field)."""
        events = sum(self.events_by_type.values())
        malformed = sum(self.malformed.values())
        summary: dict[str, Any] = {
            "messages": {"raw": self.messages["raw"], "consent": self.messages["consent"]},
            "items": events + malformed,
            "events": events,
            "events_by_type": dict(self.events_by_type),
            "malformed_by_reason": dict(self.malformed),
            "batches": {
                "single_object_messages": self.single_object_messages,
                "array_messages": sum(self.batch_sizes.values()),
                "array_sizes": {str(size): n for size, n in sorted(self.batch_sizes.items())},
            },
            "events_without_identifiers": self.without_identifiers,
            "consent_records_by_action": dict(self.consent_by_action),
            "consent_records_by_subject_type": dict(self.consent_by_subject_type),
            "events_after_consent_record": dict(self.after_record),
            "events_with_gpc": self.signals["gpc"],
            "events_with_dnt": self.signals["dnt"],
            "events_age_under_16": self.signals["age_under_16"],
            "events_consent_analytics_false": self.signals["consent_analytics_false"],
            "distinct_people": len(self.people),
            "distinct_subjects": len(self.subjects),
            "events_by_country": dict(sorted(self.by_country.items())),
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
        return {"seq": seq, "topic": "consent", "key": message.key.decode() if message.key else None,
                "record": item.document, "person": item.person}  # fmt: skip
    return {
        "seq": seq,
        "topic": "raw",
        "items": [
            {"reason": item.reason, "path": item.path, "event": item.document if item.reason is None
             else None, "person": item.person, "country": item.country, "tags": list(item.tags)}
            for item in message.items
        ],
    }  # fmt: skip
