"""The privacy ledger of dp mode: what each person-day has spent, per day, metric and window
size.

The release engine tells the ledger every metric window it releases. A person counts in at
most W windows of a size per metric and day (the aggregate stage drops the rest), so the
most any person-day has spent on a (day, metric, size) family is min(W, windows released)
times one window's rho, plus that many windows' threshold delta. Entries are absolute values
keyed `ledger|<day>|<metric>|<window seconds>` (`LEDGER_SCHEMA`), so a replay writes the
same entries again: the stream publishes them to the compacted `privacy.ledger` topic, and
`summarise` adds up one day against the policy's budget (`anonstream budget`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from anonymizers.policy.budget import Family, epsilon_of
from anonymizers.stats.config import ReleaseSpec
from anonymizers.stats.records import Record, escape
from anonymizers.stats.windows import US_PER_S, Window

LEDGER_SCHEMA: Final = "ledger.v1"


def day_of(epoch: int, epoch_seconds: int) -> str:
    """The UTC date (YYYY-MM-DD) a key epoch starts on."""
    return datetime.fromtimestamp(epoch * epoch_seconds, tz=UTC).strftime("%Y-%m-%d")


class Ledger:
    """The windows released per (epoch, metric, size), and the entries they make."""

    def __init__(self, release: ReleaseSpec, epoch_seconds: int) -> None:
        self._release = release
        self._epoch_us = epoch_seconds * US_PER_S
        self._epoch_seconds = epoch_seconds
        self._windows: dict[tuple[int, str, int], set[int]] = {}
        self._changed: set[tuple[int, str, int]] = set()

    def released(self, metric: str, window: Window, family: Family) -> None:
        """One metric window was released (or was, before a restart)."""
        key = (window.start_us // self._epoch_us, metric, window.size)
        self._windows.setdefault(key, set()).add(window.start_us)
        self._changed.add(key)

    def changed(self) -> list[Record]:
        """The entries of the families released since the last call."""
        budget = self._release.budget
        if budget is None:
            self._changed.clear()
            return []
        out = []
        for epoch, metric, size in sorted(self._changed):
            family = budget.family(metric, size)
            entry = ledger_entry(
                epoch=epoch,
                day=day_of(epoch, self._epoch_seconds),
                family=family,
                windows=len(self._windows[(epoch, metric, size)]),
                epsilon_budget=budget.epsilon_per_day,
                delta_budget=budget.delta_per_day,
                policy_hash=self._release.policy_hash,
            )
            out.append(Record(f"ledger|{entry['day']}|{escape(metric)}|{size}", entry))
        self._changed.clear()
        return out


def ledger_entry(
    *,
    epoch: int,
    day: str,
    family: Family,
    windows: int,
    epsilon_budget: float,
    delta_budget: float,
    policy_hash: str,
) -> dict[str, Any]:
    """One (day, metric, size) entry: what any person-day has spent on it at most."""
    counted = min(windows, family.windows_per_day)
    return {
        "schema": LEDGER_SCHEMA,
        "day": day,
        "epoch": epoch,
        "metric": family.metric,
        "window_seconds": family.window_seconds,
        "windows_released": windows,
        "windows_per_person": family.windows_per_day,
        "rho_per_window": family.rho,
        "rho_spent": counted * family.rho,
        "rho_allocated": family.rho_day,
        "threshold_delta_spent": family.delta_day * counted / family.windows_per_day,
        "epsilon_budget": epsilon_budget,
        "delta_budget": delta_budget,
        "policy_hash": policy_hash,
    }


@dataclass(frozen=True, slots=True)
class DaySummary:
    """One day of the ledger against its budget: `rho_spent` over every family, converted to
    `epsilon_spent` at half the daily delta (as the allocation does), `delta_spent` the
    thresholds' delta plus that half."""

    day: str
    entries: tuple[Mapping[str, Any], ...]
    rho_spent: float
    epsilon_spent: float
    delta_spent: float
    epsilon_budget: float
    delta_budget: float

    @property
    def within_budget(self) -> bool:
        return self.epsilon_spent <= self.epsilon_budget * (
            1 + 1e-9
        ) and self.delta_spent <= self.delta_budget * (1 + 1e-9)


def summarise(entries: Iterable[Mapping[str, Any]], day: str) -> DaySummary | None:
    """The day's entries (the latest per key) added up; None when the day has none."""
    mine = tuple(
        sorted(
            (e for e in entries if e.get("day") == day and e.get("schema") == LEDGER_SCHEMA),
            key=lambda e: (str(e["metric"]), int(e["window_seconds"])),
        )
    )
    if not mine:
        return None
    rho = sum(float(e["rho_spent"]) for e in mine)
    delta_budget = min(float(e["delta_budget"]) for e in mine)
    epsilon_budget = min(float(e["epsilon_budget"]) for e in mine)
    conversion = delta_budget / 2
    return DaySummary(
        day=day,
        entries=mine,
        rho_spent=rho,
        epsilon_spent=epsilon_of(rho, conversion) if rho else 0.0,
        delta_spent=conversion + sum(float(e["threshold_delta_spent"]) for e in mine),
        epsilon_budget=epsilon_budget,
        delta_budget=delta_budget,
    )
