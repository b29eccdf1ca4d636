"""Event time: the RFC 3339 `occurred_at` of a raw event read into its key epoch, its UTC
text to the second and its UTC day; the chain's first unit after the consent gate.

Times must carry a zone (a naive time is unusable: fail closed). The collectors' usual form
"YYYY-MM-DDTHH:MM:SS[.fff]Z" takes a fast path per minute (see `EventTime`); anything else
takes the full parser. An unusable time or event type drops the event (`invalid_event`),
and so does a time whose UTC instant RFC 3339 cannot write (before 0001-01-01T00:00:00Z or
after 9999-12-31T23:59:59Z: "0001-01-01T00:00:00+01:00" is in year 0 in UTC). The stream's
validation refuses those first (`utc_seconds`, `anonymizers.intake`); the chain never raises
on them.
"""

from __future__ import annotations

import operator
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from anonymizers import reasons
from anonymizers.fields import EVENT_TYPES
from anonymizers.memo import bounded_put
from anonymizers.outcome import Draft

_TIME_CACHE_SIZE: Final = 65_536
_CLOCK_MINUTES: Final = 16_384
"""Minutes the event clock holds: any 11 days' worth (consecutive minutes never share a
slot)."""
_RFC3339: Final = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})$"
)
_UNIX_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_SECOND: Final = timedelta(seconds=1)
FIRST_SECOND: Final = (datetime(1, 1, 1, tzinfo=UTC) - _UNIX_EPOCH) // _ONE_SECOND
"""Unix seconds of 0001-01-01T00:00:00Z, the earliest event time the chain represents."""
LAST_SECOND: Final = (datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC) - _UNIX_EPOCH) // _ONE_SECOND
"""Unix seconds of 9999-12-31T23:59:59Z, the latest event time the chain represents."""
TIME_RANGE: Final = "0001-01-01T00:00:00Z..9999-12-31T23:59:59Z"
"""The range of event times in UTC, as validation errors name it."""
_FIRST_CLOCK_SECOND: Final = (datetime(1000, 1, 1, tzinfo=UTC) - _UNIX_EPOCH) // _ONE_SECOND
"""The event clock holds minutes of four-digit years without leading zero only."""
NO_TIME: Final = (0, "", "")
"""What `EventTime.read` gives for an unusable time (day "")."""
_EVENT_TYPES: Final = frozenset(EVENT_TYPES)


_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_LONG_LONG: Final = 1 << 63
"""`put` takes a first second that fits in 64 bits (a signed C long long)."""
_MAX_CLOCK: Final = 1 << 20
_SECOND_TENS: Final = frozenset("012345")
_DIGITS: Final = frozenset("0123456789")


