"""A worker's garbage collector settings (stream.gcsettings), on this interpreter's collector."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from stream.gcsettings import DEFAULT_YOUNG_THRESHOLD, settle_after_startup
from stream.settings import Settings


@pytest.fixture
def collector() -> Iterator[None]:
    """Whatever a test does to the collector is undone after it."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("collector")
def test_settle_freezes_startup_objects_and_raises_the_young_threshold() -> None:
    """Objects that exist at the call are frozen (the collector no longer walks them, yet
    reference counting still frees them); objects made later are collected as usual,
    cycles included; only the young threshold changes."""
    gc.unfreeze()
    _, middle, old = gc.get_threshold()
    startup = [{"made": "before"} for _ in range(1000)]
    settle_after_startup(12_345)
    assert gc.get_threshold() == (12_345, middle, old)
    assert gc.get_freeze_count() >= len(startup)

    later: list[object] = []
    later.append(later)  # a cycle made after start-up
    gc.collect()
    assert gc.is_tracked(later)
    del later
    assert gc.collect() >= 1  # the cycle was found and freed
    assert gc.get_freeze_count() >= len(startup)


@pytest.mark.usefixtures("collector")
def test_zero_leaves_the_collector_as_python_set_it() -> None:
    gc.unfreeze()
    before = gc.get_threshold()
    settle_after_startup(0)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_negative_threshold_is_refused() -> None:
    with pytest.raises(ValueError, match="young_threshold"):
        settle_after_startup(-1)


def test_workers_settle_with_the_documented_default() -> None:
    """The setting's default is the helper's (one number, in stream.gcsettings)."""
    assert Settings().gc_young_threshold == DEFAULT_YOUNG_THRESHOLD == 10_000
