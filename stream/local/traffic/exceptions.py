"""Exceptions of the traffic generator."""

from __future__ import annotations

from stream.exceptions import StreamError


class TrafficError(StreamError):
    """The generator was misconfigured or its output could not be delivered."""


class GeoDatabaseError(TrafficError):
    """The geolocation database could not be read or holds no usable network."""
