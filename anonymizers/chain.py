"""The anonymizer chain: a list of units, one validated raw event in, an outcome out.

`Pipeline.from_policy(policy, *, keys, geo, consent=None)` configures each unit once from
the frozen policy and keeps, in order, those the policy needs:

    consent gate -> event time -> epoch key -> IP (geolocation, truncation) -> subject and
    identifier pseudonyms -> URLs -> referrer -> search terms -> context -> echo guard ->
    allowlist

Each unit is called as `unit(event, draft)` and returns a drop reason or None (see
`anonymizers.outcome`); the pipeline stops at the first reason. The stream's anonymize
stage and `anonstream preview` run this same object, so what the privacy team previews is
what runs.

It fails closed: no key, no subject, an unusable time or event type drop the event with a
reason from `anonymizers.reasons`; a malformed value (IP, URL...) yields no output field.
Exceptions mean programming errors, never bad data, and one event's never costs the others:
an exception a unit raises on an event drops that event alone as `unprocessable`, logged
with the unit's and the exception's class names and where it was raised, never a value
(`Pipeline.failures` counts them). Infrastructure errors (an unreadable geolocation database,
a destroyed key, memory) propagate, so that the orchestrator restarts the worker.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from anonymizers import reasons
from anonymizers.allowlist import Allowlist, EchoGuard
from anonymizers.consent import ConsentGate, ConsentState
from anonymizers.context import CONTEXT_FIELDS, ContextAnonymizer
from anonymizers.event_time import EventTimeUnit
from anonymizers.exceptions import GeoDatabaseError, KeyMaterialError
from anonymizers.fields import IDENTIFIER_FIELDS, RAW_FIELDS
from anonymizers.geo import GeoLookup
from anonymizers.ip import IpAnonymizer
from anonymizers.keys import KeyProvider, KeyUnit
from anonymizers.memo import Memo
from anonymizers.outcome import DROPPED, Anonymized, Draft, Outcome, Unit
from anonymizers.policy import Policy
from anonymizers.pseudonym import Pseudonymizer
from anonymizers.search_terms import SearchTermScrubber
from anonymizers.urls import ReferrerScrubber, UrlScrubber

log = logging.getLogger(__name__)

_URL_FIELDS: Final = frozenset({"page_url", "link_url", "referrer_internal"})
_REFERRER_FIELDS: Final = frozenset({"referrer_host", "referrer_internal"})
_INFRASTRUCTURE: Final = (GeoDatabaseError, KeyMaterialError, MemoryError)
"""Exceptions that are not the event's doing: they propagate out of the pipeline."""
_UNPROCESSABLE: Final = DROPPED[reasons.UNPROCESSABLE]


