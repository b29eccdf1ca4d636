"""`benchmarks/bench_consent.py` runs (memory and gate part, small): a benchmark that no
longer runs against the code it measures (the gate's call changed under it once) is caught
here, not by the next person who needs its figures."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parents[2] / "benchmarks" / "bench_consent.py"


def test_bench_consent_runs_and_reports_its_figures() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--skip-kafka", "--subjects", "2000"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    per_subject = re.search(r"([\d,]+) bytes per subject", done.stdout)
    assert per_subject is not None, done.stdout
    assert int(per_subject.group(1).replace(",", "")) > 0
    assert len(re.findall(r"gate per event, .*: [\d,]+ ns", done.stdout)) == 3, done.stdout
