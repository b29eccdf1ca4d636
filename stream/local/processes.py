"""Child processes of anonstream (stage workers, the traffic generator), for the demo and tests.

A child gets exactly the parent's settings through `ANONSTREAM_*` environment variables,
runs the production command (`python -m stream ...`) and is stopped with SIGTERM (clean
shutdown and commit), then SIGKILL after a timeout: nothing is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

from stream.settings import ENV_PREFIX, Settings


def settings_env(settings: Settings, **extra: Any) -> dict[str, str]:
    """The environment that makes a child process load exactly `settings` (+ `extra`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    values = settings.model_dump(exclude_none=True)
    values.update(extra)
    for name, value in values.items():
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"{ENV_PREFIX}{name.upper()}"] = str(value)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def spawn(
    settings: Settings,
    args: list[str],
    *,
    log: Path | None = None,
    stdout: IO[bytes] | None = None,
    **extra_env: Any,
) -> subprocess.Popen[bytes]:
    """Start `python -m stream <args>` with `settings`; output to `log` (or `stdout`)."""
    command = [sys.executable, "-m", "stream", *args]
    env = settings_env(settings, **extra_env)
    # Its own session: Ctrl-C in a terminal reaches only the parent, which stops its children
    # in order (generator, then workers, then the broker) instead of all at once.
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            return subprocess.Popen(  # noqa: S603 - our own interpreter and module
                command,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        command,
        env=env,
        stdout=stdout,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def spawn_worker(
    settings: Settings,
    stage: str,
    *,
    web_port: int,
    log: Path,
    loglevel: str = "warning",
    **extra_env: Any,
) -> subprocess.Popen[bytes]:
    """Start one production worker of `stage` serving its endpoints on `web_port`."""
    return spawn(
        settings,
        ["worker", "--stage", stage, "--loglevel", loglevel],
        log=log,
        web_port=web_port,
        **extra_env,
    )


def stop(process: subprocess.Popen[bytes], *, timeout_s: float = 30.0) -> int:
    """SIGTERM, wait up to `timeout_s`, then SIGKILL; return the exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode
