"""What the anonymize stage must count, computed from the generator's truth log alone.

No pipeline code is called: the rules are restated here from the contract
(docs/guides/privacy/consent.md, and docs/reference/reasons.md), for a run in which every
consent record was applied before the first event was processed (the workers start after all
traffic was produced, and an anonymize worker reads the whole consent topic before its first event):

* a subject's state is its latest consent record (the compacted topic keeps one per key):
  `child`, `erase`, an `opt_out` whose purposes include analytics (absent: all) block; an
  `opt_in` or an opt-out of other purposes only does not;
* per valid event, the first reason that applies, in this order: `under_16` (the event says
  so), `child`, `erased`, `opted_out` (a blocking record for ANY of its user_id, cookie_id,
  device_id, ad_id), `no_consent` (`consent.analytics` is false), `gpc` (`gpc` true; the
  default policy honours GPC, not DNT), `no_key` (its epoch, the UTC day of `occurred_at`,
  began before the workers' key ring did), `no_subject` (no identifier and no IP);
  otherwise forwarded.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

SUBJECT_FIELDS = ("user_id", "cookie_id", "device_id", "ad_id")
IDENTIFIER_FIELDS = (*SUBJECT_FIELDS, "mac", "imei")
DAY_S = 86_400


def blocking(record: Mapping[str, Any]) -> str | None:
    action = record["action"]
    if action == "child":
        return "child"
    if action == "erase":
        return "erased"
    if action == "opt_out" and "analytics" in record.get("purposes", ["analytics"]):
        return "opted_out"
    return None


def final_states(log: Iterable[Mapping[str, Any]]) -> dict[str, str | None]:
    """'<subject_type>:<subject_id>' -> blocking state of its latest consent record."""
    states: dict[str, str | None] = {}
    for entry in log:
        if entry["topic"] == "consent":
            record = entry["record"]
            states[f"{record['subject_type']}:{record['subject_id']}"] = blocking(record)
    return states


def valid_events(log: Iterable[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    for entry in log:
        if entry["topic"] == "raw":
            for item in entry["items"]:
                if item["reason"] is None:
                    yield item["event"]


def outcome(event: Mapping[str, Any], states: Mapping[str, str | None], first_epoch: int) -> str:
    """`forwarded` or the drop reason of one valid event (see module doc)."""
    if event.get("age_under_16") is True:
        return "under_16"
    found = {
        states.get(f"{name}:{event[name]}")
        for name in SUBJECT_FIELDS
        if isinstance(event.get(name), str) and event[name]
    }
    for state in ("child", "erased", "opted_out"):
        if state in found:
            return state
    consent = event.get("consent")
    if isinstance(consent, dict) and consent.get("analytics") is False:
        return "no_consent"
    if event.get("gpc") is True:
        return "gpc"
    occurred = datetime.fromisoformat(event["occurred_at"])
    if int(occurred.timestamp()) // DAY_S < first_epoch:
        return "no_key"
    has_id = any(isinstance(event.get(name), str) and event[name] for name in SUBJECT_FIELDS)
    if not has_id and not isinstance(event.get("ip"), str):
        return "no_subject"
    return "forwarded"


def expected_outcomes(truth: Mapping[str, Any], *, first_epoch: int) -> Counter[str]:
    """Forwarded and dropped-by-reason counts for the run the truth describes."""
    log = truth["log"]
    states = final_states(log)
    return Counter(outcome(event, states, first_epoch) for event in valid_events(log))


def secrets_of(truth: Mapping[str, Any]) -> set[str]:
    """Strings no log line may contain: identifiers, IPs, event ids, URLs with their query,
    search terms, user agents of every valid event, and the consent records' subject ids.
    Short values (under 8 characters) are left out: they occur in any text by chance."""
    found: set[str] = set()
    fields = (
        *IDENTIFIER_FIELDS,
        "ip",
        "event_id",
        "page_url",
        "referrer_url",
        "link_url",
        "search_terms",
        "user_agent",
    )
    for event in valid_events(truth["log"]):
        for name in fields:
            value = event.get(name)
            if isinstance(value, str):
                found.add(value)
    for entry in truth["log"]:
        if entry["topic"] == "consent":
            found.add(str(entry["record"]["subject_id"]))
    return {value for value in found if len(value) >= 8}
