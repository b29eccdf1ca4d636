"""Benchmark: traffic generation speed in file mode (prints figures; not a timed test).

    python benchmarks/bench_traffic.py [--items N]

Reports items/s by wall clock and by process CPU time (the latter is what the generator
costs when the machine is shared).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stream.local.traffic import TrafficGenerator, write_files


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=500_000)
    args = parser.parse_args()
    generator = TrafficGenerator(seed=1, start=datetime(2025, 3, 1, 9, tzinfo=UTC), rate=10_000)
    with tempfile.TemporaryDirectory() as tmp:
        wall, cpu = time.perf_counter(), time.process_time()
        truth = write_files(generator, Path(tmp) / "bench.jsonl", max_items=args.items)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        size = (Path(tmp) / "bench.jsonl").stat().st_size
    print(
        f"generated {truth['items']} items ({truth['events']} valid events, "
        f"{truth['messages']['raw']} messages, {size / 1e6:.0f} MB) in {wall:.1f} s: "
        f"{truth['items'] / wall:,.0f} items/s wall, {truth['items'] / cpu:,.0f} items/s CPU"
    )


if __name__ == "__main__":
    main()
