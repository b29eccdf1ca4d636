"""Consent and rights enforced in the stream (PRIVACY.md guarantee 4), on the real broker.

Every test runs real anonymize worker processes and publishes consent records through the
`anonstream consent` command. Events are told apart downstream by a unique page path per
event (the path survives anonymisation, identifiers do not), so the expected set of paths
comes from the test's own input.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from anonymizers.policy import render_default_policy_toml
from stream.settings import Settings
from stream.topics import create_topics, topic_specs
from tests.support.cli import run_cli
from tests.support.kafka import produce, read_all, read_topic
from tests.support.workers import WorkerFactory, WorkerProcess, wait_for

pytestmark = pytest.mark.kafka

SITE = "https://shop.example/p/"
APPLIED = "anonstream_consent_records_applied_total"
CONSUMED = "anonstream_events_consumed_total"
FORWARDED = "anonstream_events_forwarded_total"


def dropped(reason: str) -> str:
    return f'anonstream_events_dropped_total{{reason="{reason}"}}'


class Traffic:
    """Raw events with a unique page path each; remembers which paths must not pass."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime.now(UTC).replace(microsecond=0)
        self.allowed: set[str] = set()
        self.forbidden: set[str] = set()
        self._count = 0

    def event(self, *, passes: bool, at: datetime | None = None, **fields: Any) -> dict[str, Any]:
        """One valid page view carrying `fields` (identifiers, signals)."""
        self._count += 1
        path = f"article-{self._count}"  # no digit run or token: the URL scrubber keeps it
        (self.allowed if passes else self.forbidden).add(SITE + path)
        event: dict[str, Any] = {
            "event_id": str(uuid.uuid4()),
            "event_type": "page_view",
            "occurred_at": (at or self.now).isoformat().replace("+00:00", "Z"),
            "ip": f"192.0.2.{self._count % 250 + 1}",
            "page_url": SITE + path,
            "consent": {"analytics": True},
        }
        event.update(fields)
        return event

    def events(self, count: int, *, passes: bool, **fields: Any) -> list[dict[str, Any]]:
        return [self.event(passes=passes, **fields) for _ in range(count)]

    def strangers(self, count: int) -> list[dict[str, Any]]:
        """Events of `count` other people (each their own cookie and user id): all pass."""
        return [
            self.event(passes=True, cookie_id=f"c-{uuid.uuid4().hex}", user_id=f"u-{i}")
            for i in range(count)
        ]

    @property
    def total(self) -> int:
        return self._count


def consent(settings: Settings, *args: str) -> str:
    """Run `anonstream consent ARGS` against the test's topics; return its output."""
    result = run_cli(settings, "consent", *args)
    assert result.exit_code == 0, result.output
    return result.output


def send_events(settings: Settings, events: Iterable[dict[str, Any]], **kwargs: Any) -> None:
    produce(settings, settings.topic_raw, [orjson.dumps(e) for e in events], **kwargs)


def downstream(settings: Settings, traffic: Traffic, *, check: Any = None) -> list[dict[str, Any]]:
    """Anonymized events, read until every allowed path arrived (and 2 s more)."""

    def paths_of(records: list[Any]) -> set[str]:
        return {e.get("page_url") for r in records for e in orjson.loads(r.value)}

    try:
        records = read_topic(
            settings,
            settings.topic_pseudonymized,
            until=lambda records: traffic.allowed <= paths_of(records),
            timeout_s=20,
            settle_s=2.0,
            check=check,
        )
    except AssertionError:
        got = read_all(settings, settings.topic_pseudonymized)
        seen = paths_of(got)
        print(
            "MISSING",
            sorted(traffic.allowed - seen)[:20],
            "EXTRA",
            sorted(seen - traffic.allowed)[:20],
        )
        raise
    return [event for record in records for event in orjson.loads(record.value)]


