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
from anonymizers.native import EXTENSION, native_enabled
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

    The collectors' usual "YYYY-MM-DDTHH:MM:SS[.fff]Z" takes a fast path: its minute is
    looked up and the seconds read directly (by the extension's `EventClock` where it is
    built and on, else by the Python below). Anything else takes the full parser, which also
    fills the fast path (only with minutes it has validated).
    """

    def __init__(self, rotation_seconds: int) -> None:
        self._rotation = rotation_seconds
        # With minute-aligned epochs, the whole minute shares its epoch.
        self._minute_epochs = rotation_seconds % 60 == 0
        self._minutes: dict[int, tuple[str, str]] = {}
        # The fast path: the extension's clock, else "YYYY-MM-DDTHH:MM:" (UTC) -> (unix
        # seconds of the minute, day, epoch of the minute).
        self._clock: Any = None
        if EXTENSION is not None and native_enabled():
            self._clock = EXTENSION.EventClock(_CLOCK_MINUTES, rotation_seconds)
        self._fast: dict[str, tuple[int, str, int]] = {}

    def read(self, raw: object) -> tuple[int, str, str]:
        """(epoch, UTC text to the second, UTC day) of `raw`; `NO_TIME` (day "") when
        unusable (not None: mypyc returns a fixed tuple without allocating it)."""
        if not isinstance(raw, str):
            return NO_TIME
        clock = self._clock
        if clock is not None:
            known: tuple[int, str, str] | None = clock.read(raw)
            if known is not None:
                return known
            return self.parse(raw)
        fast = self._fast.get(raw[:17])
        if fast is not None:
            size = len(raw)
            # Seconds 00-59, then "Z" or a fraction of 1-9 ASCII digits and "Z".
            if (
                size >= 20
                and raw[-1] == "Z"
                and raw[17] in "012345"
                and raw[18] in "0123456789"
                and (
                    size == 20
                    or (raw[19] == "." and size <= 30 and raw[20:-1].isdigit() and raw.isascii())
                )
            ):
                base, day, epoch = fast
                if not self._minute_epochs:
                    epoch = (base + int(raw[17:19])) // self._rotation
                return epoch, raw if size == 20 else raw[:19] + "Z", day
        return self.parse(raw)

    def parse(self, raw: str) -> tuple[int, str, str]:
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
            if self._clock is None and 1 <= start.year <= 9999:
                base = minute * 60
                known = (base, texts[1], base // self._rotation)
                bounded_put(self._fast, texts[0], known, max_size=_TIME_CACHE_SIZE)
        if self._clock is not None and len(texts[0]) == 17:
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
