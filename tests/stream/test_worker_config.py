"""Worker start-up checks that need no broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.exceptions import SettingsError
from stream.settings import Settings
from stream.worker import build_worker_app

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