class Pipeline:
    """The whole anonymizer chain for one policy: `units`, called in order. Build it with
    `from_policy`.

    Not thread-safe (its units' memos are plain dicts): use one per worker process, as the
    stream does (one actor per partition). Each unit memoises its own results per raw value
    where that pays (IPs, URLs, referrers, search terms, user agents, languages, pseudonyms,
    consent digests): bounded, in process memory only, never logged. Each memo is a pure
    function of its key and the policy; `tests/anonymizers/test_memo.py` checks the chain
    against its units with every memo off.
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
        self.allowlist = Allowlist(policy.output)
        self.units: tuple[Unit, ...] = tuple(_units(policy, self.allowlist, keys, geo, consent))
        self._record = record_actions
        self._geo = geo
        self._begin_batch: tuple[Callable[[], None], ...] = tuple(
            unit.begin_batch for unit in self.units if isinstance(unit, KeyUnit)
        )
        self.failures: Counter[tuple[str, str]] = Counter()
        """Events dropped as `unprocessable`, by (unit class, exception class) name."""

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

    def unit(self, kind: type[Any]) -> Any:
        """The pipeline's unit of class `kind` (for statistics and tests); LookupError if the
        policy needs none."""
        for unit in self.units:
            if isinstance(unit, kind):
                return unit
        raise LookupError(f"no {kind.__name__} in this pipeline")

    def process_batch(self, events: Iterable[Mapping[str, Any]]) -> list[Outcome]:
        """The outcome of each event, in order (keys are asked for once per epoch and batch)."""
        for begin in self._begin_batch:
            begin()
        run = self._run
        return [run(event if type(event) is dict else dict(event)) for event in events]

    def __call__(self, event: Mapping[str, Any]) -> Outcome:
        return self.process_batch((event,))[0]

    def _run(self, event: dict[str, Any]) -> Outcome:
        # The identifier fields present (usually one, often none): the gate, the subject and
        # the echo guard loop over these only.
        out = Draft([name for name in IDENTIFIER_FIELDS if name in event])
        current: object = None
        try:
            for unit in self.units:
                current = unit
                reason = unit(event, out)
                if reason is not None:
                    return DROPPED[reason]
            current = describe
            if self._record:
                return Anonymized(out.fields, out.subject, out.epoch, describe(event, out))
            return Anonymized(out.fields, out.subject, out.epoch)
        except _INFRASTRUCTURE:
            raise
        except Exception as exc:  # one event's defect never costs the batch: see module doc
            self._failed(current, exc)
            return _UNPROCESSABLE

    def _failed(self, unit: object, exc: Exception) -> None:
        """Count and log an event a unit raised on: class names and a code location only
        (an exception's message or traceback may quote the event)."""
        name = getattr(unit, "__name__", None) or type(unit).__name__
        failure = (name, type(exc).__name__)
        self.failures[failure] += 1
        frame = exc.__traceback__
        while frame is not None and frame.tb_next is not None:
            frame = frame.tb_next
        where = (
            f"{frame.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.tb_lineno}"
            if frame is not None
            else "unknown"
        )
        # The first of each kind at ERROR (a defect to fix), the repeats at DEBUG: a hostile
        # sender cannot flood the log.
        level = logging.ERROR if self.failures[failure] == 1 else logging.DEBUG
        log.log(
            level,
            "event dropped as unprocessable: unit %s raised %s at %s (%d so far)",
            failure[0],
            failure[1],
            where,
            self.failures[failure],
        )

    def cache_stats(self) -> dict[str, tuple[int, int, int]]:
        """(entries, bound, misses) of each memo, by name: what a worker's caches hold.

        Sizes and counts only; never the cached keys or values.
        """
        memos: dict[str, Memo[Any, Any]] = {}
        for unit in self.units:
            if isinstance(unit, IpAnonymizer):
                memos["ip"] = unit.memo
            elif isinstance(unit, UrlScrubber):
                memos["url"] = unit.memo
            elif isinstance(unit, ReferrerScrubber):
                memos["referrer"] = unit.memo
            elif isinstance(unit, SearchTermScrubber):
                memos["search_terms"] = unit.memo
            elif isinstance(unit, ContextAnonymizer):
                memos["user_agent"] = unit.device_memo
                memos["language"] = unit.language_memo
            elif isinstance(unit, ConsentGate):
                memos.update({f"consent_digest:{n}": m for n, m in unit.digest_memos().items()})
            elif isinstance(unit, Pseudonymizer):
                memos.update({f"pseudonym:{n}": m for n, m in unit.memos().items()})
        stats = {name: (len(m), m.max_size, m.misses) for name, m in memos.items()}
        if self._geo is not None:
            # Misses here are records read from the database, for the IP memo's misses.
            stats["geo"] = self._geo.cache_stats()
        return stats


def _units(
    policy: Policy,
    allowlist: Allowlist,
    keys: KeyProvider,
    geo: GeoLookup | None,
    consent: ConsentState | None,
) -> list[Unit]:
    """The units `policy` needs, in chain order, each configured once."""
    wanted = allowlist.names
    units: list[Unit] = [
        ConsentGate(policy.consent, consent),
        EventTimeUnit(keys.rotation_seconds),
        KeyUnit(keys),
        IpAnonymizer(policy.geo, geo, fields=wanted),
        Pseudonymizer(policy.identifiers, kept=wanted),
    ]
    if wanted & _URL_FIELDS:
        units.append(UrlScrubber(policy.urls, fields=wanted))
    if wanted & _REFERRER_FIELDS:
        units.append(ReferrerScrubber(policy.urls, fields=wanted))
    if "search_terms" in wanted:
        units.append(SearchTermScrubber(policy.search_terms))
    if wanted.intersection(CONTEXT_FIELDS):
        units.append(ContextAnonymizer(policy.context, fields=wanted))
    if allowlist.free_text:
        units.append(EchoGuard(allowlist))
    units.append(allowlist)
    return units


def describe(event: Mapping[str, Any], out: Draft) -> tuple[str, ...]:
    """What the units did to an event that passed, for preview reports."""
    actions = [f"subject:{out.source}"]
    fields = out.fields
    if event.get("ip") is not None:
        if out.ip_text is None:
            actions.append("ip:malformed_dropped")
        else:
            actions.append("ip:geolocated" if out.located else "ip:not_located")
            actions.append("ip:truncated" if "ip_prefix" in fields else "ip:dropped")
    for name in IDENTIFIER_FIELDS:
        if name in event:
            actions.append(f"{name}:{'pseudonymized' if name in fields else 'dropped'}")
    for name in ("page_url", "link_url"):
        if name in event:
            actions.append(f"{name}:{'scrubbed' if name in fields else 'dropped'}")
    if "referrer_url" in event:
        kept = "referrer_host" in fields
        actions.append("referrer_url:to_host" if kept else "referrer_url:dropped")
    if "search_terms" in event:
        action = out.search_action
        if action is None:
            action = "normalised" if "search_terms" in fields else "dropped"
        actions.append(f"search_terms:{action}")
    if "user_agent" in event:
        actions.append("user_agent:reduced_dropped")
    value = event.get("time_on_page_ms")
    if isinstance(value, int | float) and fields.get("time_on_page_ms") not in (None, value):
        actions.append("time_on_page_ms:clamped")
    actions.extend(f"{name}:identifier_echo_removed" for name in out.echoed)
    actions.extend("unknown_field:dropped" for name in event if name not in RAW_FIELDS)
    return tuple(actions)
