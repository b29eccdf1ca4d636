"""Keyed pseudonyms: the subject of an event and the identifiers the policy keeps.

Every pseudonym is `EpochKey.pseudonym("<domain>:<type>:<value>")`: HMAC-SHA256 under the
epoch's random key, first 16 bytes, base64url (22 characters), where `<value>` is the
identifier's canonical form under the policy's `identifiers` forms (`anonymizers.identifiers`),
so equivalent spellings of one identifier get one pseudonym. The domain prefix keeps the
uses apart (an identifier pseudonym can never equal a visitor id). Without the key nobody,
the operator included, can recompute or enumerate them; a new key each epoch unlinks them
across epochs.

Subject: the first of `identifiers.subject_order` present on the event; without one, a
cookieless daily visitor id from the UTC day, the IP and the user agent (as Plausible does),
computed before the IP is dropped. No identifier and no usable IP means no subject. An
identifier of white space only is absent (its canonical form is empty).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Final, NamedTuple

from anonymizers import reasons
from anonymizers.fields import IDENTIFIER_FIELDS, SUBJECT_FIELDS
from anonymizers.identifiers import IdentifierForms
from anonymizers.ip import ParsedIp
from anonymizers.keys import EpochKey
from anonymizers.memo import Memo
from anonymizers.outcome import Draft
from anonymizers.policy import IdentifiersConfig

ID_DOMAIN: Final = "anonstream/id/v1"
VISITOR_DOMAIN: Final = "anonstream/visitor/v1"
NO_SUBJECT: Final = ("", "")
"""What `Pseudonymizer.find_subject` returns for an event without a subject."""
MAX_ID_LENGTH: Final = 512
"""Longer identifier values are treated as absent (the raw schema allows 512 characters)."""


def identifier_pseudonym(key: EpochKey, id_type: str, value: str, *, forms: IdentifierForms) -> str:
    """Pseudonym of identifier `value` of type `id_type` ("user_id"...) under `key`, of its
    canonical form under `forms` (the policy's `identifiers.forms()`)."""
    return key.pseudonym(f"{ID_DOMAIN}:{id_type}:{forms.canonical(id_type, value)}")


def visitor_pseudonym(key: EpochKey, *, day: str, ip: ParsedIp, user_agent: str) -> str:
    """Cookieless daily visitor id: keyed hash of the UTC day (YYYY-MM-DD), IP and user agent."""
    return key.pseudonym(f"{VISITOR_DOMAIN}:{day}:{ip.text}\x00{user_agent}")


def _identifier(event: Mapping[str, object], name: str) -> str | None:
    value = event.get(name)
    if isinstance(value, str) and value and len(value) <= MAX_ID_LENGTH and not value.isspace():
        return value
    return None


class Subject(NamedTuple):
    """The subject pseudonym and where it came from ("user_id"... or "visitor")."""

    pseudonym: str
    source: str


class Pseudonymizer:
    """The chain's subject unit: subject choice and identifier pseudonyms per
    `IdentifiersConfig`, under the draft's epoch key; an event without a subject is dropped
    (`no_subject`).

    `kept` names the identifier fields the output may carry (action pseudonymize and named
    by the allowlist); every other identifier is dropped: it only ever feeds the subject.
    Pseudonyms come from the key's per-prefix memos (`EpochKey.memo_for`), keyed by the raw
    value and computed from its canonical form (`config.forms()`).
    """

    def __init__(self, config: IdentifiersConfig, *, kept: frozenset[str] = frozenset()) -> None:
        forms = config.forms()
        self._order = tuple(
            (name, _id_prefix(name), forms.of_type(name)) for name in config.subject_order
        )
        self._cookieless = config.cookieless_visitor
        self._kept = tuple(
            (name, _id_prefix(name), forms.of_type(name))
            for name in IDENTIFIER_FIELDS
            if name in kept and getattr(config, name) == "pseudonymize"
        )
        # The memos of the last key used, so each event skips `memo_for`.
        self._bound: EpochKey | None = None
        self._order_memos: tuple[tuple[str, Memo[str, str]], ...] = ()
        self._visitor_memo: Memo[str, str] | None = None

    def __call__(self, event: dict[str, Any], out: Draft) -> str | None:
        key = out.key
        subject, source = self.find_subject(
            event, out.present, key, ip_text=out.ip_text, day=out.day
        )
        if not subject:
            return reasons.NO_SUBJECT
        out.subject = subject
        out.source = source
        out.fields["subject"] = subject
        if self._kept:
            out.fields.update(self.identifiers(event, key))
        return None

    def find_subject(
        self,
        event: dict[str, object],
        present: Collection[str],
        key: EpochKey,
        *,
        ip_text: str | None,
        day: str,
    ) -> tuple[str, str]:
        """(pseudonym, source) of the event's subject, `NO_SUBJECT` ("", "") when it has none.

        `present` holds the identifier fields the event has, no more, no fewer; `ip_text` is
        the canonical text of its parsed IP (None: no usable IP).
        """
        if key is not self._bound:
            self._bind(key)
        if present:
            for name, memo in self._order_memos:
                if name in present:
                    value = event[name]
                    if (
                        isinstance(value, str)
                        and value
                        and len(value) <= MAX_ID_LENGTH
                        and not value.isspace()
                    ):
                        pseudonym = memo.table.get(value)
                        if pseudonym is None:
                            pseudonym = memo.miss(value)
                        return pseudonym, name
        visitor = self._visitor_memo
        if self._cookieless and ip_text is not None and visitor is not None:
            user_agent = event.get("user_agent")
            ua_text = user_agent if isinstance(user_agent, str) else ""
            message = f"{day}:{ip_text}\x00{ua_text}"
            pseudonym = visitor.table.get(message)
            if pseudonym is None:
                pseudonym = visitor.miss(message)
            return pseudonym, "visitor"
        return NO_SUBJECT

    def subject(
        self, event: Mapping[str, object], key: EpochKey, *, ip: ParsedIp | None, day: str
    ) -> Subject | None:
        """The event's subject, or None when it has none (then it is dropped)."""
        fields = event if type(event) is dict else dict(event)
        present = _SUBJECT_NAMES.intersection(fields)
        found = self.find_subject(
            fields, present, key, ip_text=None if ip is None else ip.text, day=day
        )
        return None if not found[0] else Subject(*found)

    def memos(self) -> dict[str, Memo[str, str]]:
        """The pseudonym memos of the last key used, by source (for cache statistics)."""
        memos = dict(self._order_memos)
        if self._visitor_memo is not None:
            memos["visitor"] = self._visitor_memo
        return memos

    def _bind(self, key: EpochKey) -> None:
        self._order_memos = tuple(
            (name, key.memo_for(prefix, canonical)) for name, prefix, canonical in self._order
        )
        self._visitor_memo = key.memo_for(_VISITOR_PREFIX)
        self._bound = key

    def identifiers(self, event: Mapping[str, object], key: EpochKey) -> dict[str, str]:
        """Pseudonyms of the identifiers the output keeps, by field name."""
        out: dict[str, str] = {}
        for name, prefix, canonical in self._kept:
            value = _identifier(event, name)
            if value is not None:
                out[name] = key.memo_for(prefix, canonical)[value]
        return out


def _id_prefix(id_type: str) -> str:
    return f"{ID_DOMAIN}:{id_type}:"


_VISITOR_PREFIX: Final = f"{VISITOR_DOMAIN}:"
_SUBJECT_NAMES: Final = frozenset(SUBJECT_FIELDS)
