"""Consent state (latest record wins, keyed digests, compact) and the consent gate."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anonymizers import reasons
from anonymizers.consent import ConsentGate, ConsentState, subject_digest
from anonymizers.exceptions import ConsentRecordError
from anonymizers.identifiers import DEFAULT_FORMS
from anonymizers.policy import ConsentConfig


def _record(
    action: str, subject_id: str = "u1", subject_type: str = "user_id", **extra: Any
) -> dict[str, Any]:
    return {"subject_type": subject_type, "subject_id": subject_id, "action": action, **extra}


def test_latest_record_wins() -> None:
    """Each record replaces the subject's state (as a compacted topic replay does)."""
    state = ConsentState()
    state.apply(_record("opt_out"))
    assert state.status("user_id", "u1").opted_out == {
        "analytics",
        "advertising",
        "personalization",
    }
    state.apply(_record("opt_in", purposes=["advertising"]))
    assert state.status("user_id", "u1").opted_out == {"analytics", "personalization"}, (
        "an opt-in to some purposes leaves the others opted out (fail closed)"
    )
    state.apply(_record("opt_in"))
    assert state.status("user_id", "u1").opted_out == frozenset()
    state.apply(_record("opt_out", purposes=["advertising"]))
    assert state.status("user_id", "u1").opted_out == {"advertising"}
    state.apply(_record("erase"))
    assert state.status("user_id", "u1").erased
    state.apply(_record("child"))
    status = state.status("user_id", "u1")
    assert status.child and not status.erased


def test_state_holds_no_raw_id() -> None:
    """Keys of the state are keyed digests, not the id; another secret gives other digests."""
    state = ConsentState(secret=b"k" * 32)
    state.apply(_record("opt_out", subject_id="alice@example.com"))
    assert list(state._flags) == [subject_digest(b"k" * 32, "user_id", "alice@example.com")]
    assert subject_digest(b"j" * 32, "user_id", "alice@example.com") not in state._flags
    assert "alice" not in repr(state)


def test_types_are_separate_subjects() -> None:
    """The same id under two identifier types are two subjects."""
    state = ConsentState()
    state.apply(_record("opt_out", subject_type="cookie_id"))
    assert state.status("user_id", "u1").opted_out == frozenset()


@pytest.mark.parametrize(
    "record",
    [
        {"subject_type": "email", "subject_id": "u", "action": "opt_out"},
        {"subject_type": "user_id", "subject_id": "", "action": "opt_out"},
        {"subject_type": "user_id", "subject_id": "u", "action": "delete"},
        {"subject_type": "user_id", "subject_id": "u", "action": "opt_out", "purposes": []},
        {
            "subject_type": "user_id",
            "subject_id": "u",
            "action": "opt_out",
            "purposes": ["marketing"],
        },
        {"subject_type": "user_id", "subject_id": "u", "action": "opt_out", "extra": 1},
        {"subject_type": "user_id", "action": "opt_out"},
    ],
    ids=[
        "bad-type",
        "empty-id",
        "bad-action",
        "empty-purposes",
        "bad-purpose",
        "unknown-field",
        "missing-id",
    ],
)
def test_invalid_records_rejected(record: dict[str, Any]) -> None:
    """Records outside the consent schema raise ConsentRecordError without the id in it."""
    with pytest.raises(ConsentRecordError) as caught:
        ConsentState().apply(record)
    assert "u" not in str(caught.value).split()


def test_memory_per_subject_is_small() -> None:
    """At 200,000 subjects the state costs well under 200 bytes each (dict + int objects)."""
    state = ConsentState()
    count = 200_000
    for index in range(count):
        state.apply(_record("opt_out", subject_id=f"user-{index}"))
    size = sys.getsizeof(state._flags) + sum(sys.getsizeof(k) for k in state._flags)
    assert size / count < 200


GATE_CASES = [
    pytest.param({}, None, id="clean"),
    pytest.param({"age_under_16": True}, reasons.UNDER_16, id="under-16"),
    pytest.param({"age_under_16": False}, None, id="over-16"),
    pytest.param({"consent": {"analytics": False}}, reasons.NO_CONSENT, id="no-analytics-consent"),
    pytest.param({"consent": {"analytics": True}}, None, id="consent"),
    pytest.param({"consent": {"advertising": False}}, None, id="other-purpose-refused"),
    pytest.param({"gpc": True}, reasons.GPC, id="gpc-honoured"),
    pytest.param({"dnt": True}, None, id="dnt-not-honoured"),
    pytest.param({"cookie_id": "opted"}, reasons.OPTED_OUT, id="opted-out-cookie"),
    pytest.param({"user_id": "fine", "device_id": "opted"}, reasons.OPTED_OUT, id="any-identifier"),
    pytest.param({"user_id": "ads-only"}, None, id="advertising-opt-out-only"),
    pytest.param({"ad_id": "erased"}, reasons.ERASED, id="erased"),
    pytest.param({"user_id": "kid"}, reasons.CHILD, id="child"),
    pytest.param({"user_id": "opted", "ad_id": "kid"}, reasons.CHILD, id="child-wins"),
    pytest.param({"user_id": None}, None, id="None"),
]


@pytest.mark.parametrize(("event", "expected"), GATE_CASES)
def test_gate(event: dict[str, Any], expected: str | None) -> None:
    """The gate drops on rights records for any identifier, on age, consent and GPC."""
    state = ConsentState()
    state.apply(_record("opt_out", subject_id="opted", subject_type="cookie_id"))
    state.apply(_record("opt_out", subject_id="opted", subject_type="device_id"))
    state.apply(_record("opt_out", subject_id="opted", subject_type="user_id"))
    state.apply(_record("opt_out", subject_id="ads-only", purposes=["advertising"]))
    state.apply(_record("erase", subject_id="erased", subject_type="ad_id"))
    state.apply(_record("child", subject_id="kid", subject_type="user_id"))
    state.apply(_record("child", subject_id="kid", subject_type="ad_id"))
    assert ConsentGate(ConsentConfig(), state).decide(event) == expected


@pytest.mark.parametrize(
    ("config", "event", "expected"),
    [
        pytest.param(ConsentConfig(honour_gpc=False), {"gpc": True}, None, id="gpc-off"),
        pytest.param(ConsentConfig(honour_dnt=True), {"dnt": True}, reasons.DNT, id="dnt-on"),
        pytest.param(
            ConsentConfig(require_consent_signal=True), {}, reasons.NO_CONSENT, id="signal-required"
        ),
        pytest.param(
            ConsentConfig(require_consent_signal=True),
            {"consent": {"analytics": True}},
            None,
            id="signal-given",
        ),
    ],
)
def test_gate_switches(config: ConsentConfig, event: dict[str, Any], expected: str | None) -> None:
    """GPC, DNT and the consent-signal requirement follow the policy switches."""
    assert ConsentGate(config).decide(event) == expected


@given(st.sampled_from(["user_id", "cookie_id"]), st.text(min_size=1, max_size=40))
def test_state_digest_is_subject_digest(subject_type: str, subject_id: str) -> None:
    """The state's digest is subject_digest, under its secret, of the id's canonical form."""
    secret = bytes(range(32))
    digest = ConsentState(secret=secret).digest(subject_type, subject_id)
    canonical = DEFAULT_FORMS.canonical(subject_type, subject_id)
    assert digest == subject_digest(secret, subject_type, canonical)
