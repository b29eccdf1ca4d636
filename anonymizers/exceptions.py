"""Exceptions of the pure anonymisation layer.

`AnonstreamError` is the root of every exception anonstream raises on purpose; each package
derives its own from it (`stream.exceptions`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class AnonstreamError(Exception):
    """Root of every anonstream exception."""


class AnonymizerError(AnonstreamError):
    """Root of the exceptions raised by `anonymizers`."""


class PolicyError(AnonymizerError):
    """The policy file is unreadable or invalid; `issues` holds every problem found.

    The message lists one issue per line as `<path> must be <allowed>; got <value>`.
    """

    def __init__(self, issues: Sequence[Any]) -> None:
        self.issues: tuple[Any, ...] = tuple(issues)
        """The problems, each an `anonymizers.policy.PolicyIssue` (its `str` is one line)."""
        lines = [str(issue) for issue in self.issues]
        count = len(lines)
        header = f"policy has {count} error{'s' if count != 1 else ''}"
        super().__init__("\n".join([header, *lines]))


class GeoDatabaseError(AnonymizerError):
    """The geolocation database could not be opened or is not a MaxMind-format database."""


class KeyMaterialError(AnonymizerError):
    """Key material is missing, too short or obviously not random (all one byte value)."""


class KeyUnwrapError(KeyMaterialError):
    """A wrapped key does not authenticate under the key-encryption key (another KEK, a
    tampered record, or a record moved to another epoch); the message holds no key material."""


class AggregationError(AnonymizerError):
    """The statistics engine was used against its contract (a programming error, never data:
    malformed records and events are counted and skipped)."""


class ConsentRecordError(AnonymizerError):
    """A consent record does not follow `schemas/consent-record.v1.json`; the message says why.

    The message names the field and rule, never the subject id.
    """