def assert_enforced(events: list[dict[str, Any]], traffic: Traffic) -> None:
    """Every allowed event arrived exactly once; no forbidden one arrived."""
    paths = Counter(event["page_url"] for event in events)
    leaked = traffic.forbidden & set(paths)
    assert not leaked, f"{len(leaked)} events of people who must contribute nothing leaked"
    assert set(paths) == traffic.allowed
    assert max(paths.values()) == 1


def start_ready(workers: WorkerFactory, settings: Settings, **env: Any) -> WorkerProcess:
    worker = workers.start(settings, "anonymize", **env)
    worker.wait_ready()
    return worker


@pytest.fixture
def topics(settings: Settings) -> Settings:
    create_topics(settings, topic_specs(settings))
    return settings


def test_opt_out_by_cookie_drops_every_event_carrying_it(
    topics: Settings, workers: WorkerFactory
) -> None:
    """An analytics opt-out by cookie id drops that person's events (also with a user or
    device id on them, alone or inside collector batches); an advertising-only opt-out and
    other people's events pass; the drops are counted as `opted_out`.
    """
    settings = topics
    worker = start_ready(workers, settings)
    assert consent(settings, "opt-out", "--cookie-id", "c-opted-out") == (
        "opt_out recorded for cookie_id (purposes: analytics, advertising, personalization)\n"
    )
    consent(settings, "opt-out", "--cookie-id", "c-no-ads", "--purpose", "advertising")
    worker.wait_metric(APPLIED, at_least=2)

    traffic = Traffic()
    person = [
        *traffic.events(20, passes=False, cookie_id="c-opted-out", user_id="u-7"),
        *traffic.events(10, passes=False, cookie_id="c-opted-out"),
        *traffic.events(10, passes=False, cookie_id="c-opted-out", device_id="d-7"),
    ]
    others = [
        *traffic.strangers(60),
        *traffic.events(10, passes=True, cookie_id="c-no-ads"),
        # The opt-out names the cookie, not the user id: the user id alone is not covered.
        *traffic.events(5, passes=True, user_id="u-7"),
    ]
    # Alone, in batches mixing people, and in batches of one person only.
    singles = [*person[:30], *others[:40]]
    batches = [
        [*person[30 + 2 * i : 32 + 2 * i], *others[40 + 5 * i : 45 + 5 * i]] for i in range(3)
    ]
    batches += [others[55:65], others[65:], person[36:]]
    sent = [*singles, *(e for batch in batches for e in batch)]
    assert sorted(e["event_id"] for e in sent) == sorted(e["event_id"] for e in person + others)
    values = [orjson.dumps(e) for e in singles] + [orjson.dumps(b) for b in batches]
    produce(settings, settings.topic_raw, values)

    worker.wait_metric(CONSUMED, at_least=traffic.total)
    assert_enforced(downstream(settings, traffic, check=worker.ensure_alive), traffic)
    metrics = worker.metrics()
    assert metrics[dropped("opted_out")] == len(person)
    assert metrics[FORWARDED] == len(others)
    assert metrics[CONSUMED] == traffic.total, metrics


def test_rights_apply_from_the_first_event_after_a_restart(
    topics: Settings, workers: WorkerFactory
) -> None:
    """Opt-out, erasure and child records published before a restart drop the first events
    the new worker processes (reasons `opted_out`, `erased`, `child`); a later opt-in
    re-admits the opted-out cookie.
    """
    settings = topics
    first = start_ready(workers, settings)
    consent(settings, "opt-out", "--cookie-id", "c-a")
    consent(settings, "erase", "--user-id", "u-b")
    consent(settings, "child", "--device-id", "d-c")
    first.wait_metric(APPLIED, at_least=3)
    assert first.stop() == 0

    # Their events come first in every partition the restarted worker reads.
    traffic = Traffic()
    rights = {
        "opted_out": traffic.events(8, passes=False, cookie_id="c-a"),
        "erased": traffic.events(8, passes=False, user_id="u-b", cookie_id="c-b"),
        "child": traffic.events(8, passes=False, device_id="d-c", ad_id="ad-c"),
    }
    for partition in range(settings.partitions):
        send_events(
            settings,
            [e for events in rights.values() for e in events[2 * partition : 2 * partition + 2]],
            partition=partition,
        )
    others = traffic.strangers(40)
    send_events(settings, others)

    second = workers.start(settings, "anonymize")
    metrics = second.wait_metric(CONSUMED, at_least=traffic.total, timeout_s=90)
    assert_enforced(downstream(settings, traffic, check=second.ensure_alive), traffic)
    metrics = second.metrics()
    for reason, events in rights.items():
        assert metrics[dropped(reason)] == len(events), reason
    assert metrics[FORWARDED] == len(others)

    consent(settings, "opt-in", "--cookie-id", "c-a")
    second.wait_metric(APPLIED, at_least=4)
    readmitted = traffic.events(6, passes=True, cookie_id="c-a")
    send_events(settings, readmitted)
    second.wait_metric(CONSUMED, at_least=traffic.total)
    assert_enforced(downstream(settings, traffic, check=second.ensure_alive), traffic)
    assert second.metric(dropped("opted_out")) == len(rights["opted_out"])


def test_worker_processes_nothing_before_its_consent_table_caught_up(
    topics: Settings, workers: WorkerFactory, tmp_path: Path
) -> None:
    """With 200,000 consent records unread at start (the one that matters last) and the
    person's events already waiting, a new worker lets none of them through.

    This fails without the readiness wait: with `AnonymizeRuntime.wait_ready` reduced to
    the key ring, the worker processes the waiting events while its table is still
    loading, and some of the person's events reach the output.
    """
    settings = topics
    bulk = tmp_path / "consent.jsonl"
    with bulk.open("wb") as out:
        for i in range(200_000):
            record = {"subject_type": "cookie_id", "subject_id": f"bulk-{i}", "action": "opt_out"}
            out.write(orjson.dumps(record) + b"\n")
        last = {"subject_type": "cookie_id", "subject_id": "c-late", "action": "opt_out"}
        out.write(orjson.dumps(last) + b"\n")
    consent(settings, "import", str(bulk))

    traffic = Traffic()
    person = traffic.events(40, passes=False, cookie_id="c-late", user_id="u-late")
    others = traffic.strangers(40)
    send_events(settings, [e for pair in zip(person, others, strict=True) for e in pair])

    worker = workers.start(settings, "anonymize")
    worker.wait_metric(CONSUMED, at_least=traffic.total, timeout_s=120)
    assert_enforced(downstream(settings, traffic, check=worker.ensure_alive), traffic)
    metrics = worker.metrics()
    assert metrics[APPLIED] == 200_001
    assert metrics[dropped("opted_out")] == len(person)


def group_assignment(settings: Settings) -> list[set[int]]:
    """Partitions of the raw topic held by each member of the anonymize group (once stable)."""
    from stream.kafka import admin_client

    group_id = settings.group_id("anonymize")
    with admin_client(settings) as admin:
        group = admin.describe_groups([group_id])[group_id]
    if group["group_state"] != "Stable":
        return []
    return [
        {
            partition
            for assigned in member["member_assignment"]["assigned_partitions"]
            if assigned["topic"] == settings.topic_raw
            for partition in assigned["partitions"]
        }
        for member in group["members"]
    ]


