"""Pseudonym keys: one random 256-bit key per epoch, and the providers that hand them out.

An epoch is `floor(unix_seconds / rotation_seconds)` of the event's own time (`occurred_at`),
so every aggregation window (the policy checks that each divides the rotation) sees a single
key per subject. `KeyProvider.key_for_epoch` returning `None` means "no key": the chain then
drops the event with reason `no_key`; it never falls back to an unkeyed or default value.

HMAC-SHA256 is OpenSSL's, through the standard library's one-shot `hmac.digest`: no state
derived from the key outlives a call. Python cannot promise that key bytes never linger in
memory; `EpochKey` keeps the material in one `bytearray`, zeroes it on `destroy()` and drops
the pseudonym memos derived from it, which is the best a CPython process can do (OpenSSL
cleanses its own HMAC context after each call).

At rest, epoch keys are wrapped (`KeyEncryptionKey`): AES-256-GCM from `cryptography`
(OpenSSL) under a key-encryption key (KEK) from a mounted secret, with a fresh 96-bit random
nonce per wrap and the epoch as associated data, so a wrapped key is unusable without the KEK,
cannot be forged without it (the GCM tag authenticates the proposal) and cannot be moved to
another epoch. What cannot be zeroed: the `bytes` that `secrets.token_bytes` and
`AESGCM.decrypt` return (immutable; freed, not overwritten), and the copies of the KEK and of
key material inside `cryptography`'s AESGCM object and OpenSSL's contexts, which Python cannot
reach; `KeyEncryptionKey.destroy` zeroes its own `bytearray` and drops the AESGCM object.
"""

from __future__ import annotations

import binascii
import hmac
import secrets
import threading
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from anonymizers import reasons
from anonymizers.exceptions import KeyMaterialError, KeyUnwrapError
from anonymizers.memo import Memo, bounded_put
from anonymizers.outcome import Draft

__all__ = [
    "DEFAULT_MEMO_SIZE",
    "KEK_BYTES",
    "KEY_BYTES",
    "PSEUDONYM_BYTES",
    "EpochKey",
    "GeneratedKeyProvider",
    "KeyEncryptionKey",
    "KeyProvider",
    "KeyUnit",
    "StaticKeyProvider",
    "epoch_of",
    "hmac_sha256",
]

KEY_BYTES: Final = 32
"""Size of an epoch key in bytes (256 bits)."""
PSEUDONYM_BYTES: Final = 16
"""Bytes of the HMAC-SHA256 output kept in a pseudonym (128 bits; 22 base64url characters)."""
KEK_BYTES: Final = 32
"""Size of the key-encryption key in bytes (AES-256)."""
WRAP_NONCE_BYTES: Final = 12
"""AES-GCM nonce size in bytes (96 bits, random per wrap)."""
_WRAP_CONTEXT: Final = "anonstream/epoch-key/v2"
DEFAULT_MEMO_SIZE: Final = 262_144
"""Pseudonyms remembered per epoch key and per prefix (entries): repeated subjects skip the HMAC."""


