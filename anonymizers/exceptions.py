"""Exceptions of the pure anonymisation layer.

`AnonstreamError` is the root of every exception anonstream raises on purpose; each package
derives its own from it (`stream.exceptions`).
"""

from __future__ import annotations


class AnonstreamError(Exception):
    """Root of every anonstream exception."""
