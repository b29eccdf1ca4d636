"""Epoch keys and providers: material never shown, destroyed for good, one key per epoch."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anonymizers.exceptions import KeyMaterialError
from anonymizers.keys import (
    EpochKey,
    GeneratedKeyProvider,
    KeyProvider,
    StaticKeyProvider,
    epoch_of,
    hmac_sha256,
)
from tests.anonymizers.conftest import KEY_A


@pytest.mark.parametrize(
    ("seconds", "rotation", "expected"),
    [
        pytest.param(0, 86400, 0, id="zero"),
        pytest.param(86399.999, 86400, 0, id="end-of-day"),
        pytest.param(86400, 86400, 1, id="next-day"),
        pytest.param(1714521600, 86400, 19844, id="2024-05-01"),
        pytest.param(-1, 86400, -1, id="before-1970"),
        pytest.param(7200, 3600, 2, id="hourly"),
    ],
)
def test_epoch_of(seconds: float, rotation: int, expected: int) -> None:
    """Epoch = floor(seconds / rotation)."""
    assert epoch_of(seconds, rotation) == expected


def test_repr_never_shows_material() -> None:
    """repr and str name the epoch, never the key bytes in any encoding."""
    key = EpochKey(7, KEY_A)
    for text in (repr(key), str(key), f"{key}"):
        assert "7" in text
        assert KEY_A.hex() not in text and repr(KEY_A) not in text and str(list(KEY_A)) not in text


@pytest.mark.parametrize(
    "material",
    [b"", b"short", bytes(32), b"\xff" * 32, bytes(range(33))],
    ids=["empty", "short", "all-zero", "all-ff", "too-long"],
)
def test_weak_or_wrong_size_material_rejected(material: bytes) -> None:
    """Empty, default (one repeated byte) and wrong-size keys are refused."""
    with pytest.raises(KeyMaterialError):
        EpochKey(1, material)


def test_destroy_zeroes_and_disables() -> None:
    """After destroy(), the material is zero, the memo empty, and use raises."""
    key = EpochKey(1, KEY_A)
    key.pseudonym("user_id:alice")
    key.destroy()
    assert key.destroyed
    assert bytes(key._material) == bytes(32)
    assert key._memo == {}
    with pytest.raises(KeyMaterialError):
        key.mac(b"x")
    with pytest.raises(KeyMaterialError):
        key.pseudonym("user_id:bob")
    with pytest.raises(KeyMaterialError):
        key.memo_for("user_id:")["carol"]


def test_pseudonym_is_hmac_sha256_prefix() -> None:
    """The pseudonym is base64url of the first 16 bytes of HMAC-SHA256 (independent computation)."""
    import base64
    import hashlib
    import hmac

    expected = base64.urlsafe_b64encode(hmac.new(KEY_A, b"m", hashlib.sha256).digest()[:16])
    key = EpochKey(1, KEY_A)
    assert key.pseudonym("m") == expected.decode().rstrip("=")
    assert key.pseudonym("m") == key.pseudonym("m")  # memoised path agrees
    assert len(key.pseudonym("m")) == 22


def test_memo_is_bounded() -> None:
    """The pseudonym memo never holds more than its size."""
    key = EpochKey(1, KEY_A, memo_size=10)
    for index in range(100):
        key.pseudonym(f"id:{index}")
    assert len(key._memo) == 10


def test_generated_keys_are_random_per_epoch_and_stable_within() -> None:
    """Each epoch gets its own random key; asking twice gives the same key."""
    provider = GeneratedKeyProvider(rotation_seconds=86400)
    assert isinstance(provider, KeyProvider)
    first, second = provider.key_for_epoch(1), provider.key_for_epoch(2)
    assert first is not None and second is not None
    assert provider.key_for_epoch(1) is first
    assert first.mac(b"x") != second.mac(b"x")
    other = GeneratedKeyProvider(rotation_seconds=86400).key_for_epoch(1)
    assert other is not None and other.mac(b"x") != first.mac(b"x")


def test_forget_before_destroys_and_never_regenerates() -> None:
    """Forgotten epochs have no key any more, and their old key objects are destroyed."""
    provider = GeneratedKeyProvider(rotation_seconds=86400)
    old = provider.key_for_epoch(1)
    assert old is not None
    provider.forget_before(2)
    assert old.destroyed
    assert provider.key_for_epoch(1) is None
    assert provider.key_for_epoch(2) is not None


def test_static_provider_has_no_key_for_unknown_epoch() -> None:
    """An epoch without a configured key gets None (the chain then drops: no_key)."""
    provider = StaticKeyProvider({5: KEY_A}, rotation_seconds=60)
    assert provider.key_for_epoch(5) is not None
    assert provider.key_for_epoch(6) is None
    assert provider.rotation_seconds == 60


@given(
    material=st.binary(min_size=32, max_size=32).filter(lambda b: len(set(b)) > 1),
    data=st.binary(max_size=300),
)
def test_mac_is_hmac_sha256(material: bytes, data: bytes) -> None:
    """mac() is the standard library's HMAC-SHA256 for any key and message."""
    import hashlib
    import hmac

    assert EpochKey(1, material).mac(data) == hmac.new(material, data, hashlib.sha256).digest()


