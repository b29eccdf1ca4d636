"""Consent state and the gate every event passes before anything else.

`ConsentState` holds, per subject, the latest consent record (`schemas/consent-record.v1.json`)
reduced to bit flags, under a keyed hash of the subject: the first 64 bits of HMAC-SHA256
(OpenSSL) keyed with a random secret made per process (`subject_digest`), so the state never
holds a raw id and its keys mean nothing outside the process. It costs about 100 bytes per
subject (an int-to-int dict). The digest is of the identifier's canonical form
(`anonymizers.identifiers`), for records and events alike, so a record under one spelling
(case of an e-mail or GUID, surrounding spaces, NFD) covers every equivalent spelling.

A record replaces the subject's whole state, so the state after replaying a compacted topic
(one record per key) equals the state before a restart:
- `opt_out` purposes P: opted out of P only;  `opt_in` P: opted in to P only, so still
  opted out of every purpose P does not name (fail closed: a record replaces the state, and
  an opt-in to advertising must not end an analytics opt-out); `opt_in` all: nothing;
- `erase`: erased (every later event dropped);  `child`: a child's (every later event dropped).
`purposes` absent means all three.

`ConsentGate` returns the drop reason for an event, or None to let it through.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Collection, Mapping
from functools import partial
from typing import Any, Final, NamedTuple

from anonymizers import reasons
from anonymizers.exceptions import ConsentRecordError
from anonymizers.fields import SUBJECT_FIELDS
from anonymizers.identifiers import DEFAULT_FORMS, POLICY_FREE, IdentifierForms
from anonymizers.memo import Memo
from anonymizers.outcome import Draft
from anonymizers.policy import ConsentConfig

PURPOSES: Final = ("analytics", "advertising", "personalization")
ACTIONS: Final = ("opt_out", "opt_in", "erase", "child")
_PURPOSE_BITS: Final = {"analytics": 1, "advertising": 2, "personalization": 4}
_ALL_PURPOSES: Final = 7
_ANALYTICS_BIT: Final = _PURPOSE_BITS["analytics"]
ERASED_BIT: Final = 8
CHILD_BIT: Final = 16
_RECORD_KEYS: Final = frozenset(
    {"subject_type", "subject_id", "action", "purposes", "requested_at"}
)
SECRET_BYTES: Final = 32
_SUBJECT_NAMES: Final = frozenset(SUBJECT_FIELDS)
DIGEST_MEMO_SIZE: Final = 65_536
"""Digests the gate remembers per subject type (raw id -> digest), so a returning subject
skips the HMAC."""


def subject_digest(secret: bytes, subject_type: str, subject_id: str) -> int:
    """The 64-bit keyed hash a subject's state is stored under: the first 8 bytes of
    HMAC-SHA256 (OpenSSL) under `secret` of `<subject_type>:<subject_id>`."""
    data = f"{subject_type}:{subject_id}".encode()
    return int.from_bytes(hmac.digest(secret, data, "sha256")[:8], "big")


class ConsentStatus(NamedTuple):
    """A subject's consent as the latest record left it."""

    opted_out: frozenset[str]
    erased: bool
    child: bool


