"""The interface between the chain and whatever holds the pseudonym keys.

Its own module (re-exported by `anonymizers.keys`) because a runtime-checkable Protocol must
stay interpreted, while `anonymizers.keys` may be compiled (setup.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from anonymizers.keys import EpochKey


@runtime_checkable
class KeyProvider(Protocol):
    """Where the chain gets the key of an epoch.

    `rotation_seconds` is the epoch length; `key_for_epoch` returns `None` when no key
    exists (not yet shared, or destroyed after retention): the event is then dropped.
    """

    @property
    def rotation_seconds(self) -> int: ...

    def key_for_epoch(self, epoch: int) -> EpochKey | None: ...