def _minute_text(base: int) -> str | None:
    """The text "YYYY-MM-DDTHH:MM:" of the minute starting at `base` (seconds since 1970,
    UTC); None unless `base` is a minute's first second in a four-digit year."""
    if base % 60:
        return None
    days, seconds = divmod(base, 86_400)
    try:
        day = date.fromordinal(_EPOCH_ORDINAL + days)
    except (ValueError, OverflowError):
        return None
    if day.year < 1000:
        return None
    hour, minute = divmod(seconds // 60, 60)
    return f"{day.year}-{day.month:02d}-{day.day:02d}T{hour:02d}:{minute:02d}:"


class EventClock:
    """EventClock(capacity, rotation): the event time's fast path (`EventTime`).

    It holds minutes the full parser validated (`put`), at most `capacity` (1 to 2**20,
    rounded up to a power of two) in slots by minute count since 1970: consecutive minutes
    never share one, a minute `capacity` later replaces the earlier. `read(raw)` answers
    (epoch, "YYYY-MM-DDTHH:MM:SSZ", "YYYY-MM-DD") for "YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z" (ASCII,
    second 00-59) in a known minute, else None. The epoch is the minute's when `rotation`
    (seconds, >= 1) is a multiple of 60, else (first second + seconds) // rotation.
    """

    __slots__ = ("_minute_epochs", "_minutes", "_rotation", "_slots")

    def __init__(self, capacity: int, rotation: int) -> None:
        capacity = operator.index(capacity)
        rotation = operator.index(rotation)
        if not 1 <= capacity <= _MAX_CLOCK or rotation < 1:
            raise ValueError("capacity is 1 to 2**20 minutes, rotation >= 1 s")
        self._rotation = rotation
        self._minute_epochs = rotation % 60 == 0
        # Minute text -> (first second, day text, epoch); and the text held by each slot.
        self._minutes: dict[str, tuple[int, str, int]] = {}
        self._slots: list[str | None] = [None] * (1 << (capacity - 1).bit_length())

    @property
    def capacity(self) -> int:
        """Minutes the clock can hold (a power of two)."""
        return len(self._slots)

    def __len__(self) -> int:
        return len(self._minutes)

    def read(self, raw: object) -> tuple[int, str, str] | None:
        """(epoch, text to the second, day) of the usual form in a known minute, else None."""
        if not isinstance(raw, str):
            return None
        known = self._minutes.get(raw[:17])
        if known is None:
            return None
        # The first 17 characters are a minute put before; then seconds 00-59, "Z" or a
        # fraction of 1-9 ASCII digits and "Z".
        size = len(raw)
        if (
            (size != 20 and not 22 <= size <= 30)
            or raw[-1] != "Z"
            or raw[17] not in _SECOND_TENS
            or raw[18] not in _DIGITS
            or (size > 20 and (raw[19] != "." or not _DIGITS.issuperset(raw[20:-1])))
        ):
            return None
        base, day, epoch = known
        if not self._minute_epochs:
            epoch = (base + int(raw[17:19])) // self._rotation
        return epoch, raw if size == 20 else raw[:19] + "Z", day

    def put(self, minute: str, base: int, day: str, epoch: int, /) -> None:
        """A minute the full parser validated: its text "YYYY-MM-DDTHH:MM:", its first second
        since 1970 (UTC), its day "YYYY-MM-DD" and its epoch. ValueError unless the text and
        `base` name the same minute (of a four-digit year)."""
        if not isinstance(minute, str) or not isinstance(day, str):
            raise TypeError("put() takes (str, int, str, int)")
        base = operator.index(base)
        if not isinstance(epoch, int):
            raise TypeError("put() takes (str, int, str, int)")
        if not -_LONG_LONG <= base < _LONG_LONG:
            raise OverflowError("base does not fit in 64 bits")
        text = _minute_text(base)
        if text is None or minute != text:
            raise ValueError("put() takes a minute's text and its first second")
        slot = (base // 60) & (len(self._slots) - 1)
        held = self._slots[slot]
        if held is not None:
            del self._minutes[held]
        self._slots[slot] = text
        self._minutes[text] = (base, day, epoch)

    def clear(self) -> None:
        """Forget every minute."""
        self._minutes.clear()
        self._slots = [None] * len(self._slots)


class EventTime:
    """RFC 3339 text to (epoch, UTC text to the second, UTC day); cached per minute.

    The collectors' usual "YYYY-MM-DDTHH:MM:SS[.fff]Z" takes a fast path: the event clock
    (`EventClock`) finds its minute and reads the seconds directly.
    Anything else takes the full parser (`parse`), which also fills the clock, only with
    minutes it has validated.
    """

    def __init__(self, rotation_seconds: int) -> None:
        self._rotation = rotation_seconds
        self._minutes: dict[int, tuple[str, str]] = {}
        self._clock = EventClock(_CLOCK_MINUTES, rotation_seconds)

    def read(self, raw: object) -> tuple[int, str, str]:
        """(epoch, UTC text to the second, UTC day) of `raw`; `NO_TIME` (day "") when
        unusable."""
        if not isinstance(raw, str):
            return NO_TIME
        known = self._clock.read(raw)
        if known is not None:
            return known
        return self.parse(raw)

    def parse(self, raw: str) -> tuple[int, str, str]:
        """The full parser: any RFC 3339 text with a zone whose UTC instant is in
        `TIME_RANGE` (`NO_TIME` otherwise)."""
        seconds = utc_seconds(raw)
        if seconds is None:
            return NO_TIME
        minute = seconds // 60
        texts = self._minutes.get(minute)
        if texts is None:
            # isoformat, not strftime: "%Y" writes year 999 as "999", not "0999".
            start = (_UNIX_EPOCH + timedelta(minutes=minute)).isoformat()
            texts = (start[:17], start[:10])
            bounded_put(self._minutes, minute, texts, max_size=_TIME_CACHE_SIZE)
        base = minute * 60
        if base >= _FIRST_CLOCK_SECOND:
            # The form the clock reads. (Put again whenever this minute comes here: the
            # clock may have given its slot to another minute since.)
            self._clock.put(texts[0], base, texts[1], base // self._rotation)
        return seconds // self._rotation, f"{texts[0]}{seconds % 60:02d}Z", texts[1]


def zoned_time(raw: str) -> datetime | None:
    """`raw` read as RFC 3339 with a zone (at most 64 characters, up to nanoseconds), or None
    when it is not one. Never raises."""
    if len(raw) > 64 or not _RFC3339.match(raw):
        return None
    try:
        moment = datetime.fromisoformat(raw.upper())
    except ValueError:
        return None
    if moment.tzinfo is None or moment.utcoffset() is None:
        return None
    return moment


def in_time_range(moment: datetime) -> int | None:
    """Unix seconds (floored) of a zoned `moment`, or None when its UTC instant is outside
    `TIME_RANGE`. Never raises."""
    # Exact integer arithmetic: timestamp() is a float, whose rounding moves a time a
    # microsecond before a second to the next second in year 9999. The difference of two
    # aware datetimes is computed without building the UTC datetime, so it answers for an
    # instant just outside the datetime range too; the range check follows.
    seconds = (moment - _UNIX_EPOCH) // _ONE_SECOND
    return seconds if FIRST_SECOND <= seconds <= LAST_SECOND else None


def utc_seconds(raw: str) -> int | None:
    """Unix seconds (floored) of an RFC 3339 text with a zone whose UTC instant is in
    `TIME_RANGE`, else None. Never raises."""
    moment = zoned_time(raw)
    return None if moment is None else in_time_range(moment)


class EventTimeUnit:
    """The chain's event-time unit: a known event type and a usable time, else
    `invalid_event`; writes `event_type`, `occurred_at` (UTC, to the second) and `epoch`."""

    def __init__(self, rotation_seconds: int) -> None:
        self.times = EventTime(rotation_seconds)

    def __call__(self, event: dict[str, Any], out: Draft) -> str | None:
        event_type = event.get("event_type")
        if not isinstance(event_type, str) or event_type not in _EVENT_TYPES:
            return reasons.INVALID_EVENT
        epoch, occurred_at, day = self.times.read(event.get("occurred_at"))
        if not day:
            return reasons.INVALID_EVENT
        fields = out.fields
        fields["event_type"] = event_type
        fields["occurred_at"] = occurred_at
        fields["epoch"] = epoch
        out.epoch = epoch
        out.day = day
        return None
