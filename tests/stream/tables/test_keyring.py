"""The shared key ring: pure log rules, and the real thing on the session's Kafka broker."""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from anonymizers.keys import EpochKey, KeyEncryptionKey
from stream.exceptions import SettingsError
from stream.health.metrics import key_families
from stream.logs import clamp_library_loggers
from stream.settings import Settings
from stream.tables.keyring import KafkaKeyRing, KeyLog, KeySchedule, encode_proposal
from stream.topics import create_topics, topic_specs
from tests.support.kafka import produce, read_all, unwrap_key_record

DAY = 86_400
SCHEDULE = KeySchedule.of(rotation_s=DAY, retention_s=2 * DAY)
T0 = 20_000 * DAY + 3600.0  # one hour into epoch 20000


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


KEK = KeyEncryptionKey(secrets.token_bytes(32))
"""The KEK of the pure tests' logs (the broker tests read theirs from the settings' file)."""


def proposal(
    epoch: int, material: bytes | None = None, *, kek: KeyEncryptionKey = KEK
) -> tuple[bytes, bytes]:
    return encode_proposal(EpochKey(epoch, material or secrets.token_bytes(32)), kek)


def key_log(clock: FakeClock) -> KeyLog:
    return KeyLog(SCHEDULE, kek=KEK, clock=clock)


# -- pure rules --------------------------------------------------------------------------
def test_first_proposal_in_log_order_wins() -> None:
    """Two proposals for one epoch: every reader keeps the one with the lower offset."""
    first, second = secrets.token_bytes(32), secrets.token_bytes(32)
    log = key_log(FakeClock(T0))
    log.apply(0, proposal(20_000, first)[1])
    log.apply(1, proposal(20_000, second)[1])
    expected = key_log(FakeClock(T0))
    expected.apply(0, proposal(20_000, first)[1])
    key = log.key_for_epoch(20_000)
    assert key is not None
    assert key.pseudonym("cookie_id:c1") == expected.key_for_epoch(20_000).pseudonym("cookie_id:c1")  # type: ignore[union-attr]
    loser = key_log(FakeClock(T0))
    loser.apply(0, proposal(20_000, second)[1])
    assert key.pseudonym("cookie_id:c1") != loser.key_for_epoch(20_000).pseudonym("cookie_id:c1")  # type: ignore[union-attr]


KEY = secrets.token_bytes(32)


