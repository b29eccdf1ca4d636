"""Why the pipeline dropped an event: the only values `Dropped.reason` takes.

Each is a stable machine-readable label used as a counter name and in preview reports.
Dead-letter reasons (invalid input) are different and live in the dead-letter schema.
"""

from __future__ import annotations

from typing import Final

# Consent and rights (anonymizers.consent.ConsentGate), checked before anything else.
UNDER_16: Final = "under_16"
"""The event says the person is under 16 (`age_under_16: true`)."""
CHILD: Final = "child"
"""A consent record marks one of the event's identifiers as a child's."""
ERASED: Final = "erased"
"""A consent record asks for erasure of one of the event's identifiers."""
OPTED_OUT: Final = "opted_out"
"""A consent record opts one of the event's identifiers out of analytics."""
NO_CONSENT: Final = "no_consent"
"""The event's own consent says no to analytics, or the policy requires a yes and none came."""
GPC: Final = "gpc"
"""Global Privacy Control is set and the policy honours it."""
DNT: Final = "dnt"
"""Do Not Track is set and the policy honours it."""

# The chain (anonymizers.chain.Pipeline).
INVALID_EVENT: Final = "invalid_event"
"""The event type or timestamp cannot be used (the stream validates first; this fails closed)."""
NO_KEY: Final = "no_key"
"""No pseudonym key exists for the event's epoch: nothing keyed can be computed, so no output."""
NO_SUBJECT: Final = "no_subject"
"""No identifier and no usable IP for a cookieless visitor id: the event cannot be counted."""

# Any unit of the chain (anonymizers.chain.Pipeline isolates each event).
UNPROCESSABLE: Final = "unprocessable"
"""A unit raised on this event (a defect the data revealed): the event alone is dropped, the
others of its batch are not; the log names the unit and the exception type, never a value."""

ALL: Final[tuple[str, ...]] = (
    UNDER_16,
    CHILD,
    ERASED,
    OPTED_OUT,
    NO_CONSENT,
    GPC,
    DNT,
    INVALID_EVENT,
    NO_KEY,
    NO_SUBJECT,
    UNPROCESSABLE,
)
"""Every drop reason, in the order the pipeline checks them."""
