"""One canonical form per identifier type, for consent, the gate, pseudonyms and erasure."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anonymizers import reasons
from anonymizers.consent import ConsentGate, ConsentState, child_records
from anonymizers.identifiers import DEFAULT_FORMS, POLICY_FREE, IdentifierForms
from anonymizers.keys import EpochKey
from anonymizers.policy import ConsentConfig, IdentifiersConfig
from anonymizers.pseudonym import Pseudonymizer, identifier_pseudonym
from tests.anonymizers.conftest import KEY_A

# "é" composed (NFC) and decomposed (NFD: e + U+0301), written out so no editor folds them.
E_NFC = "\u00e9"
E_NFD = "e\u0301"
GUID_UPPER = "6F9619FF-8B86-D011-B42D-00C04FC964FF"
GUID_LOWER = "6f9619ff-8b86-d011-b42d-00c04fc964ff"

CANONICAL_CASES = [
    pytest.param("user_id", "  Bob\t", DEFAULT_FORMS, "bob", id="user-trim-fold"),
    pytest.param("user_id", "  Bob\t", POLICY_FREE, "Bob", id="user-case-sensitive-trim"),
    pytest.param("user_id", f"Ren{E_NFD}", DEFAULT_FORMS, f"ren{E_NFC}", id="user-nfd"),
    pytest.param(
        "user_id", "Alice.Martin@Example.com", POLICY_FREE, "alice.martin@example.com", id="email"
    ),
    pytest.param("cookie_id", "AbC123", DEFAULT_FORMS, "AbC123", id="cookie-case-kept"),
    pytest.param("cookie_id", "\u00a0AbC123 ", DEFAULT_FORMS, "AbC123", id="cookie-nbsp"),
    pytest.param("device_id", GUID_UPPER, DEFAULT_FORMS, GUID_LOWER, id="device-guid"),
    pytest.param("ad_id", f" {GUID_UPPER}\n", DEFAULT_FORMS, GUID_LOWER, id="ad-guid-trim"),
    pytest.param("device_id", "Pixel-7A", DEFAULT_FORMS, "Pixel-7A", id="device-non-guid"),
    pytest.param("mac", "00:1A:2B:3C:4D:5E", DEFAULT_FORMS, "00:1a:2b:3c:4d:5e", id="mac"),
    pytest.param("user_id", "   ", DEFAULT_FORMS, "", id="blank"),
    pytest.param("user_id", "", DEFAULT_FORMS, "", id="empty"),
    pytest.param("user_id", "STRASSE", DEFAULT_FORMS, "strasse", id="ascii-fold"),
    pytest.param("user_id", "Stra\u00dfe", DEFAULT_FORMS, "strasse", id="casefold-sharp-s"),
    pytest.param("cookie_id", "a@b", DEFAULT_FORMS, "a@b", id="not-email-no-dot"),
]


@pytest.mark.parametrize(("id_type", "value", "forms", "expected"), CANONICAL_CASES)
def test_canonical_forms(id_type: str, value: str, forms: IdentifierForms, expected: str) -> None:
    """Each type's canonical form: trimmed, NFC, folded where the type is case-insensitive."""
    assert forms.canonical(id_type, value) == expected


IDS = st.text(st.characters(codec="utf-8"), max_size=30)
TYPES = st.sampled_from(["user_id", "cookie_id", "device_id", "ad_id", "mac", "imei"])
FORMS = st.sampled_from([DEFAULT_FORMS, POLICY_FREE])


@given(TYPES, IDS, FORMS)
def test_canonical_is_idempotent(id_type: str, value: str, forms: IdentifierForms) -> None:
    """Canonicalising a canonical form changes nothing."""
    once = forms.canonical(id_type, value)
    assert forms.canonical(id_type, once) == once


@given(TYPES, IDS, FORMS)
def test_policy_free_form_changes_no_policy_form(
    id_type: str, value: str, forms: IdentifierForms
) -> None:
    """What `anonstream consent` writes (policy-free form) canonicalises like the raw id."""
    assert forms.canonical(id_type, POLICY_FREE.canonical(id_type, value)) == forms.canonical(
        id_type, value
    )


# (type, spelling on the record, other spellings of the same identifier on events)
EQUIVALENT_SPELLINGS = [
    pytest.param(
        "user_id",
        "Alice.Martin@Example.com",
        ["alice.martin@example.com", " alice.martin@example.com ", "ALICE.MARTIN@EXAMPLE.COM"],
        id="email-case-space",
    ),
    pytest.param("user_id", f"Ren{E_NFD}e", [f"ren{E_NFC}e", f"REN{E_NFC}E "], id="user-nfd"),
    pytest.param("cookie_id", f"c-{E_NFC}", [f"c-{E_NFD}", f"\tc-{E_NFD}"], id="cookie-nfc"),
    pytest.param("device_id", GUID_UPPER, [GUID_LOWER, f" {GUID_LOWER}"], id="device-guid"),
    pytest.param("ad_id", f"{GUID_LOWER}\n", [GUID_UPPER], id="ad-guid"),
]
RECORD_ACTIONS = [
    pytest.param("opt_out", reasons.OPTED_OUT, id="opt_out"),
    pytest.param("erase", reasons.ERASED, id="erase"),
    pytest.param("child", reasons.CHILD, id="child"),
]


