"""Headless Chromium (Debian's `chromium` package) for browser tests: no browser download.

`make browser` (run by `make test`) installs it with apt when `/usr/bin/chromium` is absent.
Flags as the machine notes require when running as root on a closed network: no sandbox,
no GPU, no background networking, a fresh profile per run.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def chromium() -> str:
    """Path of the Chromium binary; AssertionError naming the fix when there is none."""
    for candidate in CHROMIUM_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    raise AssertionError("Chromium not found: run `make browser` (apt-get install chromium)")


def run_headless(
    url: str, *args: str, window: tuple[int, int] = (1400, 1800), budget_ms: int = 6000
) -> str:
    """Load `url` in a fresh headless Chromium with `args` (e.g. --dump-dom or
    --screenshot=PATH), letting the page run `budget_ms` of virtual time; return stdout."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        command = [
            chromium(),
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={window[0]},{window[1]}",
            f"--virtual-time-budget={budget_ms}",
            *args,
            url,
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise AssertionError(f"chromium exited {result.returncode}: {result.stderr[-2000:]}")
    return result.stdout


def screenshot(url: str, path: Path, *, budget_ms: int = 6000) -> Path:
    """Save a PNG of `url` as rendered after `budget_ms` of virtual time."""
    run_headless(url, f"--screenshot={path}", budget_ms=budget_ms)
    if not path.exists() or path.stat().st_size == 0:
        raise AssertionError(f"chromium wrote no screenshot to {path}")
    return path


def dump_dom(url: str, *, budget_ms: int = 6000) -> str:
    """The DOM of `url` (serialised HTML) after `budget_ms` of virtual time."""
    return run_headless(url, "--dump-dom", budget_ms=budget_ms)
