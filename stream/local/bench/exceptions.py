"""Exceptions of `anonstream bench`."""

from __future__ import annotations

from stream.exceptions import StreamError


class BenchError(StreamError):
    """A row could not be measured: a step failed, a row stalled, or counts disagree."""