def test_two_workers_in_one_group_enforce_one_opt_out_and_agree_on_pseudonyms(
    topics: Settings, workers: WorkerFactory
) -> None:
    """Two workers sharing the raw topic's partitions both drop an opt-out published once,
    and both give one cookie the same subject pseudonym (one key per epoch for all).
    """
    settings = topics
    # Started together on an empty key topic: both may propose today's key; one must win.
    pair = [workers.start(settings, "anonymize") for _ in range(2)]
    for worker in pair:
        worker.wait_ready()
    held = wait_for(
        lambda: (lambda h: h if len(h) == 2 and all(h) else None)(group_assignment(settings)),
        timeout_s=60,
        what="both workers to hold raw partitions",
    )
    assert set().union(*held) == set(range(settings.partitions))
    consent(settings, "opt-out", "--cookie-id", "c-both")
    for worker in pair:
        worker.wait_metric(APPLIED, at_least=1)

    traffic = Traffic()
    shared_paths: set[str] = set()
    person_count = 0
    for partition in range(settings.partitions):
        person = traffic.events(5, passes=False, cookie_id="c-both", user_id="u-both")
        person_count += len(person)
        shared = traffic.events(3, passes=True, cookie_id="c-shared")
        shared_paths.update(e["page_url"] for e in shared)
        send_events(settings, [*person, *shared, *traffic.strangers(5)], partition=partition)

    wait_for(
        lambda: sum(w.metric(CONSUMED) for w in pair) >= traffic.total,
        timeout_s=60,
        what="both workers to consume every event",
    )

    def both_alive() -> None:
        for worker in pair:
            worker.ensure_alive()

    events = downstream(settings, traffic, check=both_alive)
    assert_enforced(events, traffic)
    per_worker = [w.metric(dropped("opted_out")) for w in pair]
    assert all(count > 0 for count in per_worker), "each worker dropped events it read"
    assert sum(per_worker) == person_count
    subjects = {e["subject"] for e in events if e["page_url"] in shared_paths}
    assert len(subjects) == 1, "one cookie, one epoch: one pseudonym on every worker"


def test_event_signals_follow_the_policy(
    topics: Settings, workers: WorkerFactory, tmp_path: Path
) -> None:
    """age_under_16, consent.analytics=false and GPC are dropped and DNT is not (defaults);
    a policy file that honours DNT and not GPC flips the last two.
    """
    settings = topics
    traffic = Traffic()
    signals = {
        "under_16": traffic.events(4, passes=False, cookie_id="c-1", age_under_16=True),
        "no_consent": traffic.events(
            4, passes=False, cookie_id="c-2", consent={"analytics": False}
        ),
        "gpc": traffic.events(4, passes=False, cookie_id="c-3", gpc=True),
    }
    passing = [
        *traffic.events(4, passes=True, cookie_id="c-4", dnt=True),
        *traffic.events(4, passes=True, cookie_id="c-5", age_under_16=False, gpc=False),
    ]
    default = start_ready(workers, settings)
    send_events(settings, [*[e for v in signals.values() for e in v], *passing])
    default.wait_metric(CONSUMED, at_least=traffic.total)
    assert_enforced(downstream(settings, traffic, check=default.ensure_alive), traffic)
    metrics = default.metrics()
    for reason, events in signals.items():
        assert metrics[dropped(reason)] == len(events), reason
    assert dropped("dnt") not in metrics
    assert default.stop() == 0

    text = render_default_policy_toml()
    assert "honour_dnt = false" in text and "honour_gpc = true" in text
    policy = tmp_path / "policy.toml"
    policy.write_text(
        text.replace("honour_dnt = false", "honour_dnt = true").replace(
            "honour_gpc = true", "honour_gpc = false"
        )
    )
    switched = start_ready(workers, settings, policy_path=policy)
    before = traffic.total
    dnt = traffic.events(4, passes=False, cookie_id="c-6", dnt=True)
    gpc = traffic.events(4, passes=True, cookie_id="c-7", gpc=True)
    send_events(settings, [*dnt, *gpc])
    switched.wait_metric(CONSUMED, at_least=traffic.total - before)
    assert_enforced(downstream(settings, traffic, check=switched.ensure_alive), traffic)
    assert switched.metric(dropped("dnt")) == len(dnt)
    assert dropped("gpc") not in switched.metrics()


