"""Event time, tumbling windows and partition coverage.

Times are integer microseconds since the Unix epoch (UTC) inside the engine and RFC 3339
strings on the wire. Windows are tumbling, aligned to the epoch: the window of size `s`
seconds holding time `t` is `[floor(t/s)*s, floor(t/s)*s + s)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

US_PER_S = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
MIN_EVENT_US = (datetime(2000, 1, 1, tzinfo=UTC) - _EPOCH) // _ONE_US
MAX_EVENT_US = (datetime(2100, 1, 1, tzinfo=UTC) - _EPOCH) // _ONE_US
"""Event times outside [2000, 2100) are malformed: one absurd time would otherwise move a
partition's watermark decades ahead and make every later event late."""


def parse_time_us(value: object) -> int | None:
    """Microseconds since the epoch of an RFC 3339 string with a zone (or an aware datetime);
    None when `value` is not one (naive times are rejected: fail closed)."""
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
    elif isinstance(value, datetime):
        moment = value
    else:
        return None
    if moment.tzinfo is None or moment.utcoffset() is None:
        return None
    return (moment - _EPOCH) // _ONE_US


def format_time_us(us: int) -> str:
    """RFC 3339 UTC text of `us`: whole seconds as `...:SSZ`, else with 6 fractional digits."""
    moment = _EPOCH + timedelta(microseconds=us)
    if us % US_PER_S == 0:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True, order=True)
class Window:
    """One tumbling window: `size` seconds from `start_us` (inclusive) to `end_us` (exclusive).
    Ordered by (end, size): the order in which the release decides windows."""

    end_us: int
    size: int
    start_us: int

    @classmethod
    def of(cls, size: int, start_us: int) -> Window:
        """The window of `size` seconds starting at `start_us`."""
        return cls(end_us=start_us + size * US_PER_S, size=size, start_us=start_us)

    @classmethod
    def containing(cls, size: int, t_us: int) -> Window:
        """The window of `size` seconds that holds time `t_us`."""
        span = size * US_PER_S
        return cls.of(size, t_us - t_us % span)

    @property
    def start(self) -> str:
        """RFC 3339 start."""
        return format_time_us(self.start_us)

    @property
    def end(self) -> str:
        """RFC 3339 end (exclusive)."""
        return format_time_us(self.end_us)

    def parent(self, size: int) -> Window:
        """The window of the larger `size` that contains this one (sizes nest)."""
        return Window.containing(size, self.start_us)


class Coverage:
    """Union of half-open event-time ranges `(from, through]` a partition reported closed;
    `from` None means "since the beginning". A window is closed in the partition when its
    end lies in the union."""

    __slots__ = ("_ranges",)

    def __init__(self) -> None:
        self._ranges: list[tuple[int | None, int]] = []

    def add(self, closed_from: int | None, closed_through: int) -> None:
        """Record that windows ending in `(closed_from, closed_through]` are closed."""
        if closed_from is not None and closed_from >= closed_through:
            return
        ranges = [*self._ranges, (closed_from, closed_through)]
        ranges.sort(key=lambda r: (-(2**63) if r[0] is None else r[0], r[1]))
        merged: list[tuple[int | None, int]] = []
        for lo, hi in ranges:
            if merged:
                mlo, mhi = merged[-1]
                if lo is None or lo <= mhi:
                    merged[-1] = (mlo, max(mhi, hi))
                    continue
            merged.append((lo, hi))
        self._ranges = merged

    def covers(self, end_us: int) -> bool:
        """Whether a window ending at `end_us` is closed in this partition."""
        return any((lo is None or lo < end_us) and end_us <= hi for lo, hi in self._ranges)

    def through(self) -> int | None:
        """The latest time reported closed."""
        return max((hi for _, hi in self._ranges), default=None)
