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

import re
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from anonymizers import reasons
from anonymizers.fields import EVENT_TYPES
from anonymizers.memo import bounded_put
from anonymizers.native import FAST, twin
from anonymizers.outcome import Draft

_TIME_CACHE_SIZE: Final = 65_536
_CLOCK_MINUTES: Final = 16_384
"""Minutes the event clock holds: any 11 days' worth (consecutive minutes never share a
slot), 512 KiB in the fast twin."""
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


class EventTime:
    """RFC 3339 text to (epoch, UTC text to the second, UTC day); cached per minute.

    The collectors' usual "YYYY-MM-DDTHH:MM:SS[.fff]Z" takes a fast path: the event clock
    (`anonymizers.native`'s chosen twin) finds its minute and reads the seconds directly.
    Anything else takes the full parser (`parse`), which also fills the clock, only with
    minutes it has validated.
    """

    def __init__(self, rotation_seconds: int) -> None:
        self._rotation = rotation_seconds
        self._minutes: dict[int, tuple[str, str]] = {}
        self._clock: Any = twin().EventClock(_CLOCK_MINUTES, rotation_seconds)

    @property
    def native(self) -> bool:
        """True when the clock is the fast twin's."""
        return FAST is not None and isinstance(self._clock, FAST.EventClock)

    def read(self, raw: object) -> tuple[int, str, str]:
        """(epoch, UTC text to the second, UTC day) of `raw`; `NO_TIME` (day "") when
        unusable (not None: mypyc returns a fixed tuple without allocating it)."""
        if not isinstance(raw, str):
            return NO_TIME
        known: tuple[int, str, str] | None = self._clock.read(raw)
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