@pytest.mark.parametrize(("action", "reason"), RECORD_ACTIONS)
@pytest.mark.parametrize(("id_type", "recorded", "spellings"), EQUIVALENT_SPELLINGS)
def test_record_stops_every_equivalent_spelling(
    id_type: str, recorded: str, spellings: list[str], action: str, reason: str
) -> None:
    """A record under one spelling drops the events of every equivalent spelling."""
    state = ConsentState()
    state.apply({"subject_type": id_type, "subject_id": recorded, "action": action})
    gate = ConsentGate(ConsentConfig(), state)
    for spelling in [recorded, *spellings]:
        assert gate.decide({id_type: spelling}) == reason, repr(spelling)


def test_tombstone_under_another_spelling_forgets_the_subject() -> None:
    """A tombstone for an equivalent spelling removes the subject's state."""
    state = ConsentState()
    state.apply({"subject_type": "device_id", "subject_id": GUID_UPPER, "action": "erase"})
    state.forget("device_id", f" {GUID_LOWER}")
    assert len(state) == 0


def test_case_sensitive_user_ids_keep_bob_and_bob_apart() -> None:
    """With user ids case-sensitive, an opt-out of `Bob` does not stop `bob` (and vice versa)."""
    forms = IdentifiersConfig(user_id_case_sensitive=True).forms()
    state = ConsentState(forms=forms)
    state.apply({"subject_type": "user_id", "subject_id": "Bob", "action": "opt_out"})
    gate = ConsentGate(ConsentConfig(), state)
    assert gate.decide({"user_id": " Bob "}) == reasons.OPTED_OUT
    assert gate.decide({"user_id": "bob"}) is None
    default_state = ConsentState()
    default_state.apply({"subject_type": "user_id", "subject_id": "Bob", "action": "opt_out"})
    assert ConsentGate(ConsentConfig(), default_state).decide({"user_id": "bob"}) == (
        reasons.OPTED_OUT
    ), "by default user ids are case-insensitive"


def test_case_sensitive_user_ids_still_fold_emails() -> None:
    """With user ids case-sensitive, an e-mail-like user id is still case-insensitive."""
    state = ConsentState(forms=POLICY_FREE)
    state.apply({"subject_type": "user_id", "subject_id": "Bob@Example.org", "action": "erase"})
    assert ConsentGate(ConsentConfig(), state).decide({"user_id": "bob@example.org"}) == (
        reasons.ERASED
    )


def test_blank_record_id_is_invalid() -> None:
    """A record whose id is white space only names nobody: it is refused."""
    from anonymizers.exceptions import ConsentRecordError

    with pytest.raises(ConsentRecordError, match="white space"):
        ConsentState().apply({"subject_type": "user_id", "subject_id": " \t", "action": "erase"})


def _subject(config: IdentifiersConfig, event: dict[str, Any], key: EpochKey) -> str:
    found = Pseudonymizer(config).subject(event, key, ip=None, day="2026-12-02")
    assert found is not None
    return found.pseudonym


@pytest.mark.parametrize(("id_type", "recorded", "spellings"), EQUIVALENT_SPELLINGS)
def test_equivalent_spellings_share_one_pseudonym(
    id_type: str, recorded: str, spellings: list[str]
) -> None:
    """Subject pseudonyms, kept identifiers and erasure pseudonyms agree across spellings."""
    config = IdentifiersConfig(ad_id="pseudonymize")
    key = EpochKey(1, KEY_A)
    # Erasure (aggregate stage) computes the record's pseudonym with identifier_pseudonym.
    expected = identifier_pseudonym(key, id_type, recorded, forms=config.forms())
    unit = Pseudonymizer(config, kept=frozenset({id_type}))
    for spelling in [recorded, *spellings]:
        assert _subject(config, {id_type: spelling}, key) == expected, repr(spelling)
        assert unit.identifiers({id_type: spelling}, key) == {id_type: expected}


def test_pseudonym_is_hmac_of_the_canonical_form() -> None:
    """The pseudonym of a spelling is the keyed HMAC of the hand-written canonical form."""
    key = EpochKey(1, KEY_A)
    by_hand = key.pseudonym(f"anonstream/id/v1:ad_id:{GUID_LOWER}")
    assert identifier_pseudonym(key, "ad_id", f" {GUID_UPPER} ", forms=DEFAULT_FORMS) == by_hand


def test_case_sensitive_user_ids_have_distinct_pseudonyms() -> None:
    """With user ids case-sensitive, `Bob` and `bob` are two subjects; by default one."""
    key = EpochKey(1, KEY_A)
    sensitive = IdentifiersConfig(user_id_case_sensitive=True)
    assert _subject(sensitive, {"user_id": "Bob"}, key) != _subject(
        sensitive, {"user_id": "bob"}, key
    )
    default = IdentifiersConfig()
    assert _subject(default, {"user_id": "Bob"}, key) == _subject(default, {"user_id": "bob"}, key)


def test_child_records_carry_the_policy_free_form() -> None:
    """Child records an event stands for name its ids in the policy-free canonical form."""
    event = {"user_id": " Bob ", "device_id": GUID_UPPER, "cookie_id": "  "}
    records = child_records(event, "2026-12-02T12:00:00Z")
    assert {(r["subject_type"], r["subject_id"]) for r in records} == {
        ("user_id", "Bob"),
        ("device_id", GUID_LOWER),
    }