@given(
    material=st.binary(min_size=32, max_size=32).filter(lambda b: len(set(b)) > 1),
    message=st.text(max_size=200),
)
def test_any_pseudonym_is_the_hmac_of_its_utf8(material: bytes, message: str) -> None:
    """For any text (any length, any characters), the pseudonym is base64url of the first 16
    bytes of the standard library's HMAC-SHA256 of its UTF-8."""
    import base64
    import hashlib
    import hmac

    digest = hmac.new(material, message.encode("utf-8"), hashlib.sha256).digest()[:16]
    expected = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    key = EpochKey(1, material, memo_size=0)
    assert key.pseudonym(message) == expected
    assert key.memo_for("")[message] == expected


# RFC 4231, test cases 1, 2, 4, 6 and 7 (keys of 20, 4, 25 and 131 bytes): the HMAC the
# pseudonyms use is HMAC-SHA256 as the RFC defines it.
RFC_4231 = [
    (
        b"\x0b" * 20,
        b"Hi There",
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
    ),
    (
        b"Jefe",
        b"what do ya want for nothing?",
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
    ),
    (
        bytes(range(1, 26)),
        b"\xcd" * 50,
        "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
    ),
    (
        b"\xaa" * 131,
        b"Test Using Larger Than Block-Size Key - Hash Key First",
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
    ),
    (
        b"\xaa" * 131,
        b"This is a test using a larger than block-size key and a larger than block-size "
        b"data. The key needs to be hashed before being used by the HMAC algorithm.",
        "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
    ),
]


@pytest.mark.parametrize(
    ("key", "data", "expected"), RFC_4231, ids=["tc1", "tc2", "tc4", "tc6", "tc7"]
)
def test_hmac_matches_rfc_4231(key: bytes, data: bytes, expected: str) -> None:
    """The pseudonyms' HMAC gives RFC 4231's published values (bytes and bytearray keys)."""
    assert hmac_sha256(key, data).hex() == expected
    assert hmac_sha256(bytearray(key), data).hex() == expected


def test_epoch_key_mac_is_the_rfc_hmac() -> None:
    """An epoch key's mac is that HMAC under its material."""
    assert EpochKey(1, KEY_A).mac(b"Hi There") == hmac_sha256(KEY_A, b"Hi There")


def test_kek_wraps_without_the_material_in_clear_and_zeroes_on_destroy() -> None:
    """A wrapped key holds neither the key nor its base64; destroy zeroes the KEK's copy and
    refuses later use; the KEK's repr shows nothing of it."""
    import base64

    from anonymizers.keys import KeyEncryptionKey

    material = bytes(range(1, 33))
    kek = KeyEncryptionKey(bytes(range(32, 64)))
    nonce, wrapped = EpochKey(7, material).wrap_with(kek)
    assert len(nonce) == 12 and len(wrapped) == 32 + 16
    assert material not in wrapped and base64.b64encode(material) not in wrapped
    assert kek.unwrap(7, nonce, wrapped).mac(b"m") == EpochKey(7, material).mac(b"m")
    assert repr(kek) == "KeyEncryptionKey(live)"
    kek.destroy()
    assert kek._material == bytearray(32)
    with pytest.raises(KeyMaterialError, match="destroyed"):
        kek.unwrap(7, nonce, wrapped)