def test_an_event_flagged_under_16_records_the_child_for_every_worker(
    topics: Settings, workers: WorkerFactory
) -> None:
    """An event flagged age_under_16 is dropped and the identifiers it carries are recorded
    as `child` on privacy.consent, once each however many flagged events: the same person's
    later events, no longer flagged, by either identifier, are dropped as `child`, by this
    worker and by a new one; other people's events pass."""
    settings = topics
    worker = start_ready(workers, settings)
    traffic = Traffic()
    kid = {"cookie_id": "c-kid", "user_id": "u-kid"}
    flagged = traffic.events(3, passes=False, age_under_16=True, **kid)
    send_events(settings, [*flagged, *traffic.strangers(10)])
    worker.wait_metric(APPLIED, at_least=2)  # its own two records, read back
    later = [
        *traffic.events(5, passes=False, cookie_id="c-kid"),
        *traffic.events(5, passes=False, user_id="u-kid", device_id="d-new"),
    ]
    send_events(settings, [*later, *traffic.strangers(10)])
    worker.wait_metric(CONSUMED, at_least=traffic.total)
    assert_enforced(downstream(settings, traffic, check=worker.ensure_alive), traffic)
    metrics = worker.metrics()
    assert metrics[dropped("under_16")] == len(flagged)
    assert metrics[dropped("child")] == len(later)
    assert metrics["anonstream_children_reported_total"] == 2
    records = read_all(settings, settings.topic_consent)
    assert sorted(r.key for r in records) == [b"cookie_id:c-kid", b"user_id:u-kid"]
    for record in records:
        value = orjson.loads(record.value)
        assert value["action"] == "child"
        assert f"{value['subject_type']}:{value['subject_id']}".encode() == record.key
    assert worker.stop() == 0

    fresh = start_ready(workers, settings)
    before = traffic.total
    again = traffic.events(4, passes=False, cookie_id="c-kid")
    send_events(settings, [*again, *traffic.strangers(5)])
    fresh.wait_metric(CONSUMED, at_least=traffic.total - before)
    assert_enforced(downstream(settings, traffic, check=fresh.ensure_alive), traffic)
    assert fresh.metric(dropped("child")) == len(again)


def test_expired_key_is_gone_from_the_topic_and_the_next_worker(
    topics: Settings, workers: WorkerFactory
) -> None:
    """A worker started 3 days later (injected clock) deletes the old epoch's key records,
    never holds that key (an event of the old epoch gets no pseudonym: `no_key`), and gives
    the same cookie a different pseudonym in its own epoch.
    """
    settings = topics
    day = 86_400
    traffic = Traffic()
    today = traffic.now
    epoch = int(today.timestamp()) // day
    first = start_ready(workers, settings)
    send_events(settings, traffic.events(1, passes=True, cookie_id="c-k"))
    (old,) = downstream(settings, traffic, check=first.ensure_alive)
    assert old["epoch"] == epoch
    key_records = read_all(settings, settings.topic_keys, idle_s=1.0)
    old_material = [
        orjson.loads(r.value)["wrapped_b64"].encode()
        for r in key_records
        if r.key.startswith(f"{epoch}:".encode())
    ]
    assert old_material, "the first worker published today's key"
    assert first.stop() == 0

    later = start_ready(workers, settings, clock_offset_s=3 * day)
    assert later.metric("anonstream_key_epoch") == epoch + 3
    remaining = read_all(settings, settings.topic_keys, idle_s=1.0)
    assert remaining, "the new epoch's key is there"
    # Counts only: a failing assertion must not print key material.
    assert sum(r.key.startswith(f"{epoch}:".encode()) for r in remaining) == 0
    assert sum(any(m in r.value for m in old_material) for r in remaining) == 0

    stale = traffic.events(1, passes=False, cookie_id="c-k")  # today: its key is destroyed
    fresh = traffic.events(1, passes=True, cookie_id="c-k", at=today + timedelta(days=3))
    send_events(settings, [*stale, *fresh])
    later.wait_metric(CONSUMED, at_least=2)
    events = downstream(settings, traffic, check=later.ensure_alive)
    assert_enforced(events, traffic)
    assert later.metric(dropped("no_key")) == 1
    (new,) = [e for e in events if e["page_url"] == fresh[0]["page_url"]]
    assert new["epoch"] == epoch + 3
    assert new["subject"] != old["subject"]


