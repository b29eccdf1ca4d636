"""The dashboard: a page served by release workers' web server, fed from memory.

Data design (see the README's "Dashboard"):

* **Released aggregates**: a follower of `stats.aggregates` in the serving worker (its own
  consumer, no group: every partition, from `FOLLOW_HORIZON_S` back) keeps the latest
  windows of every metric in an `AggregateBoard` (bounded: 30 windows per metric and size,
  1000 cells per window). Only released records are ever shown.
* **Pipeline counters**: every `SAMPLE_INTERVAL_S` the worker reads its own /metrics and
  those of its peers (setting `ANONSTREAM_DASHBOARD_PEERS`: base URLs of the anonymize and
  aggregate workers, which `anonstream demo` sets), adds them up and keeps 10 minutes of
  samples in a `PipelineHistory`, from which rates are computed.
* `GET /dashboard` is the page (static HTML, CSS and vanilla JS from this package, no
  external asset), which polls `GET /dashboard/data.json` every 2 s and draws SVG charts.

Nothing here affects the stage: a follower or peer failure is shown on the page and
retried, never raised into the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from importlib import resources
from typing import Any

import faust
import orjson

from stream import kafka
from stream.health.metrics import labelled, parse_samples
from stream.health.web import WorkerWeb
from stream.local.dashboard.board import AggregateBoard, PipelineHistory, sum_samples, totals
from stream.settings import Settings

log = logging.getLogger(__name__)

FOLLOW_HORIZON_S = 3 * 3600.0
"""How far back the follower starts reading stats.aggregates (by record time)."""
SAMPLE_INTERVAL_S = 2.0
"""How often the pipeline's counters are sampled."""
PEER_TIMEOUT_S = 1.5
RETRY_S = 5.0

STATIC: dict[str, str] = {
    "index.html": "text/html",
    "dashboard.js": "application/javascript",
    "dashboard.css": "text/css",
}


def static_file(name: str) -> bytes:
    """A dashboard asset shipped in this package."""
    return resources.files("stream.local.dashboard").joinpath("static", name).read_bytes()


class AggregateFollower:
    """Reads stats.aggregates into an `AggregateBoard`, for ever, retrying on errors."""

    def __init__(self, settings: Settings, board: AggregateBoard) -> None:
        self._settings = settings
        self.board = board
        self.error: str | None = None
        self.caught_up = False

    async def run(self) -> None:
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # shown on the page; the stage is not affected
                self.error = type(exc).__name__
                log.warning("dashboard follower failed, retrying: %s", self.error)
                await asyncio.sleep(RETRY_S)

    async def _follow(self) -> None:
        from aiokafka import TopicPartition

        topic = self._settings.topic_aggregates
        consumer = kafka.async_consumer(
            self._settings, auto_offset_reset="earliest", fetch_max_wait_ms=250
        )
        await consumer.start()
        try:
            partitions = await kafka.topic_partitions(self._settings, topic)
            tps = [TopicPartition(topic, p) for p in partitions]
            consumer.assign(tps)
            since_ms = int((time.time() - FOLLOW_HORIZON_S) * 1000)
            starts = await consumer.offsets_for_times(dict.fromkeys(tps, since_ms))
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                start = starts.get(tp)
                consumer.seek(tp, start.offset if start is not None else ends[tp])
            self.error = None
            while True:
                batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
                for records in batches.values():
                    for record in records:
                        if record.value is None:
                            continue
                        with contextlib.suppress(orjson.JSONDecodeError):
                            value = orjson.loads(record.value)
                            if isinstance(value, dict):
                                self.board.add(value)
                if not batches:
                    self.caught_up = True
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()


class PipelineSampler:
    """Samples this worker's and its peers' /metrics into a `PipelineHistory`."""

    def __init__(self, settings: Settings, own: WorkerWeb) -> None:
        self._own = own
        self.peers = settings.dashboard_peer_list
        self.history = PipelineHistory()
        self.workers: list[dict[str, Any]] = []

    async def run(self) -> None:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=PEER_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                await self.sample(session)
                await asyncio.sleep(SAMPLE_INTERVAL_S)

    async def sample(self, session: Any) -> None:
        scrapes = await asyncio.gather(*(self._scrape(session, url) for url in self.peers))
        own = self._own.samples()
        workers = [_worker_status("this worker", own)]
        workers += [
            _worker_status(url, samples) if samples is not None else {"url": url, "up": False}
            for url, samples in zip(self.peers, scrapes, strict=True)
        ]
        self.workers = workers
        total = sum_samples([own, *(s for s in scrapes if s is not None)])
        self.history.add(time.time(), totals(total))

    async def _scrape(self, session: Any, url: str) -> dict[str, float] | None:
        try:
            async with session.get(f"{url}/metrics") as response:
                if response.status != 200:
                    return None
                return parse_samples(await response.text())
        except Exception:  # down, slow or not a worker: shown as not answering
            return None


def _worker_status(url: str, samples: dict[str, float]) -> dict[str, Any]:
    stages = labelled(samples, "anonstream_worker_info", "stage")
    lag = labelled(samples, "anonstream_consumer_lag", "partition")
    return {
        "url": url,
        "up": True,
        "stage": next(iter(stages), None),
        "ready": samples.get("anonstream_ready") == 1.0,
        "alive": samples.get("anonstream_alive", 1.0) == 1.0,
        "lag": int(sum(lag.values())) if lag else None,
    }


class Dashboard:
    """The board, the history and their web views."""

    def __init__(self, settings: Settings, own: WorkerWeb) -> None:
        self.board = AggregateBoard()
        self.follower = AggregateFollower(settings, self.board)
        self.sampler = PipelineSampler(settings, own)

    def data(self, *, seconds: int | None = None) -> dict[str, Any]:
        """The JSON the page polls (see README "Dashboard")."""
        history = self.sampler.history
        return {
            "generated_at": time.time(),
            "aggregates": self.board.view(seconds=seconds),
            "follower": {"error": self.follower.error, "caught_up": self.follower.caught_up},
            "pipeline": {
                "totals": history.latest(),
                "rates": history.rates(),
                "workers": self.sampler.workers,
            },
        }


def register_dashboard(app: faust.App, *, settings: Settings, own: WorkerWeb) -> Dashboard:
    """Serve /dashboard and /dashboard/data.json; start the follower and the sampler."""
    dashboard = Dashboard(settings, own)

    @app.task  # type: ignore[untyped-decorator]
    async def follow_aggregates() -> None:
        await dashboard.follower.run()

    @app.task  # type: ignore[untyped-decorator]
    async def sample_pipeline() -> None:
        await dashboard.sampler.run()

    @app.page("/dashboard")
    async def page(web: Any, request: Any) -> Any:
        return web.bytes(static_file("index.html"), content_type="text/html")

    @app.page("/dashboard/{name}")
    async def asset(web: Any, request: Any, name: str) -> Any:
        if name == "data.json":
            seconds = request.query.get("window")
            wanted = int(seconds) if seconds and seconds.isdigit() else None
            return web.bytes(
                orjson.dumps(dashboard.data(seconds=wanted)),
                content_type="application/json",
                headers={"Cache-Control": "no-store"},
            )
        content_type = STATIC.get(name)
        if content_type is None:
            return web.json({"error": "not found"}, status=404)
        return web.bytes(static_file(name), content_type=content_type)

    return dashboard
