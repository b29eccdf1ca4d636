"""Worker start-up checks that need no broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from anonymizers.policy import default_policy
from stream.exceptions import SettingsError
from stream.settings import Settings
from stream.worker import build_worker_app, published_horizon_s, replay_horizon_ms

DAY_MS = 86_400_000


@pytest.mark.parametrize("stage", ["aggregate", "release"])
def test_retention_shorter_than_the_replay_horizon_stops_the_worker(
    stage: str, tmp_path: Path
) -> None:
    """With the default policy (1-day windows, 1 min lateness and idle timeout) a restart
    may replay 2 days and 4 minutes of events.pseudonymized / stats.partials: a retention of
    2 days stops the aggregate and release workers before they start, naming the setting."""
    short = Settings(intermediate_retention_ms=2 * DAY_MS, data_dir=tmp_path)
    with pytest.raises(SettingsError) as error:
        build_worker_app(short, stage)
    assert str(error.value) == (
        "ANONSTREAM_INTERMEDIATE_RETENTION_MS must be at least 173040000 (twice the "
        "policy's largest window plus its lateness and idle timeout: a restarted aggregate "
        "or release worker replays that far); got 172800000"
    )


def test_horizons_come_from_the_policys_windows_lateness_and_idle_timeout() -> None:
    """Default policy (windows up to 1 day, lateness and idle timeout 1 minute): a restart
    replays up to 2 x (1 day + 2 minutes); published keys are read back over 2 days,
    2 minutes and the extra hour."""
    policy = default_policy()
    assert replay_horizon_ms(policy) == 2 * (86_400 + 60 + 60) * 1000
    assert published_horizon_s(policy) == 2 * 86_400 + 60 + 60 + 3600


@pytest.mark.parametrize("stage", ["anonymize", "aggregate"])
def test_a_stage_holding_keys_does_not_start_without_a_kek(stage: str, tmp_path: Path) -> None:
    """No key-encryption key configured: the worker stops at build time, naming the setting."""
    settings = Settings(bootstrap_servers="127.0.0.1:1", data_dir=tmp_path)
    with pytest.raises(SettingsError, match="ANONSTREAM_KEY_ENCRYPTION_KEY_FILE"):
        build_worker_app(settings, stage)