def epoch_of(unix_seconds: float, rotation_seconds: int) -> int:
    """The epoch number of a moment: `floor(unix_seconds / rotation_seconds)`."""
    if rotation_seconds <= 0:
        raise ValueError("rotation_seconds must be > 0")
    return int(unix_seconds // rotation_seconds)


_URLSAFE: Final = bytes.maketrans(b"+/", b"-_")
_PSEUDONYM_CHARS: Final = 22


def hmac_sha256(key: bytes | bytearray, data: bytes) -> bytes:
    """HMAC-SHA256 of `data` under `key` (32 bytes), computed by OpenSSL (`hmac.digest`)."""
    return hmac.digest(key, data, "sha256")


def _check_material(
    material: bytes | bytearray, *, what: str = "an epoch key", size: int = KEY_BYTES
) -> None:
    if len(material) != size:
        raise KeyMaterialError(f"{what} must be {size} bytes; got {len(material)}")
    # A key of one repeated byte (all zeros, the default of many configs) is not random.
    if material.count(material[0]) == len(material):
        raise KeyMaterialError(f"{what} must be random; got one byte value repeated")


class EpochKey:
    """One epoch's 256-bit HMAC-SHA256 key.

    `repr` and `str` never show the material. `mac` computes HMAC-SHA256; `pseudonym`
    returns the 22-character base64url text of its first 16 bytes, memoised (bounded by
    `memo_size` entries, 0 disables) so a subject seen again costs a dict look-up.
    `memo_for(prefix)` is the same per message prefix, keyed by the rest of the message (the
    raw identifier), which spares the chain building the message for a subject seen before.
    The memos map identifier strings to pseudonyms: they live in process memory only, are
    never persisted, and go with the key in `destroy()`.
    """

    __slots__ = (
        "_destroyed",
        "_lock",
        "_material",
        "_memo",
        "_memo_size",
        "_memos",
        "epoch",
    )

    def __init__(
        self, epoch: int, material: bytes | bytearray, *, memo_size: int = DEFAULT_MEMO_SIZE
    ) -> None:
        _check_material(material)
        self.epoch: int = epoch
        self._material: bytearray = bytearray(material)
        self._destroyed = False
        self._memo: dict[str, str] = {}
        self._memo_size = memo_size
        self._memos: dict[tuple[str, Callable[[str], str] | None], Memo[str, str]] = {}
        self._lock = threading.Lock()

    @classmethod
    def generate(cls, epoch: int, *, memo_size: int = DEFAULT_MEMO_SIZE) -> EpochKey:
        """A fresh key of 32 bytes from `secrets` for `epoch`."""
        return cls(epoch, secrets.token_bytes(KEY_BYTES), memo_size=memo_size)

    def __repr__(self) -> str:
        state = "destroyed" if self._destroyed else "live"
        return f"EpochKey(epoch={self.epoch}, {state})"

    # str() falls back to __repr__: never the material either.

    @property
    def destroyed(self) -> bool:
        """True once `destroy()` ran."""
        return self._destroyed

    def mac(self, data: bytes) -> bytes:
        """HMAC-SHA256 of `data` under this key (32 bytes)."""
        if self._destroyed:
            raise KeyMaterialError(f"the key of epoch {self.epoch} was destroyed")
        return hmac_sha256(self._material, data)

    def pseudonym(self, message: str) -> str:
        """base64url (no padding) of the first 16 bytes of HMAC-SHA256(key, message)."""
        cached = self._memo.get(message)
        if cached is not None:
            return cached
        text = self._pseudonym(message)
        if self._memo_size:
            bounded_put(self._memo, message, text, max_size=self._memo_size)
        return text

    def memo_for(
        self, prefix: str, canonical: Callable[[str], str] | None = None
    ) -> Memo[str, str]:
        """`memo[rest]` is `pseudonym(prefix + canonical(rest))` (`canonical` None: `rest`
        itself), memoised per prefix and canonicaliser (bounded), keyed by the raw `rest`, so
        a spelling seen before costs no canonicalisation. Callers that pass the same
        `canonical` object share a memo (`anonymizers.identifiers.canonicaliser` gives one
        object per forms and type).

        Raises `KeyMaterialError` once the key is destroyed; a memo obtained before then is
        empty and computes nothing any more (the HMAC state is gone).
        """
        memo = self._memos.get((prefix, canonical))
        if memo is None:
            if self._destroyed:
                raise KeyMaterialError(f"the key of epoch {self.epoch} was destroyed")
            pseudonym = self._pseudonym
            if canonical is None:
                compute: Callable[[str], str] = lambda rest: pseudonym(prefix + rest)  # noqa: E731
            else:
                normalise = canonical
                compute = lambda rest: pseudonym(prefix + normalise(rest))  # noqa: E731
            memo = Memo(compute, max_size=self._memo_size, values="pseudonym")
            self._memos[(prefix, canonical)] = memo
        return memo

    def _pseudonym(self, message: str) -> str:
        digest = self.mac(message.encode("utf-8"))[:PSEUDONYM_BYTES]
        # base64url without padding: 16 bytes are 22 characters.
        encoded = binascii.b2a_base64(digest, newline=False).translate(_URLSAFE)
        return encoded[:_PSEUDONYM_CHARS].decode("ascii")

    def wrap_with(self, kek: KeyEncryptionKey) -> tuple[bytes, bytes]:
        """(nonce, ciphertext) of this key's material under `kek`, bound to its epoch."""
        if self._destroyed:
            raise KeyMaterialError(f"the key of epoch {self.epoch} was destroyed")
        return kek.wrap(self.epoch, self._material)

    def destroy(self) -> None:
        """Zero the material and drop everything derived from it; later use raises."""
        with self._lock:
            for index in range(len(self._material)):
                self._material[index] = 0
            self._destroyed = True
            self._memo.clear()
            for memo in self._memos.values():
                memo.clear()
            self._memos.clear()


def _associated_data(epoch: int) -> bytes:
    return f"{_WRAP_CONTEXT}:{epoch}".encode()


class KeyEncryptionKey:
    """The key-encryption key (KEK): wraps and unwraps epoch keys with AES-256-GCM.

    `wrap(epoch, material)` gives a random 12-byte nonce and the ciphertext (material + 16-byte
    tag) with `anonstream/epoch-key/v2:<epoch>` as associated data; `unwrap` checks the tag and
    gives the `EpochKey`, or raises `KeyUnwrapError` (another KEK, a changed byte, another
    epoch). `repr` never shows the material; `destroy()` zeroes it (see the module doc for the
    copies Python cannot zero).
    """

    __slots__ = ("_aead", "_material")

    def __init__(self, material: bytes | bytearray) -> None:
        _check_material(material, what="a key-encryption key", size=KEK_BYTES)
        self._material: bytearray = bytearray(material)
        self._aead: AESGCM | None = AESGCM(self._material)

    @classmethod
    def generate(cls) -> KeyEncryptionKey:
        """A fresh random KEK (for tests and the local demo; production mounts a secret)."""
        return cls(secrets.token_bytes(KEK_BYTES))

    def __repr__(self) -> str:
        return f"KeyEncryptionKey({'destroyed' if self._aead is None else 'live'})"

    def _cipher(self) -> AESGCM:
        if self._aead is None:
            raise KeyMaterialError("the key-encryption key was destroyed")
        return self._aead

    def wrap(self, epoch: int, material: bytes | bytearray) -> tuple[bytes, bytes]:
        """(nonce, ciphertext) of `material` for `epoch`."""
        _check_material(material)
        nonce = secrets.token_bytes(WRAP_NONCE_BYTES)
        return nonce, self._cipher().encrypt(nonce, bytes(material), _associated_data(epoch))

    def unwrap(
        self, epoch: int, nonce: bytes, ciphertext: bytes, *, memo_size: int = DEFAULT_MEMO_SIZE
    ) -> EpochKey:
        """The epoch key wrapped in `ciphertext` for `epoch`; `KeyUnwrapError` unless it
        authenticates under this KEK and epoch."""
        if len(nonce) != WRAP_NONCE_BYTES:
            raise KeyUnwrapError(f"a wrapped key's nonce must be {WRAP_NONCE_BYTES} bytes")
        try:
            material = self._cipher().decrypt(nonce, ciphertext, _associated_data(epoch))
        except InvalidTag:
            raise KeyUnwrapError(
                f"the key proposed for epoch {epoch} does not authenticate under the "
                "key-encryption key"
            ) from None
        try:
            return EpochKey(epoch, material, memo_size=memo_size)
        finally:
            del material  # immutable bytes: dropped, not zeroed (module doc)

    def destroy(self) -> None:
        """Zero this object's copy of the KEK and drop the cipher; later use raises."""
        for index in range(len(self._material)):
            self._material[index] = 0
        self._aead = None


@runtime_checkable
class KeyProvider(Protocol):
    """Where the chain gets the key of an epoch.

    `rotation_seconds` is the epoch length; `key_for_epoch` returns `None` when no key
    exists (not yet shared, or destroyed after retention): the event is then dropped.
    """

    @property
    def rotation_seconds(self) -> int: ...

    def key_for_epoch(self, epoch: int) -> EpochKey | None: ...


class StaticKeyProvider:
    """Explicit keys, for tests and for a preview whose pseudonyms must be reproducible.

    `keys` maps epoch numbers to 32-byte keys; an epoch not in it has no key.
    """

    def __init__(self, keys: Mapping[int, bytes | bytearray], *, rotation_seconds: int) -> None:
        if rotation_seconds <= 0:
            raise ValueError("rotation_seconds must be > 0")
        self._rotation_seconds = rotation_seconds
        self._keys = {epoch: EpochKey(epoch, material) for epoch, material in keys.items()}

    @property
    def rotation_seconds(self) -> int:
        """Epoch length in seconds."""
        return self._rotation_seconds

    def key_for_epoch(self, epoch: int) -> EpochKey | None:
        """The key given for `epoch`, or None."""
        key = self._keys.get(epoch)
        return None if key is None or key.destroyed else key


class GeneratedKeyProvider:
    """A random key per epoch, made on first use and held in this process only.

    For preview and single-process runs: pseudonyms are consistent within the run and can
    never be recomputed after it. `forget_before(epoch)` destroys older keys (retention).
    """

    def __init__(self, *, rotation_seconds: int, memo_size: int = DEFAULT_MEMO_SIZE) -> None:
        if rotation_seconds <= 0:
            raise ValueError("rotation_seconds must be > 0")
        self._rotation_seconds = rotation_seconds
        self._memo_size = memo_size
        self._keys: dict[int, EpochKey] = {}
        self._forgotten_before: int | None = None
        self._lock = threading.Lock()

    @property
    def rotation_seconds(self) -> int:
        """Epoch length in seconds."""
        return self._rotation_seconds

    def key_for_epoch(self, epoch: int) -> EpochKey | None:
        """The key of `epoch`, generated on first request; None for a forgotten epoch."""
        key = self._keys.get(epoch)
        if key is not None:
            return key
        with self._lock:
            if self._forgotten_before is not None and epoch < self._forgotten_before:
                return None
            key = self._keys.get(epoch)
            if key is None:
                key = EpochKey.generate(epoch, memo_size=self._memo_size)
                self._keys[epoch] = key
            return key

    def forget_before(self, epoch: int) -> None:
        """Destroy every key of an epoch before `epoch`; those epochs get no key again."""
        with self._lock:
            self._forgotten_before = max(epoch, self._forgotten_before or epoch)
            for old in [e for e in self._keys if e < epoch]:
                self._keys.pop(old).destroy()


class KeyUnit:
    """The chain's key unit: the key of the draft's epoch from `provider`, or `no_key` (no
    keyed value can be computed, so nothing is emitted; never an unkeyed fallback).

    A key is asked of the provider once per epoch and batch (`begin_batch` starts a batch: a
    batch is one synchronous call, so no key is destroyed during it); the events of a batch
    that share the last event's epoch take its key without a look-up.
    """

    def __init__(self, provider: KeyProvider) -> None:
        self.provider = provider
        self._keys: dict[int, EpochKey | None] = {}
        self._last_epoch = -1
        self._last_key: EpochKey | None = None

    def begin_batch(self) -> None:
        """Forget the keys asked for so far (the provider may have rotated since)."""
        self._keys = {}
        self._last_key = None

    def __call__(self, event: dict[str, Any], out: Draft) -> str | None:
        epoch = out.epoch
        key = self._last_key
        if key is None or epoch != self._last_epoch:
            keys = self._keys
            if epoch in keys:
                key = keys[epoch]
            else:
                key = keys[epoch] = self.provider.key_for_epoch(epoch)
            self._last_epoch = epoch
            self._last_key = key
        if key is None:
            return reasons.NO_KEY
        out.key = key
        return None
