"""What the chain's units share: the event on its way (`Draft`), the unit protocol, outcomes.

A unit is a small class configured once from the frozen policy and called per event:
`unit(event, out) -> drop reason | None`. It reads the raw, validated `event` (never
changed) and writes what it derives into `out`: output fields into `out.fields`, and what a
later unit needs (the epoch key, the parsed IP, the page's host, the echo guard's haystack)
into the draft's other slots. Returning a reason (a value of `anonymizers.reasons`) drops
the event: the units after it do not run.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple, Protocol, final

from anonymizers import reasons


class Draft:
    """One event on its way through the chain. Units write `fields` (the output candidates;
    the allowlist keeps only what the policy names, in its order) and the slots below."""

    __slots__ = (
        "day",
        "echoed",
        "epoch",
        "fields",
        "haystack",
        "ip_text",
        "key",
        "located",
        "needles",
        "page_host",
        "present",
        "search_action",
        "source",
        "subject",
    )

    def __init__(self, present: list[str]) -> None:
        self.fields: dict[str, Any] = {}
        self.present = present
        """The identifier fields the event holds, in `IDENTIFIER_FIELDS` order."""
        self.epoch = 0
        self.day = ""
        """The event's UTC day, YYYY-MM-DD (set by the event time)."""
        self.key: Any = None
        """The epoch's `EpochKey` (set by the key unit)."""
        self.ip_text: str | None = None
        """The canonical text of the event's IP, None when it has none usable."""
        self.needles: tuple[str, ...] = ()
        """What the echo guard looks for of the event's IP, every notation (`ip_probes`; set
        by the IP unit)."""
        self.located = False
        self.subject = ""
        self.source = ""
        """Where the subject came from: an identifier field's name, or "visitor"."""
        self.page_host: str | None = None
        self.haystack = ""
        """The free-text output fields, casefolded and NUL-joined (see the echo guard)."""
        self.search_action: str | None = None
        self.echoed: list[str] = NO_ECHOES


NO_ECHOES: Final[list[str]] = []
"""What the echo guard changed in most events: nothing (shared, never appended to)."""


class Unit(Protocol):
    """One step of the chain (see the module docstring)."""

    def __call__(self, event: dict[str, Any], out: Draft, /) -> str | None: ...


@final
class Anonymized:
    """An event that passed: the output `event`, its `subject` pseudonym and key `epoch`.

    `actions` lists what each unit did ("ip:geolocated", "search_terms:redacted"...) when
    the pipeline records actions, else it is empty. Equal when all four are.
    """

    __slots__ = ("actions", "epoch", "event", "subject")

    def __init__(
        self, event: dict[str, Any], subject: str, epoch: int, actions: tuple[str, ...] = ()
    ) -> None:
        self.event = event
        self.subject = subject
        self.epoch = epoch
        self.actions = actions

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Anonymized):
            return NotImplemented
        return (
            self.event == other.event
            and self.subject == other.subject
            and self.epoch == other.epoch
            and self.actions == other.actions
        )

    def __repr__(self) -> str:
        return (
            f"Anonymized(event={self.event!r}, subject={self.subject!r}, epoch={self.epoch!r}, "
            f"actions={self.actions!r})"
        )


class Dropped(NamedTuple):
    """An event that must not be emitted, and why (a value of `anonymizers.reasons`)."""

    reason: str


Outcome = Anonymized | Dropped
DROPPED: Final[dict[str, Dropped]] = {reason: Dropped(reason) for reason in reasons.ALL}
"""One immutable `Dropped` per reason serves every event."""
