"""CPU time and peak memory of a process from /proc (Linux), stdlib only.

Imported by the peers too (`peers`, and copied in spirit by `quix_peer`, which imports no
anonstream module), so that every row is measured the same way.
"""

from __future__ import annotations

import os

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None = None) -> float:
    """utime + stime of every thread of `pid` (default: this process), in seconds."""
    with open(f"/proc/{pid or os.getpid()}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime 14, stime 15 (1-based, proc(5)).
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_mb(pid: int | None = None) -> float:
    """VmHWM (peak resident set size) of `pid` (default: this process), in MiB; 0 if absent."""
    with open(f"/proc/{pid or os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0
