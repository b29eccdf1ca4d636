"""The dashboard's process: a follower of stats.aggregates, a sampler of the workers' /metrics,
and an aiohttp server for the page and its data (see the package doc)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from importlib import resources
from typing import Any

import orjson
from aiohttp import ClientSession, ClientTimeout, web

from stream import kafka
from stream.health.metrics import labelled, parse_samples
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
            except Exception as exc:  # shown on the page, retried
                self.error = type(exc).__name__
                log.warning("dashboard follower failed, retrying: %s", self.error)
                await asyncio.sleep(RETRY_S)

    async def _follow(self) -> None:
        from aiokafka import TopicPartition

        topic = self._settings.topic_aggregates
        consumer = kafka.async_consumer(
            self._settings, auto_offset_reset="earliest", fetch_max_wait_ms=250
        )
        try:
            await consumer.start()
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
                    self._add(records)
                if not batches:
                    self.caught_up = True
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()

    def _add(self, records: Sequence[Any]) -> None:
        for record in records:
            if record.value is None:
                continue
            with contextlib.suppress(orjson.JSONDecodeError):
                value = orjson.loads(record.value)
                if isinstance(value, dict):
                    self.board.add(value)


class PipelineSampler:
    """Samples the workers' /metrics (`peers`: their base URLs) into a `PipelineHistory`."""

    def __init__(self, peers: Sequence[str]) -> None:
        self.peers = list(peers)
        self.history = PipelineHistory()
        self.workers: list[dict[str, Any]] = []

    async def run(self) -> None:
        timeout = ClientTimeout(total=PEER_TIMEOUT_S)
        async with ClientSession(timeout=timeout) as session:
            while True:
                await self.sample(session)
                await asyncio.sleep(SAMPLE_INTERVAL_S)

    async def sample(self, session: ClientSession) -> None:
        scrapes = await asyncio.gather(*(self._scrape(session, url) for url in self.peers))
        self.workers = [
            _worker_status(url, samples) if samples is not None else {"url": url, "up": False}
            for url, samples in zip(self.peers, scrapes, strict=True)
        ]
        total = sum_samples(s for s in scrapes if s is not None)
        self.history.add(time.time(), totals(total))

    async def _scrape(self, session: ClientSession, url: str) -> dict[str, float] | None:
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
    """The board, the history and the JSON the page polls."""

    def __init__(self, settings: Settings, *, peers: Sequence[str]) -> None:
        self.board = AggregateBoard()
        self.follower = AggregateFollower(settings, self.board)
        self.sampler = PipelineSampler(peers)

    def data(self, *, seconds: int | None = None) -> dict[str, Any]:
        """The JSON the page polls: released windows (of `seconds`-long windows, default the
        shortest), the follower's state, the pipeline's totals, rates and workers."""
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

    async def background(self, app: web.Application) -> AsyncIterator[None]:
        """The follower and the sampler, for as long as the web application runs."""
        tasks = [
            asyncio.create_task(self.follower.run(), name="dashboard-follower"),
            asyncio.create_task(self.sampler.run(), name="dashboard-sampler"),
        ]
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def web_app(dashboard: Dashboard) -> web.Application:
    """GET / (to the page), /dashboard (the page), /dashboard/data.json and the assets."""

    async def root(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/dashboard")

    async def page(request: web.Request) -> web.StreamResponse:
        return web.Response(body=static_file("index.html"), content_type="text/html")

    async def asset(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name == "data.json":
            seconds = request.query.get("window")
            wanted = int(seconds) if seconds and seconds.isdigit() else None
            return web.Response(
                body=orjson.dumps(dashboard.data(seconds=wanted)),
                content_type="application/json",
                headers={"Cache-Control": "no-store"},
            )
        content_type = STATIC.get(name)
        if content_type is None:
            return web.json_response({"error": "not found"}, status=404)
        return web.Response(body=static_file(name), content_type=content_type)

    app = web.Application()
    app.router.add_get("/", root)
    app.router.add_get("/dashboard", page)
    app.router.add_get("/dashboard/{name}", asset)
    app.cleanup_ctx.append(dashboard.background)
    return app


async def serve(
    dashboard: Dashboard,
    *,
    host: str,
    port: int,
    stop: asyncio.Event,
    on_listening: Callable[[int], None],
) -> None:
    """Serve `dashboard` on `host`:`port` (0: any free port) until `stop` is set;
    `on_listening(port)` once the socket listens."""
    runner = web.AppRunner(web_app(dashboard), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        on_listening(_listening_port(runner, port))
        await stop.wait()
    finally:
        await runner.cleanup()


def _listening_port(runner: web.AppRunner, requested: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return requested
