"""Worker processes for integration tests: the production command, in a subprocess."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from stream.local import processes
from stream.local.broker import free_port
from stream.settings import Settings
from tests.support.http import get, scrape


class WorkerProcess:
    """One running `python -m stream worker --stage S`."""

    def __init__(self, *, stage: str, process: subprocess.Popen[bytes], log: Path, web_port: int):
        self.stage = stage
        self.process = process
        self.log = log
        self.web_port = web_port

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def ensure_alive(self) -> None:
        """Raise AssertionError with the end of the worker's log if it exited."""
        if not self.alive():
            code = self.process.returncode
            tail = self.output()[-4000:]
            raise AssertionError(f"{self.stage} worker exited with {code}:\n{tail}")

    def metrics(self) -> dict[str, float]:
        """The worker's current /metrics samples ({} while it does not answer)."""
        return scrape(self.web_port) or {}

    def metric(self, name: str) -> float:
        """One sample (e.g. `anonstream_events_dropped_total{reason="opted_out"}`); 0 if absent."""
        return self.metrics().get(name, 0.0)

    def wait_metric(
        self, name: str, *, at_least: float, timeout_s: float = 60.0
    ) -> dict[str, float]:
        """Poll /metrics until sample `name` >= `at_least`; return all samples then."""

        def reached() -> dict[str, float] | None:
            self.ensure_alive()
            values = self.metrics()
            return values if values.get(name, 0.0) >= at_least else None

        result: dict[str, float] = wait_for(
            reached, timeout_s=timeout_s, what=f"{name} >= {at_least} on the {self.stage} worker"
        )
        return result

    def wait_ready(self, *, timeout_s: float = 60.0) -> None:
        """Poll /readyz until it answers 200 (consent table caught up, current key held)."""

        def ready() -> bool:
            self.ensure_alive()
            return get(f"http://127.0.0.1:{self.web_port}/readyz")[0] == 200

        wait_for(ready, timeout_s=timeout_s, what=f"the {self.stage} worker to be ready")

    def stop(self, *, timeout_s: float = 30.0) -> int:
        """SIGTERM and wait (the worker shuts down cleanly and commits)."""
        return processes.stop(self.process, timeout_s=timeout_s)

    def kill(self) -> None:
        """SIGKILL: a crash, no clean-up."""
        if self.alive():
            self.process.kill()
            self.process.wait()


class WorkerFactory:
    """Starts workers and remembers them so the fixture can stop them all."""

    def __init__(self, *, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[WorkerProcess] = []

    def start(self, settings: Settings, stage: str, **extra_env: Any) -> WorkerProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        log = self.log_dir / f"{stage}-{len(self.started)}.log"
        process = processes.spawn_worker(settings, stage, web_port=port, log=log, **extra_env)
        worker = WorkerProcess(stage=stage, process=process, log=log, web_port=port)
        self.started.append(worker)
        return worker

    def stop_all(self) -> None:
        for worker in self.started:
            worker.stop()


def wait_for(
    predicate: Any, *, timeout_s: float, interval_s: float = 0.2, what: str = "condition"
) -> Any:
    """Poll `predicate` until it returns a truthy value; raise AssertionError on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
