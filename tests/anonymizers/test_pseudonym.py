"""Subject choice and keyed pseudonyms."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest

from anonymizers.identifiers import DEFAULT_FORMS
from anonymizers.ip import parse_ip
from anonymizers.keys import EpochKey
from anonymizers.policy import IdentifiersConfig
from anonymizers.pseudonym import Pseudonymizer, identifier_pseudonym, visitor_pseudonym
from tests.anonymizers.conftest import KEY_A, KEY_B, unkeyed_hashes

IP = parse_ip("81.2.69.160")
UA = "Mozilla/5.0 test"

SUBJECT_CASES = [
    pytest.param(
        {"user_id": "u1", "cookie_id": "c1", "device_id": "d1", "ad_id": "a1"},
        "user_id",
        id="user-first",
    ),
    pytest.param({"cookie_id": "c1", "device_id": "d1"}, "cookie_id", id="cookie-second"),
    pytest.param({"device_id": "d1", "ad_id": "a1"}, "device_id", id="device-third"),
    pytest.param({"ad_id": "a1"}, "ad_id", id="ad-last"),
    pytest.param({"user_id": None, "cookie_id": "c1"}, "cookie_id", id="None-skipped"),
    pytest.param({"user_id": "", "cookie_id": "c1"}, "cookie_id", id="empty-skipped"),
    pytest.param({"user_id": " \t", "cookie_id": "c1"}, "cookie_id", id="blank-skipped"),
    pytest.param({"user_id": 42, "cookie_id": "c1"}, "cookie_id", id="non-string-skipped"),
    pytest.param({"user_id": "x" * 513, "cookie_id": "c1"}, "cookie_id", id="too-long-skipped"),
    pytest.param(
        {"mac": "00:1a:2b:3c:4d:5e", "imei": "490154203237518"},
        "visitor",
        id="mac-imei-never-subject",
    ),
    pytest.param({}, "visitor", id="no-identifier"),
]


@pytest.mark.parametrize(("event", "source"), SUBJECT_CASES)
def test_subject_is_first_present_identifier(event: dict[str, Any], source: str) -> None:
    """The subject comes from the first present identifier, else the cookieless visitor id."""
    unit = Pseudonymizer(IdentifiersConfig())
    key = EpochKey(1, KEY_A)
    subject = unit.subject({**event, "user_agent": UA}, key, ip=IP, day="2024-05-01")
    assert subject is not None
    assert subject.source == source
    if source == "visitor":
        assert IP is not None
        expected = hmac.new(
            KEY_A, f"anonstream/visitor/v1:2024-05-01:{IP.text}\x00{UA}".encode(), hashlib.sha256
        ).digest()[:16]
    else:
        expected = hmac.new(
            KEY_A, f"anonstream/id/v1:{source}:{event[source]}".encode(), hashlib.sha256
        ).digest()[:16]
    import base64

    assert subject.pseudonym == base64.urlsafe_b64encode(expected).decode().rstrip("=")


def test_no_identifier_no_ip_means_no_subject() -> None:
    """Without identifier and usable IP there is no subject (event dropped: no_subject)."""
    unit = Pseudonymizer(IdentifiersConfig())
    assert unit.subject({"user_agent": UA}, EpochKey(1, KEY_A), ip=None, day="2024-05-01") is None


def test_cookieless_off_means_no_subject() -> None:
    """With cookieless_visitor false, an event without identifier has no subject."""
    unit = Pseudonymizer(IdentifiersConfig(cookieless_visitor=False))
    assert unit.subject({}, EpochKey(1, KEY_A), ip=IP, day="2024-05-01") is None


def test_subject_order_is_configurable() -> None:
    """A policy may leave ad_id out of the subject order."""
    unit = Pseudonymizer(IdentifiersConfig(subject_order=("user_id", "cookie_id")))
    subject = unit.subject({"ad_id": "a1"}, EpochKey(1, KEY_A), ip=IP, day="2024-05-01")
    assert subject is not None and subject.source == "visitor"


def test_visitor_id_is_daily() -> None:
    """The same IP and UA give different visitor ids on different days under one key."""
    key = EpochKey(1, KEY_A)
    assert IP is not None
    monday = visitor_pseudonym(key, day="2024-05-06", ip=IP, user_agent=UA)
    tuesday = visitor_pseudonym(key, day="2024-05-07", ip=IP, user_agent=UA)
    assert monday != tuesday


def test_same_id_differs_across_epochs_and_types() -> None:
    """Different epoch keys, or a different identifier type, give different pseudonyms."""
    a, b = EpochKey(1, KEY_A), EpochKey(2, KEY_B)
    alice = identifier_pseudonym(a, "user_id", "alice", forms=DEFAULT_FORMS)
    assert alice != identifier_pseudonym(b, "user_id", "alice", forms=DEFAULT_FORMS)
    assert alice != identifier_pseudonym(a, "cookie_id", "alice", forms=DEFAULT_FORMS)


@pytest.mark.parametrize(
    "guess",
    [b"", bytes(32), b"default", b"secret", b"anonstream", b"changeme" * 4],
    ids=["empty", "zeros", "default", "secret", "name", "config-like"],
)
def test_pseudonym_not_recomputable_with_guessable_key(guess: bytes) -> None:
    """HMAC with an empty, default or config-file key does not give the pseudonym."""
    key = EpochKey(1, KEY_A)
    real = identifier_pseudonym(key, "user_id", "alice", forms=DEFAULT_FORMS)
    message = b"anonstream/id/v1:user_id:alice"
    import base64

    forged = hmac.new(guess, message, hashlib.sha256).digest()[:16]
    assert base64.urlsafe_b64encode(forged).decode().rstrip("=") != real
    assert real not in unkeyed_hashes("alice")


def test_identifier_actions_keep_only_pseudonymized_allowlisted() -> None:
    """Only identifiers with action pseudonymize AND in the output allowlist are returned."""
    config = IdentifiersConfig(mac="pseudonymize")
    unit = Pseudonymizer(config, kept=frozenset({"user_id", "ad_id", "mac"}))
    out = unit.identifiers(
        {"user_id": "u", "ad_id": "a", "mac": "00:1a:2b:3c:4d:5e", "cookie_id": "c"},
        EpochKey(1, KEY_A),
    )
    assert set(out) == {"user_id", "mac"}
    assert all(len(v) == 22 for v in out.values())
