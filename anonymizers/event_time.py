"""Event time: the RFC 3339 `occurred_at` of a raw event read into its key epoch, its UTC
text to the second and its UTC day; the chain's first unit after the consent gate.

Times must carry a zone (a naive time is unusable: fail closed). The collectors' usual form
"YYYY-MM-DDTHH:MM:SS[.fff]Z" takes a fast path per minute (see `EventTime`); anything else
takes the full parser. An unusable time or event type drops the event (`invalid_event`).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
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
        """The full parser: any RFC 3339 text with a zone (`NO_TIME` otherwise)."""
        if len(raw) > 64 or not _RFC3339.match(raw):
            return NO_TIME
        try:
            moment = datetime.fromisoformat(raw.upper())
        except ValueError:
            return NO_TIME
        if moment.tzinfo is None or moment.utcoffset() is None:
            return NO_TIME
        seconds = math.floor(moment.timestamp())
        minute = seconds // 60
        texts = self._minutes.get(minute)
        if texts is None:
            start = datetime.fromtimestamp(minute * 60, tz=UTC)
            texts = (start.strftime("%Y-%m-%dT%H:%M:"), start.strftime("%Y-%m-%d"))
            bounded_put(self._minutes, minute, texts, max_size=_TIME_CACHE_SIZE)
        if len(texts[0]) == 17:
            # Four-digit years: the form the clock reads. (Put again whenever this minute
            # comes here: the clock may have given its slot to another minute since.)
            base = minute * 60
            self._clock.put(texts[0], base, texts[1], base // self._rotation)
        return seconds // self._rotation, f"{texts[0]}{seconds % 60:02d}Z", texts[1]


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
