"""Health judgements of a worker's input consumer (`stream.health.probes`): pure code."""

from __future__ import annotations

import pytest

from stream.health.probes import ProbeResult, ProgressWatch, consent_behind


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def watch(clock: Clock, *, commits: bool = True) -> ProgressWatch:
    w = ProgressWatch(
        topic="t", group_id="g", stall_timeout_s=60, commit_follows_processing=commits, clock=clock
    )
    return w


def test_stall_needs_lag_and_no_progress_for_the_timeout() -> None:
    """Lag without progress for longer than the timeout is a stall; progress, or no lag,
    is not; nothing is judged before the stage starts consuming or on stale figures."""
    clock = Clock()
    w = watch(clock, commits=False)
    w.probed(ProbeResult(end={0: 100, 1: 50}, committed={0: 10}, at=clock.now))
    assert w.stalled() is None, "not consuming yet"
    w.start(lambda: {0, 1})
    assert w.lag() == {0: 90, 1: 50}, "committed offset, else 0, before the first message"
    w.processed(0, 100, 0.01)
    w.processed(1, 40, 0.01)
    assert w.lag() == {0: 0, 1: 10}
    clock.now += 61
    assert w.stalled() is None, "probe figures older than 30 s are not used"
    w.probed(ProbeResult(end={0: 100, 1: 50}, committed={0: 100, 1: 40}, at=clock.now))
    assert w.stalled() == "lag without progress"
    w.processed(1, 50, 0.01)
    assert w.stalled() is None
    clock.now += 120
    w.probed(ProbeResult(end={0: 100, 1: 50}, committed={0: 100, 1: 50}, at=clock.now))
    assert w.stalled() is None, "idle without lag is fine"
    assert w.latency.observations == 3


def test_commit_age_counts_only_while_processed_offsets_are_uncommitted() -> None:
    """Anonymize: committed offsets that stop moving while processed ones are ahead is a
    stall after the timeout; the aggregate and release stages are not judged on commits."""
    clock = Clock()
    w = watch(clock)
    w.start(lambda: {0})
    w.processed(0, 10, 0.001)
    w.probed(ProbeResult(end={0: 10}, committed={0: 10}, at=clock.now))
    assert w.commit_age_s() == 0.0
    clock.now += 5
    w.processed(0, 20, 0.001)
    w.probed(ProbeResult(end={0: 20}, committed={0: 10}, at=clock.now))
    assert w.commit_age_s() == pytest.approx(5.0)
    for _ in range(12):
        clock.now += 5
        w.processed(0, 20, 0.001)  # progress keeps the lag rule quiet
        w.probed(ProbeResult(end={0: 20}, committed={0: 10}, at=clock.now))
    assert w.stalled() == "commits stopped"
    w.probed(ProbeResult(end={0: 20}, committed={0: 20}, at=clock.now))
    assert w.stalled() is None and w.commit_age_s() == 0.0
    relaxed = watch(clock, commits=False)
    relaxed.start(lambda: {0})
    relaxed.processed(0, 20, 0.001)
    relaxed.probed(ProbeResult(end={0: 20}, committed={0: 1}, at=clock.now - 1))
    clock.now += 29
    assert relaxed.stalled() is None


def test_recovery_is_not_a_stall_unless_it_hangs() -> None:
    """While recovering (no message can be processed), lag is not a stall; past ten stall
    timeouts the recovery itself counts as hung; after it, the stall clock starts afresh."""
    clock = Clock()
    w = watch(clock, commits=False)
    w.start(lambda: {0})
    with w.recovering():
        clock.now += 120
        w.probed(ProbeResult(end={0: 100}, committed={0: 0}, at=clock.now))
        assert w.stalled() is None
        clock.now += 500
        w.probed(ProbeResult(end={0: 100}, committed={0: 0}, at=clock.now))
        assert w.stalled() == "recovery hangs"
    assert w.stalled() is None and w.idle_s() == 0.0
    clock.now += 61
    w.probed(ProbeResult(end={0: 100}, committed={0: 0}, at=clock.now))
    assert w.stalled() == "lag without progress"


def test_consent_behind_compares_with_earlier_end_offsets() -> None:
    assert consent_behind({0: 5, 1: 3}, {0: 5, 1: 4})
    assert not consent_behind({0: 5, 1: 9}, {0: 5, 1: 4})
    assert not consent_behind({}, {})