GUID_UPPER = "6F9619FF-8B86-D011-B42D-00C04FC964FF"
GUID_LOWER = GUID_UPPER.lower()
RENE_NFD = "c-Rene\u0301"  # e + combining acute
RENE_NFC = "c-Ren\u00e9"


def test_records_stop_every_equivalent_spelling(
    topics: Settings, workers: WorkerFactory, tmp_path: Path
) -> None:
    """Opt-out, erasure and child records under one spelling (by the command, or a consent
    platform's raw record) drop events under every equivalent spelling (case of e-mails and
    GUIDs, white space, NFC/NFD); one person's spellings share one pseudonym; with user ids
    case-sensitive, `Bob` and `bob` are two people."""
    settings = topics
    worker = start_ready(workers, settings)
    consent(settings, "opt-out", "--user-id", "Alice.Martin@Example.com")
    consent(settings, "erase", "--device-id", GUID_UPPER)
    # A consent platform's own producer: key and value in its own (NFD) spelling.
    raw = {"subject_type": "cookie_id", "subject_id": RENE_NFD, "action": "child"}
    produce(
        settings,
        settings.topic_consent,
        [orjson.dumps(raw)],
        keys=[f"cookie_id:{RENE_NFD}".encode()],
    )
    consent(settings, "opt-out", "--user-id", "Bob")
    worker.wait_metric(APPLIED, at_least=4)

    traffic = Traffic()
    alice = ["alice.martin@example.com", " ALICE.MARTIN@EXAMPLE.COM", "Alice.Martin@Example.com\t"]
    opted_out = [traffic.event(passes=False, user_id=spelling) for spelling in alice]
    erased = [traffic.event(passes=False, device_id=s) for s in (GUID_LOWER, f" {GUID_UPPER} ")]
    child = [traffic.event(passes=False, cookie_id=s) for s in (RENE_NFC, f" {RENE_NFD}")]
    bob = [traffic.event(passes=False, user_id=s) for s in ("bob", " BOB ")]
    carol = [
        traffic.event(passes=True, user_id=s) for s in ("Carol@Example.org", " carol@EXAMPLE.org")
    ]
    send_events(settings, [*opted_out, *erased, *child, *bob, *carol, *traffic.strangers(3)])
    worker.wait_metric(CONSUMED, at_least=traffic.total)
    events = downstream(settings, traffic, check=worker.ensure_alive)
    assert_enforced(events, traffic)
    metrics = worker.metrics()
    assert metrics[dropped("opted_out")] == len(opted_out) + len(bob)
    assert metrics[dropped("erased")] == len(erased)
    assert metrics[dropped("child")] == len(child)
    carol_paths = {e["page_url"] for e in carol}
    assert len({e["subject"] for e in events if e["page_url"] in carol_paths}) == 1
    assert worker.stop() == 0

    # The policy switch: user ids case-sensitive. `Bob`'s opt-out no longer covers `bob`.
    policy = tmp_path / "case-sensitive.toml"
    text = render_default_policy_toml()
    assert "user_id_case_sensitive = false" in text
    policy.write_text(
        text.replace("user_id_case_sensitive = false", "user_id_case_sensitive = true")
    )
    sensitive = start_ready(workers, settings, policy_path=policy)
    before = traffic.total
    still_out = [traffic.event(passes=False, user_id=s) for s in ("Bob", " Bob\n")]
    other_bob = [traffic.event(passes=True, user_id="bob")]
    still_alice = [traffic.event(passes=False, user_id="ALICE.MARTIN@example.com")]
    send_events(settings, [*still_out, *other_bob, *still_alice])
    sensitive.wait_metric(CONSUMED, at_least=traffic.total - before)
    assert_enforced(downstream(settings, traffic, check=sensitive.ensure_alive), traffic)
    assert sensitive.metric(dropped("opted_out")) == len(still_out) + len(still_alice)
