"""Exceptions of the stream layer (settings, broker, topics)."""

from __future__ import annotations

from anonymizers.exceptions import AnonstreamError


class StreamError(AnonstreamError):
    """Root of the stream layer's exceptions."""


class SettingsError(StreamError):
    """A setting is missing, invalid or unknown; the message names it.

    `problems` holds one line per problem (the message joins them).
    """

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems or (message,)


class BrokerError(StreamError):
    """The local broker could not be fetched, started, reached or stopped."""


class BrokerUnreachableError(BrokerError):
    """No Kafka broker answered at the configured bootstrap address."""


class BrokerSecurityError(BrokerError):
    """A broker answered but refused the connection: TLS certificate, host name or SASL
    credentials; the message names the setting to check and never a secret."""


class TopicConfigError(StreamError):
    """A topic could not be created or has a configuration other than the expected one."""


class ConsentPublishError(StreamError):
    """A consent record could not be sent or was not acknowledged; the message names no id."""
