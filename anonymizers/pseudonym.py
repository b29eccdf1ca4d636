"""Keyed pseudonyms: the subject of an event and the identifiers the policy keeps.

Every pseudonym is `EpochKey.pseudonym("<domain>:<type>:<value>")`: HMAC-SHA256 under the
epoch's random key, first 16 bytes, base64url (22 characters). The domain prefix keeps the
uses apart (an identifier pseudonym can never equal a visitor id). Without the key nobody,
the operator included, can recompute or enumerate them; a new key each epoch unlinks them
across epochs.

Subject: the first of `identifiers.subject_order` present on the event; without one, a
cookieless daily visitor id from the UTC day, the IP and the user agent (as Plausible does),
computed before the IP is dropped. No identifier and no usable IP means no subject.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, NamedTuple

from anonymizers.fields import IDENTIFIER_FIELDS
from anonymizers.ip import ParsedIp
from anonymizers.keys import EpochKey
from anonymizers.policy import IdentifiersConfig

ID_DOMAIN: Final = "anonstream/id/v1"
VISITOR_DOMAIN: Final = "anonstream/visitor/v1"
MAX_ID_LENGTH: Final = 512
"""Longer identifier values are treated as absent (the raw schema allows 512 characters)."""


def identifier_pseudonym(key: EpochKey, id_type: str, value: str) -> str:
    """Pseudonym of identifier `value` of type `id_type` ("user_id"...) under `key`."""
    return key.pseudonym(f"{ID_DOMAIN}:{id_type}:{value}")


def visitor_pseudonym(key: EpochKey, *, day: str, ip: ParsedIp, user_agent: str) -> str:
    """Cookieless daily visitor id: keyed hash of the UTC day (YYYY-MM-DD), IP and user agent."""
    return key.pseudonym(f"{VISITOR_DOMAIN}:{day}:{ip.text}\x00{user_agent}")


def _identifier(event: Mapping[str, object], name: str) -> str | None:
    value = event.get(name)
    if isinstance(value, str) and value and len(value) <= MAX_ID_LENGTH:
        return value
    return None


class Subject(NamedTuple):
    """The subject pseudonym and where it came from ("user_id"... or "visitor")."""

    pseudonym: str
    source: str


class Pseudonymizer:
    """Subject choice and identifier pseudonyms per `IdentifiersConfig`.

    `kept` names the identifier fields the output may carry (action pseudonymize and named
    by the allowlist); every other identifier is dropped: it only ever feeds the subject.
    """

    def __init__(self, config: IdentifiersConfig, *, kept: frozenset[str] = frozenset()) -> None:
        self._order = config.subject_order
        self._cookieless = config.cookieless_visitor
        self._kept = tuple(
            name
            for name in IDENTIFIER_FIELDS
            if name in kept and getattr(config, name) == "pseudonymize"
        )

    def subject(
        self, event: Mapping[str, object], key: EpochKey, *, ip: ParsedIp | None, day: str
    ) -> Subject | None:
        """The event's subject, or None when it has none (then it is dropped)."""
        for name in self._order:
            value = _identifier(event, name)
            if value is not None:
                return Subject(identifier_pseudonym(key, name, value), name)
        if self._cookieless and ip is not None:
            user_agent = event.get("user_agent")
            ua_text = user_agent if isinstance(user_agent, str) else ""
            return Subject(visitor_pseudonym(key, day=day, ip=ip, user_agent=ua_text), "visitor")
        return None

    def identifiers(self, event: Mapping[str, object], key: EpochKey) -> dict[str, str]:
        """Pseudonyms of the identifiers the output keeps, by field name."""
        out: dict[str, str] = {}
        for name in self._kept:
            value = _identifier(event, name)
            if value is not None:
                out[name] = identifier_pseudonym(key, name, value)
        return out
