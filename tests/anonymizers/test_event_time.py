"""The event clock (`anonymizers.event_time.EventClock`), the event time's fast path: its
contract, checked against the standard library (datetime) and plain models written here, and
the chain's `EventTime` filling it with the minutes its full parser validated.

(The event time read through the chain, fast path against full parser, is in test_memo.py.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from anonymizers.event_time import EventClock, EventTime


def _minute(text: str, rotation: int = 86_400) -> tuple[str, int, str, int]:
    """put()'s arguments for the minute of a time text, by the standard library."""
    start = datetime.fromisoformat(text[:16] + ":00+00:00")
    base = int(start.timestamp())
    return text[:17], base, text[:10], base // rotation


@pytest.mark.parametrize(
    "raw",
    [
        "2024-05-01T10:59:07Z",
        "2024-05-01T10:59:07.1Z",
        "2024-05-01T10:59:07.123456789Z",
        "1000-01-01T00:00:59.5Z",
        "1969-12-31T23:59:30Z",
        "9999-12-31T23:59:00Z",
        "2024-02-29T00:00:00Z",
    ],
)
@pytest.mark.parametrize("rotation", [60, 90, 86_400])
def test_clock_reads_the_usual_form_in_a_known_minute(raw: str, rotation: int) -> None:
    clock = EventClock(16_384, rotation)
    assert clock.read(raw) is None
    minute = _minute(raw, rotation)
    clock.put(*minute)
    second = int(raw[17:19])
    expected_epoch = (minute[1] + second) // rotation
    epoch, text, day = clock.read(raw)
    assert (epoch, text, day) == (expected_epoch, raw[:19] + "Z", raw[:10])
    if len(raw) == 20:
        assert text is raw


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "2024-05-01T10:59:60Z",
        "2024-05-01T10:59:07",
        "2024-05-01T10:59:07z",
        "2024-05-01t10:59:07Z",
        "2024-05-01 10:59:07Z",
        "2024-05-01T10:59:07.Z",
        "2024-05-01T10:59:07.1234567890Z",
        "2024-05-01T10:59:07+00:00",
        "2024-05-01T10:59:7Z",
        "2024/05/01T10:59:07Z",
        "2024-05-01T10:59:0\u0667Z",
        "2024-05-01T10:59:07.1\u0667Z",
        "\u0662024-05-01T10:59:07Z",
        " 2024-05-01T10:59:07Z",
        "2024-05-01T10:59:07Z ",
        "2024-05-01T10:58:07Z",  # the minute before: not known
        "2024-05-02T10:59:07Z",  # the next day: not known
        b"2024-05-01T10:59:07Z",
        None,
        20240501,
    ],
)
def test_clock_leaves_anything_else_to_the_full_parser(raw: object) -> None:
    clock = EventClock(16_384, 86_400)
    clock.put(*_minute("2024-05-01T10:59:00Z"))
    assert clock.read(raw) is None


def test_clock_keeps_consecutive_minutes_and_reuses_slots() -> None:
    """Minutes up to its capacity apart never share a slot; one capacity apart they do (the
    later one wins, the earlier one is then unknown again); clear() forgets all."""
    clock = EventClock(1_000, 60)
    assert clock.capacity == 1_024
    first = datetime(2024, 5, 1, tzinfo=UTC)
    texts = [
        (first + timedelta(minutes=n)).strftime("%Y-%m-%dT%H:%M:") + "30Z" for n in range(1_025)
    ]
    for text in texts[:1_024]:
        clock.put(*_minute(text, 60))
    assert len(clock) == 1_024
    assert all(clock.read(text) is not None for text in texts[:1_024])
    clock.put(*_minute(texts[1_024], 60))
    assert clock.read(texts[0]) is None and clock.read(texts[1_024]) is not None
    assert len(clock) == 1_024
    clock.put(*_minute(texts[1_024], 60))  # the same minute again: still one entry
    assert len(clock) == 1_024
    clock.clear()
    assert len(clock) == 0 and all(clock.read(text) is None for text in texts)


@pytest.mark.parametrize(
    "arguments",
    [
        ("2024-05-01T10:59:", 1_714_561_140 + 60, "2024-05-01", 0),  # the next minute's base
        ("2024-05-01T10:59:", 1_714_561_141, "2024-05-01", 0),  # not a minute's first second
        ("2024-05-01T10:59", 1_714_561_140, "2024-05-01", 0),
        ("2024-05-01T10:60:", 1_714_561_200, "2024-05-01", 0),
        ("0999-05-01T10:59:", 1_714_561_140, "0999-05-01", 0),
        # Its own base, but three-digit years are not the clock's.
        ("0999-05-01T10:59:", int(datetime(999, 5, 1, 10, 59, tzinfo=UTC).timestamp()), "", 0),
        ("2024-05-01T10:59:00Z", 1_714_561_140, "2024-05-01", 0),
    ],
)
def test_clock_refuses_a_minute_its_base_does_not_name(arguments: tuple[Any, ...]) -> None:
    clock = EventClock(16, 60)
    with pytest.raises(ValueError):
        clock.put(*arguments)
    assert len(clock) == 0


def test_clock_refuses_bad_arguments() -> None:
    for capacity, rotation in ((0, 60), (2**21, 60), (16, 0)):
        with pytest.raises(ValueError):
            EventClock(capacity, rotation)
    clock = EventClock(16, 60)
    assert clock.capacity == 16 and EventClock(1, 60).capacity == 1
    for arguments in (
        ("2024-05-01T10:59:", 1_714_561_140, "2024-05-01", "19844"),
        ("2024-05-01T10:59:", 1_714_561_140.0, "2024-05-01", 19844),
        ("2024-05-01T10:59:", 1_714_561_140, b"2024-05-01", 19844),
        (b"2024-05-01T10:59:", 1_714_561_140, "2024-05-01", 19844),
    ):
        with pytest.raises(TypeError):
            clock.put(*arguments)
    assert len(clock) == 0


def test_event_time_puts_validated_minutes_in_the_clock() -> None:
    """The chain's event time puts the minutes its full parser validated (four-digit years
    only) in its clock, so the fast path is taken."""
    times = EventTime(86_400)
    for raw in ("2024-05-01T10:59:00Z", "0999-01-01T00:00:00Z", "2024-02-29T23:59:30.5Z"):
        times.read(raw)
    assert len(times._clock) == 2
    assert times._clock.read("2024-02-29T23:59:01Z") == times.parse("2024-02-29T23:59:01Z")