def _flags_of(record: Mapping[str, object]) -> int:
    unknown = set(record) - _RECORD_KEYS
    if unknown:
        raise ConsentRecordError(f"unknown field(s): {', '.join(sorted(unknown))}")
    subject_type = record.get("subject_type")
    if subject_type not in SUBJECT_FIELDS:
        raise ConsentRecordError(f"subject_type must be one of {', '.join(SUBJECT_FIELDS)}")
    subject_id = record.get("subject_id")
    if not isinstance(subject_id, str) or not 1 <= len(subject_id) <= 512:
        raise ConsentRecordError("subject_id must be a string of 1 to 512 characters")
    if not subject_id.strip():
        raise ConsentRecordError("subject_id must not be only white space")
    action = record.get("action")
    if action not in ACTIONS:
        raise ConsentRecordError(f"action must be one of {', '.join(ACTIONS)}")
    purposes = record.get("purposes")
    bits = _ALL_PURPOSES
    if purposes is not None:
        if (
            not isinstance(purposes, list)
            or not purposes
            or len(set(map(str, purposes))) != len(purposes)
            or any(p not in _PURPOSE_BITS for p in purposes)
        ):
            raise ConsentRecordError(
                f"purposes must be a non-empty list of distinct values from {', '.join(PURPOSES)}"
            )
        bits = 0
        for purpose in purposes:
            bits |= _PURPOSE_BITS[purpose]
    requested_at = record.get("requested_at")
    if requested_at is not None and not isinstance(requested_at, str):
        raise ConsentRecordError("requested_at must be an RFC 3339 date-time string")
    if action == "opt_out":
        return bits
    if action == "erase":
        return ERASED_BIT
    if action == "child":
        return CHILD_BIT
    # opt_in: opted out of whatever it does not name.
    return _ALL_PURPOSES & ~bits


class ConsentState:
    """Latest consent per subject, stored under keyed 64-bit digests. Not thread-safe.

    `secret` (32 bytes) keys the digests; by default a random one per process, so a state
    is rebuilt from the consent topic at start-up, never persisted. `forms` (the policy's
    `identifiers.forms()`) canonicalises every identifier before its digest, for records,
    tombstones and the gate alike.
    """

    def __init__(
        self, *, secret: bytes | None = None, forms: IdentifierForms = DEFAULT_FORMS
    ) -> None:
        self._secret = secret if secret is not None else secrets.token_bytes(SECRET_BYTES)
        if len(self._secret) < 16:
            raise ConsentRecordError("the consent digest secret must be at least 16 bytes")
        self._flags: dict[int, int] = {}
        self.forms: IdentifierForms = forms

    def __repr__(self) -> str:
        return f"ConsentState(subjects={len(self._flags)})"

    def __len__(self) -> int:
        return len(self._flags)

    def digest(self, subject_type: str, subject_id: str) -> int:
        """The keyed digest (`subject_digest`) of the subject's canonical form under `forms`."""
        canonical = self.forms.canonical(subject_type, subject_id)
        return subject_digest(self._secret, subject_type, canonical)

    def apply(self, record: Mapping[str, object]) -> None:
        """Make `record` the subject's state; `ConsentRecordError` for an invalid record."""
        if not isinstance(record, Mapping):
            raise ConsentRecordError("a consent record must be an object")
        flags = _flags_of(record)
        digest = self.digest(str(record["subject_type"]), str(record["subject_id"]))
        if flags:
            self._flags[digest] = flags
        else:
            # Nothing opted out: no entry at all, which keeps the state small.
            self._flags.pop(digest, None)

    def forget(self, subject_type: str, subject_id: str) -> None:
        """Remove a subject's state (a tombstone on the compacted consent topic)."""
        self._flags.pop(self.digest(subject_type, subject_id), None)

    def flags_by_digest(self) -> dict[int, int]:
        """The live digest -> flags mapping (updated in place by `apply` and `forget`; read
        it, never change it: a plain dict so the gate's look-up per event is a direct call)."""
        return self._flags

    def flags(self, subject_type: str, subject_id: str) -> int:
        """The raw bit flags of a subject (0 when it has no record)."""
        if not self._flags:
            return 0
        return self._flags.get(self.digest(subject_type, subject_id), 0)

    def status(self, subject_type: str, subject_id: str) -> ConsentStatus:
        """The subject's consent status."""
        flags = self.flags(subject_type, subject_id)
        opted_out = frozenset(p for p, bit in _PURPOSE_BITS.items() if flags & bit)
        return ConsentStatus(opted_out, bool(flags & ERASED_BIT), bool(flags & CHILD_BIT))


