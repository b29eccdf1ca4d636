"""Background tasks that must not die silently."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)


async def guarded(
    run: Callable[[], Coroutine[Any, Any, None]], *, on_error: Callable[[BaseException], None]
) -> None:
    """Await `run()`; on an unexpected exception log its type (never its message, which may
    quote data), call `on_error` so the owner turns unready and unhealthy, and re-raise.

    `run` is the coroutine function, called here: a task cancelled before its first step
    then leaves no coroutine object behind that was never awaited (a RuntimeWarning).
    """
    try:
        await run()
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.error("background task failed: %s", type(exc).__name__)
        on_error(exc)
        raise
