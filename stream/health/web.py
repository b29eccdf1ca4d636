"""A worker's HTTP endpoints on Faust's web server: /healthz, /readyz, /metrics.

* `/healthz` (liveness): 200 while the worker works, 503 with the problems otherwise: a
  background reader (consent, keys) or the stage loop died, or the input consumer stalled
  (lag and no progress, or anonymize commits stopped; `stream.health.probes`). Kubernetes restarts
  the pod on failures.
* `/readyz` (readiness): 200 only when the worker may process events: the consent table
  caught up and keeping up, the current epoch's key held, the stage started, and no
  liveness problem. 503 with the reasons otherwise.
* `/metrics`: Prometheus text format, produced from the stage's counters at scrape time.

Bodies are small JSON objects with fixed texts: never a payload, an identifier or a key.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, Protocol

import faust
from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from stream.health.metrics import CallbackCollector, new_registry


class Observable(Protocol):
    """What a stage runtime offers its endpoints."""

    def problems(self) -> list[str]:
        """Liveness problems (empty: alive)."""

    def unready(self) -> list[str]:
        """Why the worker may not process events (empty: ready)."""

    def metric_families(self) -> Iterator[Any]:
        """Prometheus metric families, built at scrape time."""


class WorkerWeb:
    """The endpoints of one worker, and the registry its /metrics is produced from."""

    def __init__(self, runtime: Observable, *, stage: str) -> None:
        self.runtime = runtime
        self.stage = stage
        self.started = time.time()
        self.registry: CollectorRegistry = new_registry()
        self.registry.register(CallbackCollector(runtime.metric_families))

    def metrics_text(self) -> bytes:
        return bytes(generate_latest(self.registry))


def register_web(app: faust.App, runtime: Observable, *, stage: str) -> WorkerWeb:
    """Serve /healthz, /readyz and /metrics of `runtime` (see module doc)."""
    worker = WorkerWeb(runtime, stage=stage)

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        problems = runtime.problems()
        body = {
            "alive": not problems,
            "stage": stage,
            "uptime_s": round(time.time() - worker.started, 1),
            "problems": problems,
        }
        return web.json(body, status=503 if problems else 200)

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        reasons = runtime.unready()
        body = {"ready": not reasons, "stage": stage, "reasons": reasons}
        return web.json(body, status=503 if reasons else 200)

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        return web.bytes(worker.metrics_text(), content_type="text/plain; version=0.0.4")

    return worker


def checks(*pairs: tuple[bool, str]) -> list[str]:
    """The messages of the failed checks: `checks((ok, "what is wrong"), ...)`."""
    return [message for ok, message in pairs if not ok]
