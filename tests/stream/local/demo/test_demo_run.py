"""`anonstream demo` itself, watched from outside: released aggregates on the dashboard in
headless Chromium, every chart with data, then Ctrl-C stops everything it started."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support.browser import dump_dom, screenshot

pytestmark = pytest.mark.timeout(420)

SCREENSHOT_DIR_ENV = "ANONSTREAM_SCREENSHOT_DIR"
CHARTS = (
    "chart-page-views",
    "chart-visitors",
    "chart-searches",
    "chart-time-on-page",
    "chart-throughput",
    "chart-drops",
    "chart-deadletters",
    "chart-suppression",
)


class Output:
    """The demo's stdout, read by a thread (the demo prints while it runs)."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.lines: list[str] = []
        assert process.stdout is not None
        self._stream = process.stdout
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for raw in self._stream:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines)

    def find(self, pattern: str) -> re.Match[str] | None:
        return re.search(pattern, self.text(), re.MULTILINE)


def get_json(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            value = orjson.loads(response.read())
    except (OSError, orjson.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def missing_data(data: dict[str, Any]) -> list[str]:
    """What the dashboard data still lacks for every chart to show something."""
    missing = []
    metrics = data.get("aggregates", {}).get("metrics", {})
    for metric in ("page_views", "visitors", "searches", "time_on_page"):
        windows = metrics.get(metric, {}).get("windows", [])
        if not any(window["top"] for window in windows):
            missing.append(f"released cells of {metric}")
    rates = data.get("pipeline", {}).get("rates", [])
    if not any(rate["in"] > 0 for rate in rates):
        missing.append("input rate")
    for field in ("dropped", "deadlettered"):
        if not any(sum(rate[field].values()) > 0 for rate in rates):
            missing.append(f"{field} rate")
    if not any(rate["suppressed_share"] is not None for rate in rates):
        missing.append("suppression share")
    return missing


def process_gone(pid: int) -> bool:
    """True when `pid` is not running (a zombie waiting to be reaped counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and not process_gone(int(entry.name)):
            found.append(int(entry.name))
    return found


def test_demo_dashboard_has_data_in_chromium_and_ctrl_c_leaves_nothing(tmp_path: Path) -> None:
    """`anonstream demo` releases 1-minute aggregates within two minutes; headless Chromium
    loads its dashboard (its own process, `anonstream dashboard`) and every chart has data
    (checked in the rendered DOM, screenshot saved); Ctrl-C then stops the demo with status 0
    and no process it started survives.
    """
    home = tmp_path / "demo"
    started = time.monotonic()
    demo = subprocess.Popen(
        [sys.executable, "-m", "stream", "demo", "--duration", "600", "--data-dir", str(home)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    out = Output(demo)
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while out.find(r"^dashboard (\S+)") is None:
            assert demo.poll() is None, f"demo exited early:\n{out.text()}"
            assert time.monotonic() < deadline, f"no dashboard address:\n{out.text()}"
            time.sleep(0.5)
        match = out.find(r"^dashboard (\S+)")
        assert match is not None
        url = match.group(1)
        pids = [int(p) for p in re.findall(r" pid (\d+)", out.text())]
        assert len(pids) == 6, f"broker, three workers, dashboard, generator:\n{out.text()}"

        # Released aggregates within two minutes of the start (1-minute windows).
        missing: list[str] = ["everything"]
        first_release: float | None = None
        while missing and time.monotonic() - started < 150:
            assert demo.poll() is None, f"demo exited early:\n{out.text()}"
            data = get_json(f"{url}/data.json") or {}
            if first_release is None and data.get("aggregates", {}).get("records"):
                first_release = time.monotonic() - started
            missing = missing_data(data)
            time.sleep(2)
        assert first_release is not None and first_release <= 120, (
            f"first aggregates after {first_release}s\n{out.text()[-3000:]}"
        )
        assert not missing, f"dashboard data still lacks {missing}\n{out.text()[-3000:]}"

        dom = dump_dom(url)
        points = dict(re.findall(r'<figure class="chart" id="([\w-]+)" data-points="(\d+)"', dom))
        assert set(points) == set(CHARTS), points
        empty = [chart for chart, n in points.items() if int(n) == 0]
        assert not empty, f"charts without data: {empty}"
        assert 'data-ready="true"' in dom
        assert "released cells" in dom and "cannot reach" not in dom

        shot = screenshot(url, tmp_path / "dashboard.png")
        assert shot.stat().st_size > 20_000, "a rendered page, not a blank one"
        keep = os.environ.get(SCREENSHOT_DIR_ENV)
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, Path(keep) / "dashboard.png")
        print(f"dashboard screenshot: {shot}; first aggregates after {first_release:.0f}s")
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            code = demo.wait(timeout=120)
        except subprocess.TimeoutExpired:
            demo.kill()
            # What the demo started must not outlive the test (and load the next tests).
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            raise
    assert code == 0, out.text()[-3000:]
    assert "nothing left running" in out.text()
    time.sleep(0.5)
    assert all(process_gone(pid) for pid in pids), [p for p in pids if not process_gone(p)]
    assert processes_mentioning(str(home)) == []