class ConsentGate:
    """The chain's first unit: decides, per event, whether consent and rights let it through.

    Drop reasons, in this order: `under_16` (the event says so), `child`, `erased` or
    `opted_out` (a record for ANY identifier on the event: user_id, cookie_id, device_id,
    ad_id; opted out means of analytics), `no_consent` (the event's consent.analytics is
    false, or absent while `require_consent_signal`), `gpc` and `dnt` (when honoured).

    The digest of each identifier seen is memoised (a pure function of the id and the
    state's secret; bounded, in process memory only); the flags are read live from the
    state, so a record applied takes effect for the very next event.
    """

    def __init__(self, config: ConsentConfig, state: ConsentState | None = None) -> None:
        self._state = state if state is not None else ConsentState()
        self._honour_gpc = config.honour_gpc
        self._honour_dnt = config.honour_dnt
        self._require_signal = config.require_consent_signal
        self._flags = self._state.flags_by_digest()
        self._digest_memos = {
            name: Memo(partial(self._state.digest, name), max_size=DIGEST_MEMO_SIZE, values="u64")
            for name in SUBJECT_FIELDS
        }
        # Looped over per event (`present` may be any collection; no iterator over it).
        self._digest_items = tuple(self._digest_memos.items())

    def digest_memos(self) -> dict[str, Memo[str, int]]:
        """The digest memo of each subject type (for cache statistics)."""
        return dict(self._digest_memos)

    @property
    def state(self) -> ConsentState:
        """The consent state consulted."""
        return self._state

    def __call__(self, event: dict[str, Any], out: Draft) -> str | None:
        """The chain's consent unit: the drop reason of `event`, whose identifier fields are
        the draft's `present`."""
        return self.check(event, out.present)

    def decide(self, event: Mapping[str, object]) -> str | None:
        """The drop reason for any event mapping (None: it may pass)."""
        fields = event if type(event) is dict else dict(event)
        return self.check(fields, _SUBJECT_NAMES.intersection(fields))

    def check(self, event: dict[str, object], present: Collection[str]) -> str | None:
        """The drop reason for `event`, whose identifier fields are exactly `present`.

        `event` is a plain dict.
        """
        if event.get("age_under_16") is True:
            return reasons.UNDER_16
        flags = self._flags
        if flags and present:
            worst = 0
            for name, digests in self._digest_items:
                if name in present:
                    value = event[name]
                    if isinstance(value, str) and value:
                        digest = digests.table.get(value)
                        if digest is None:
                            digest = digests.miss(value)
                        worst |= flags.get(digest, 0)
            if worst:
                if worst & CHILD_BIT:
                    return reasons.CHILD
                if worst & ERASED_BIT:
                    return reasons.ERASED
                if worst & _ANALYTICS_BIT:
                    return reasons.OPTED_OUT
        consent = event.get("consent")
        if consent is None:
            analytics = None
        elif type(consent) is dict:  # what JSON gives: no ABC check per event
            analytics = consent.get("analytics")
        else:
            analytics = consent.get("analytics") if isinstance(consent, Mapping) else None
        if analytics is False or (self._require_signal and analytics is not True):
            return reasons.NO_CONSENT
        if self._honour_gpc and event.get("gpc") is True:
            return reasons.GPC
        if self._honour_dnt and event.get("dnt") is True:
            return reasons.DNT
        return None


def child_records(event: Mapping[str, object], requested_at: str) -> list[dict[str, str]]:
    """The `child` consent records an event flagged `age_under_16` stands for: one per
    subject identifier it carries (user, cookie, device, advertising id), so that the
    consent table drops every later event of those identifiers and the aggregate stage
    removes them from windows still open, as for a `child` record from the CMP. An event
    with no such identifier (a cookieless visitor) stands for none. Ids are written in their
    policy-free canonical form (`POLICY_FREE`), so equivalent spellings share one record key."""
    return [
        {
            "subject_type": name,
            "subject_id": POLICY_FREE.canonical(name, value),
            "action": "child",
            "requested_at": requested_at,
        }
        for name in SUBJECT_FIELDS
        if isinstance(value := event.get(name), str) and value.strip()
    ]