def wrapped_fields(
    epoch: int,
    material: bytes,
    *,
    kek: KeyEncryptionKey = KEK,
    check: bool = True,
    flip: bool = False,
) -> dict[str, Any]:
    """A v2 record's fields, wrapped with AESGCM directly (not through the code under test);
    `check=False` wraps material EpochKey would refuse, `flip` changes one ciphertext byte."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if check:
        EpochKey(epoch, material)
    nonce = secrets.token_bytes(12)
    wrapped = bytearray(
        AESGCM(bytes(kek._material)).encrypt(
            nonce, material, f"anonstream/epoch-key/v2:{epoch}".encode()
        )
    )
    if flip:
        wrapped[0] ^= 1
    return {
        "schema": "epoch-key.v2",
        "epoch": epoch,
        "nonce_b64": base64.b64encode(nonce).decode(),
        "wrapped_b64": base64.b64encode(bytes(wrapped)).decode(),
    }


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param(b"not json", "malformed", id="not-json"),
        pytest.param(
            orjson.dumps({"schema": "epoch-key.v2", "epoch": 1}), "malformed", id="no-key"
        ),
        pytest.param(
            orjson.dumps(
                {"schema": "epoch-key.v1", "epoch": 1, "key_b64": base64.b64encode(KEY).decode()}
            ),
            "malformed",
            id="plaintext-v1",
        ),
        pytest.param(
            orjson.dumps({**wrapped_fields(1, KEY), "epoch": "1"}), "malformed", id="epoch-text"
        ),
        pytest.param(
            orjson.dumps(wrapped_fields(1, bytes(32), check=False)), "malformed", id="all-zero"
        ),
        pytest.param(
            orjson.dumps(wrapped_fields(1, b"short", check=False)), "malformed", id="short-key"
        ),
        pytest.param(
            orjson.dumps(wrapped_fields(1, KEY, kek=KeyEncryptionKey(secrets.token_bytes(32)))),
            "unauthenticated",
            id="other-kek",
        ),
        pytest.param(
            orjson.dumps({**wrapped_fields(0, KEY), "epoch": 1}),
            "unauthenticated",
            id="moved-epoch",
        ),
        pytest.param(
            orjson.dumps(wrapped_fields(1, KEY, flip=True)), "unauthenticated", id="changed-byte"
        ),
    ],
)
def test_invalid_records_give_no_key(value: bytes, reason: str) -> None:
    """A record that is not an authentic wrapped random key is refused by reason, never used."""
    log = key_log(FakeClock(1 * DAY + 5))
    log.apply(0, value)
    assert log.key_for_epoch(1) is None
    assert log.refused[reason] == 1
    assert log.invalid_records == 1


def test_expired_key_is_destroyed_and_never_loaded() -> None:
    """Past retention a held key is zeroed and dropped; a reader arriving later never loads it."""
    clock = FakeClock(T0)
    log = key_log(clock)
    log.apply(0, proposal(20_000)[1])
    key = log.key_for_epoch(20_000)
    assert key is not None and not key.destroyed
    clock.now = SCHEDULE.start_of(20_000) + SCHEDULE.retention_s
    assert log.key_for_epoch(20_000) is None
    assert key.destroyed
    with pytest.raises(Exception, match="destroyed"):
        key.mac(b"x")
    late_reader = key_log(clock)
    late_reader.apply(0, proposal(20_000)[1])
    assert late_reader.epochs() == []


def test_delete_before_covers_exactly_the_expired_prefix() -> None:
    """Records of expired epochs form the prefix handed to DeleteRecords; live ones stay."""
    clock = FakeClock(T0)
    log = key_log(clock)
    for offset, epoch in enumerate([20_000, 20_000, 20_001, 20_002]):
        # Each proposal when workers make it: in its epoch, or `lead` before it starts.
        clock.now = max(clock.now, SCHEDULE.start_of(epoch) - SCHEDULE.lead_s)
        log.apply(offset, proposal(epoch)[1])
    assert log.delete_before() is None
    clock.now = SCHEDULE.start_of(20_001) + SCHEDULE.retention_s  # 20000 and 20001 expired
    assert log.delete_before() == 3
    clock.now = SCHEDULE.start_of(20_003) + SCHEDULE.retention_s  # everything expired
    assert log.delete_before() == 4


def test_wanted_epochs_include_the_next_one_within_lead() -> None:
    """The next epoch's key is created `lead` before the epoch starts, not earlier."""
    start = SCHEDULE.start_of(20_001)
    assert SCHEDULE.wanted(start - SCHEDULE.lead_s - 1) == [20_000]
    assert SCHEDULE.wanted(start - SCHEDULE.lead_s) == [20_000, 20_001]


