"""The probes of a worker that waits before it starts (for its topics): alive, not ready.

A worker started before its topics exist (the Kubernetes topics Job still running) waits for
them, bounded, before it builds its Faust app. Meanwhile this small server answers on the
worker's web address, in the formats of `stream.health.web`: `/healthz` 200 (the process is
fine: no restart), `/readyz` 503 with the reason (e.g. `waiting for topics: events.raw`), and
`/metrics` with `anonstream_ready 0`. It stops before the worker's own web server starts on
the same port.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import generate_latest

from stream.health.metrics import CallbackCollector, new_registry, worker_families


class StandbyServer:
    """Serves /healthz, /readyz and /metrics of a waiting worker in a background thread."""

    def __init__(self, *, host: str, port: int, stage: str) -> None:
        self.stage = stage
        self.started = time.time()
        self._reasons: list[str] = ["checking topics"]
        self._lock = threading.Lock()
        self._registry = new_registry()
        self._registry.register(
            CallbackCollector(lambda: worker_families(stage, ready=False, alive=True))
        )
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="standby-web", daemon=True
        )

    @property
    def port(self) -> int:
        """The port served (the one asked for, or the one picked for port 0)."""
        return int(self._server.server_address[1])

    def set_reasons(self, reasons: list[str]) -> None:
        """Why the worker is not ready, as /readyz lists it."""
        with self._lock:
            self._reasons = list(reasons)

    def reasons(self) -> list[str]:
        with self._lock:
            return list(self._reasons)

    def __enter__(self) -> StandbyServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def answer(self, path: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for a request path."""
        if path == "/healthz":
            body = {
                "alive": True,
                "stage": self.stage,
                "uptime_s": round(time.time() - self.started, 1),
                "problems": [],
            }
            return 200, "application/json", orjson.dumps(body)
        if path == "/readyz":
            body = {"ready": False, "stage": self.stage, "reasons": self.reasons()}
            return 503, "application/json", orjson.dumps(body)
        if path == "/metrics":
            return 200, "text/plain; version=0.0.4", bytes(generate_latest(self._registry))
        return 404, "application/json", orjson.dumps({"error": "not found"})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, content_type, body = server.answer(self.path.split("?", 1)[0])
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # probes every few seconds: no access log

        return Handler
