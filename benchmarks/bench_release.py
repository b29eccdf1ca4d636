"""Release v2: what the privacy officer waits for, and what one window's decision costs.

Two figures of the release v2 issue, each beside a ceiling and a peer measured in the same
run:

1. `anonstream preview` of two hours of generated traffic at 50 events/s (360,000 events,
   `anonstream generate --rate 50 --duration 7200 --seed 11`), the shipped policy (dp), as
   a subprocess pinned to one core when `taskset` exists: the wall time the privacy officer
   waits for (target <= 30 s). Ceiling: reading and decoding the same file (orjson). Peer:
   the same preview in exact mode.
2. The release of one window with 100,000 cells (page_views by page at 1h; each cell 1 to 4
   people): partials merged, then the decision and the records timed
   (`ReleaseEngine.release_ready`; target <= 1 s). Ceiling: OpenDP's discrete Gaussian
   drawing the 100,000 noisy numbers of people the selection needs, nothing else (values
   are drawn for the selected cells only: none here, every cell is far below threshold).
   Peer: the same window in exact mode (k-threshold and the suppression audit).

    python benchmarks/bench_release.py [--cells N] [--repeat R] [--events FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from anonymizers.policy import (
    default_policy,
    load_policy,
    parse_policy,
    render_default_policy_toml,
)
from anonymizers.stats.aggregate import PartitionAggregator
from anonymizers.stats.config import stats_specs
from anonymizers.stats.noise import GaussianNoise
from anonymizers.stats.release import ReleaseEngine

ANONSTREAM = [str(Path(sys.executable).parent / "anonstream")]
HOUR_S = 3600


def one_core() -> list[str]:
    """`taskset -c 0` when the machine has it: the preview on one core."""
    return ["taskset", "-c", "0"] if shutil.which("taskset") else []


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def exact_policy_text() -> str:
    """The shipped policy with `release.mode = "exact"`."""
    text = render_default_policy_toml()
    line = '\nmode = "dp"\n'
    assert text.count(line) == 1
    return text.replace(line, '\nmode = "exact"\n')


def preview_figures(events: Path, work: Path, repeat: int) -> None:
    exact = work / "exact.toml"
    exact.write_text(exact_policy_text(), encoding="utf-8")
    load_policy(exact)  # fails loudly if the edit broke it
    lines = events.read_bytes().splitlines()
    ceiling, dp, peer = [], [], []
    for _ in range(repeat):
        start = time.perf_counter()
        for line in events.read_bytes().splitlines():
            with contextlib.suppress(orjson.JSONDecodeError):  # the generator's malformed 1%
                orjson.loads(line)
        ceiling.append(time.perf_counter() - start)
        base = [*one_core(), *ANONSTREAM, "preview", "--events", str(events)]
        dp.append(timed([*base, "--out", str(work / "dp")]))
        peer.append(timed([*base, "--policy", str(exact), "--out", str(work / "exact")]))
    print(f"preview of {len(lines):,} events (one core), median of {repeat}:")
    print(f"  dp (shipped policy)        {statistics.median(dp):7.1f} s   target <= 30 s")
    print(f"  exact mode (peer)          {statistics.median(peer):7.1f} s")
    print(f"  read + decode (ceiling)    {statistics.median(ceiling):7.1f} s")


def window_events(cells: int, seed: int = 3) -> list[dict[str, Any]]:
    """Anonymized page views of one hour: `cells` pages, 1 to 4 people each."""
    rng = random.Random(seed)
    start = datetime(2026, 11, 30, 10, tzinfo=UTC).timestamp()
    out = []
    for page in range(cells):
        for person in range(rng.randint(1, 4)):
            at = datetime.fromtimestamp(start + rng.randrange(HOUR_S), UTC)
            out.append(
                {
                    "event_type": "page_view",
                    "occurred_at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "epoch": int(start // 86400),
                    "subject": f"s{page}-{person}",
                    "page_url": f"https://shop.example/p/{page}",
                }
            )
    return out


def window_policy(mode: str) -> Any:
    policy = default_policy().model_dump(mode="json")
    page_views = next(m for m in policy["aggregation"]["metrics"] if m["name"] == "page_views")
    page_views["windows"] = ["1h"]
    policy["aggregation"]["metrics"] = [page_views]
    policy["aggregation"]["windows"] = ["1h"]
    policy["release"]["mode"] = mode
    policy["release"]["max_windows_per_day"] = {"1h": 4}
    return parse_policy(policy)


def decide_window(events: list[dict[str, Any]], mode: str) -> tuple[float, int]:
    """Seconds `release_ready` takes for the window, and the records it released."""
    policy = window_policy(mode)
    aggregation, release = stats_specs(policy)
    aggregator = PartitionAggregator(aggregation, release, partition=0)
    partials = aggregator.process_batch(events, offsets=list(range(len(events))))
    partials += aggregator.close_all()
    engine = ReleaseEngine(aggregation, release, partitions=1, policy_version="bench")
    for record in partials:
        engine.add(record.value)
    start = time.perf_counter()
    records = engine.release_ready()
    return time.perf_counter() - start, len(records)


def decision_figures(cells: int, repeat: int) -> None:
    events = window_events(cells)
    dp, exact, ceiling = [], [], []
    released = {}
    for _ in range(repeat):
        seconds, released["dp"] = decide_window(events, "dp")
        dp.append(seconds)
        seconds, released["exact"] = decide_window(events, "exact")
        exact.append(seconds)
        start = time.perf_counter()
        GaussianNoise(10.0).add([0] * cells)
        ceiling.append(time.perf_counter() - start)
    print(f"release of one window of {cells:,} cells ({len(events):,} events), median of {repeat}:")
    print(
        f"  dp decision + records      {statistics.median(dp):7.2f} s   target <= 1 s"
        f"   ({released['dp']:,} records)"
    )
    print(
        f"  exact mode (peer)          {statistics.median(exact):7.2f} s"
        f"   ({released['exact']:,} records)"
    )
    print(f"  OpenDP draws alone (ceiling) {statistics.median(ceiling):5.2f} s   ({cells:,} draws)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--events", type=Path, help="raw events (JSONL); default: generated")
    args = parser.parse_args()
    decision_figures(args.cells, args.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        events = args.events
        if events is None:
            events = work / "t50.jsonl"
            generate = ["generate", "--to", str(events), "--rate", "50", "--duration", "7200"]
            subprocess.run(
                [*ANONSTREAM, *generate, "--seed", "11"],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        preview_figures(events, work, args.repeat)


if __name__ == "__main__":
    main()