# -- on the real broker ------------------------------------------------------------------
def run(coro_factory: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(coro_factory())  # type: ignore[arg-type]


@pytest.fixture
def key_topic(settings: Settings) -> Settings:
    create_topics(settings, [s for s in topic_specs(settings) if s.name == settings.topic_keys])
    return settings


@pytest.mark.kafka
def test_two_workers_share_one_key_per_epoch(key_topic: Settings) -> None:
    """Rings started at once (a proposal race) agree on every epoch's key; epochs differ."""
    clock = FakeClock(T0)
    # The next epoch is wanted too: start within `lead` of it.
    clock.now = SCHEDULE.start_of(20_001) - SCHEDULE.lead_s + 1

    async def scenario() -> tuple[list[str], list[str]]:
        rings = [KafkaKeyRing(key_topic, SCHEDULE, clock=clock) for _ in range(3)]
        await asyncio.gather(*(ring.start() for ring in rings))
        try:
            same_epoch = [r.key_for_epoch(20_000).pseudonym("cookie_id:c-42") for r in rings]  # type: ignore[union-attr]
            next_epoch = [r.key_for_epoch(20_001).pseudonym("cookie_id:c-42") for r in rings]  # type: ignore[union-attr]
        finally:
            await asyncio.gather(*(ring.stop() for ring in rings))
        return same_epoch, next_epoch

    same_epoch, next_epoch = run(scenario)
    assert len(set(same_epoch)) == 1
    assert len(set(next_epoch)) == 1
    assert same_epoch[0] != next_epoch[0]


@pytest.mark.kafka
def test_key_is_gone_everywhere_after_retention(
    key_topic: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """After retention: not in the ring's memory, not readable from the topic, never logged."""
    clamp_library_loggers()  # as every anonstream process does at start
    caplog.set_level(logging.DEBUG)
    clock = FakeClock(T0)

    async def scenario() -> tuple[bytes, Any, KafkaKeyRing]:
        ring = KafkaKeyRing(key_topic, SCHEDULE, clock=clock)
        await ring.start()
        key = ring.key_for_epoch(20_000)
        assert key is not None
        pseudonym = key.pseudonym("user_id:u-1")
        records = await asyncio.to_thread(read_all, key_topic, key_topic.topic_keys, idle_s=1.0)
        material = [
            orjson.loads(r.value)["wrapped_b64"] for r in records if r.key.startswith(b"20000:")
        ]
        assert material, "the key must have been published"
        # Two days later: 20000 is past retention, 20002 is current.
        clock.now = T0 + 2 * DAY
        await ring.upkeep()
        assert ring.key_for_epoch(20_000) is None
        assert key.destroyed
        assert 20_000 not in ring.log.epochs()
        assert ring.key_for_epoch(20_002) is not None
        still_live = ring.key_for_epoch(20_002)
        await ring.stop()
        return material[0].encode(), (key, pseudonym, still_live), ring

    material_b64, (old_key, pseudonym, _), _ = run(scenario)
    remaining = read_all(key_topic, key_topic.topic_keys, idle_s=1.0)
    assert remaining, "the live epoch's key must still be there"
    assert all(not r.key.startswith(b"20000:") for r in remaining)
    assert all(material_b64 not in (r.value or b"") for r in remaining)
    # A worker starting now never sees it either.
    fresh: KafkaKeyRing = KafkaKeyRing(key_topic, SCHEDULE, clock=clock)

    async def late_start() -> list[int]:
        await fresh.start()
        try:
            return fresh.log.epochs()
        finally:
            await fresh.stop()

    assert 20_000 not in run(late_start)
    logged = caplog.text
    assert material_b64.decode() not in logged
    assert pseudonym not in logged
    assert repr(old_key) == "EpochKey(epoch=20000, destroyed)"


# -- key custody (issue 18, class 7) -------------------------------------------------------
def test_only_current_and_next_epoch_proposals_are_accepted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Authentic proposals past the next epoch, or for the next one too early, are refused
    and reported by reason and offset, never with their content."""
    caplog.set_level(logging.DEBUG)
    clock = FakeClock(T0)
    log = key_log(clock)
    far_future = proposal(20_005, KEY)[1]
    log.apply(0, far_future)
    log.apply(1, proposal(20_001)[1])  # next epoch, a day early (lead is 1 h)
    assert log.epochs() == []
    assert log.refused["out_of_window"] == 2
    # Twice the lead before the next epoch starts, its proposal is taken.
    clock.now = SCHEDULE.start_of(20_001) - 2 * SCHEDULE.lead_s
    log.apply(2, proposal(20_001)[1])
    assert log.epochs() == [20_001]
    assert "offset 0 refused (epoch 20005): out_of_window" in caplog.text
    wrapped = orjson.loads(far_future)["wrapped_b64"]
    assert wrapped not in caplog.text
    assert base64.b64encode(KEY).decode() not in caplog.text


def test_unauthenticated_proposal_before_the_real_one_loses() -> None:
    """A proposal not wrapped under the KEK, first in the log, is refused; the next wins."""
    log = key_log(FakeClock(T0))
    planted = KeyEncryptionKey(secrets.token_bytes(32))
    log.apply(0, proposal(20_000, KEY, kek=planted)[1])
    real = secrets.token_bytes(32)
    log.apply(1, proposal(20_000, real)[1])
    key = log.key_for_epoch(20_000)
    assert key is not None
    assert key.mac(b"m") == hmac.digest(real, b"m", "sha256")
    assert log.refused["unauthenticated"] == 1


def test_planted_future_record_does_not_block_deletion() -> None:
    """A far-future record at the log start never holds back deleting expired keys."""
    clock = FakeClock(T0)
    log = key_log(clock)
    log.apply(0, proposal(20_400)[1])
    log.apply(1, proposal(20_000)[1])
    clock.now = SCHEDULE.start_of(20_002) - SCHEDULE.lead_s
    log.apply(2, proposal(20_002)[1])
    clock.now = SCHEDULE.start_of(20_002) + 60  # 20000 past retention
    assert log.delete_before() == 2


def test_destroy_all_zeroes_every_key() -> None:
    """destroy_all zeroes the keys held; the log serves none afterwards."""
    log = key_log(FakeClock(T0))
    log.apply(0, proposal(20_000)[1])
    key = log.key_for_epoch(20_000)
    assert key is not None
    log.destroy_all()
    assert key.destroyed and key._material == bytearray(32)
    assert log.key_for_epoch(20_000) is None


def test_ring_refuses_to_start_without_a_kek(settings: Settings, tmp_path: Path) -> None:
    """No KEK configured, or a file that is not 32 base64 bytes: SettingsError, no content."""
    with pytest.raises(SettingsError, match="ANONSTREAM_KEY_ENCRYPTION_KEY_FILE"):
        KafkaKeyRing(settings.model_copy(update={"key_encryption_key_file": None}), SCHEDULE)
    bad = tmp_path / "bad-kek"
    bad.write_text("c2hvcnQtc2VjcmV0LXZhbHVl\n")  # base64 of 18 bytes
    with pytest.raises(SettingsError, match="32 random bytes") as refused:
        KafkaKeyRing(settings.model_copy(update={"key_encryption_key_file": bad}), SCHEDULE)
    assert "c2hvcnQtc2VjcmV0LXZhbHVl" not in str(refused.value)


@pytest.mark.kafka
def test_keys_on_the_topic_are_unusable_without_the_kek(key_topic: Settings) -> None:
    """The topic holds no key: only AES-GCM under the settings' KEK, bound to the epoch,
    gives the material the ring pseudonymises with; another KEK or epoch gives nothing."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    clock = FakeClock(T0)

    async def scenario() -> str:
        ring = KafkaKeyRing(key_topic, SCHEDULE, clock=clock)
        await ring.start()
        try:
            key = ring.key_for_epoch(20_000)
            assert key is not None
            return key.pseudonym("anonstream/id/v1:user_id:u-1")
        finally:
            await ring.stop()

    pseudonym = run(scenario)
    records = [r for r in read_all(key_topic, key_topic.topic_keys, idle_s=1.0) if r.value]
    assert records
    fields = orjson.loads(records[0].value)
    assert fields["epoch"] == 20_000 and "key_b64" not in fields
    nonce = base64.b64decode(fields["nonce_b64"])
    wrapped = base64.b64decode(fields["wrapped_b64"])
    with pytest.raises(InvalidTag):
        AESGCM(secrets.token_bytes(32)).decrypt(nonce, wrapped, b"anonstream/epoch-key/v2:20000")
    moved = orjson.dumps({**fields, "epoch": 20_001})
    with pytest.raises(InvalidTag):
        unwrap_key_record(key_topic, moved)
    material = unwrap_key_record(key_topic, records[0].value)
    assert material not in records[0].value and base64.b64encode(material) not in records[0].value
    # The unwrapped material is the key the ring used: the pseudonym, recomputed by hand.
    digest = hmac.digest(material, b"anonstream/id/v1:user_id:u-1", "sha256")[:16]
    assert base64.urlsafe_b64encode(digest).decode().rstrip("=") == pseudonym


@pytest.mark.kafka
def test_planted_proposals_on_the_topic_are_refused_and_reported(
    key_topic: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A writer without the KEK, or planting a far-future epoch, gets no key into any ring;
    the refusals show in the metric and the log, without key material."""
    clamp_library_loggers()
    caplog.set_level(logging.DEBUG)
    clock = FakeClock(T0)
    attacker = KeyEncryptionKey(secrets.token_bytes(32))
    planted_material = secrets.token_bytes(32)
    plaintext_v1 = orjson.dumps(
        {"schema": "epoch-key.v1", "epoch": 20_000, "key_b64": base64.b64encode(KEY).decode()}
    )
    produce(
        key_topic,
        key_topic.topic_keys,
        [
            proposal(20_000, planted_material, kek=attacker)[1],  # unauthenticated
            plaintext_v1,  # the old unwrapped format: malformed
            orjson.dumps(wrapped_fields(20_300, KEY, kek=file_kek(key_topic))),  # far future
        ],
        keys=[b"20000:a", b"20000:b", b"20300:c"],
        partition=0,
    )

    async def scenario() -> tuple[bytes, dict[str, float]]:
        ring = KafkaKeyRing(key_topic, SCHEDULE, clock=clock)
        await ring.start()
        try:
            key = ring.key_for_epoch(20_000)
            assert key is not None and ring.log.epochs() == [20_000]
            families = key_families(
                epochs=ring.log.epochs(), current=ring.ready(), refused=ring.log.refused
            )
            refused = {
                s.labels["reason"]: s.value
                for family in families
                for s in family.samples
                if s.name == "anonstream_key_proposals_refused_total"
            }
            return key.mac(b"m"), refused
        finally:
            await ring.stop()

    mac, refused = run(scenario)
    assert refused == {"malformed": 1.0, "out_of_window": 1.0, "unauthenticated": 1.0}
    assert mac != hmac.digest(planted_material, b"m", "sha256")
    assert mac != hmac.digest(KEY, b"m", "sha256")
    for secret in (planted_material, KEY):
        assert base64.b64encode(secret).decode() not in caplog.text
    assert "refused (epoch 20300): out_of_window" in caplog.text


def file_kek(settings: Settings) -> KeyEncryptionKey:
    """The KEK of the settings' file, read by hand (base64 of 32 bytes)."""
    path = settings.key_encryption_key_file
    assert path is not None
    return KeyEncryptionKey(base64.b64decode(path.read_bytes().strip()))
