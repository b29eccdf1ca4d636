"""Logging: JSON lines on stdout, and Kafka client libraries kept away from payloads.

aiokafka and kafka-python log every produced record (key and value) at DEBUG; the key topic
carries key material and every other topic carries events. Their loggers are therefore
floored at WARNING whatever level the process runs at, so no payload or key can reach a
log line even with `--loglevel debug`.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

# Loggers that may print message payloads below the given level.
PAYLOAD_LOGGERS: dict[str, int] = {
    "aiokafka": logging.WARNING,
    "kafka": logging.WARNING,
    "faust.transport": logging.WARNING,
    "faust.agents": logging.INFO,
    "faust.streams": logging.INFO,
    "faust.topics": logging.INFO,
}


def clamp_library_loggers() -> None:
    """Raise the level of loggers that can print payloads (see module doc)."""
    for name, floor in PAYLOAD_LOGGERS.items():
        logger = logging.getLogger(name)
        if logger.level < floor:
            logger.setLevel(floor)


class JsonLineFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg (+ exc type, never exception args)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info and record.exc_info[0] is not None:
            # The exception's type and where it happened; its message may quote input.
            entry["exc_type"] = record.exc_info[0].__name__
            entry["exc_where"] = _where(record.exc_info[2])
        return orjson.dumps(entry).decode()


def _where(tb: Any) -> str | None:
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    if last is None:
        return None
    code = last.tb_frame.f_code
    return f"{code.co_filename.rsplit('/', 1)[-1]}:{last.tb_lineno} in {code.co_name}"


def level_name(level: str) -> str:
    """`warn`/`warning`/`INFO`... as the logging module's level name."""
    upper = level.upper()
    return "WARNING" if upper == "WARN" else upper


def logging_config(level: str = "info") -> dict[str, Any]:
    """A `logging.config.dictConfig` for workers: JSON lines on stdout."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonLineFormatter}},
        "handlers": {
            "stdout": {"class": "logging.StreamHandler", "formatter": "json", "stream": sys.stdout}
        },
        "root": {"level": level_name(level), "handlers": ["stdout"]},
        "loggers": {
            name: {"level": logging.getLevelName(floor)} for name, floor in PAYLOAD_LOGGERS.items()
        },
    }
