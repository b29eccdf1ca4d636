"""A linear-algebra attacker on released records: can any suppressed count be derived?

The attacker knows every released record of a count metric and, optionally and
conservatively, the exact total of every metric window with at least k subjects (as another
metric over the same events could reveal). Treating values as exactly additive over cells
and nested windows, a suppressed quantity is revealed when its indicator vector over the
finest cells lies in the span of the known rows. This tries every combination of
subtractions at once."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .reference import BASE_S, CellKey, RefCell


def exposed(
    records: Iterable[Mapping[str, Any]],
    truth: Mapping[CellKey, RefCell],
    *,
    metric: str,
    sizes: Sequence[int],
    k: int,
    totals: bool = True,
) -> list[tuple[int, int, tuple[tuple[str, str], ...]]]:
    """Suppressed cells (size, start, dims) with fewer than k subjects that the released
    records determine; with `totals`, the attacker also knows every window total of k or more
    subjects."""
    finest = sizes[0]
    present = {(s, st, d): c for (m, s, st, d), c in truth.items() if m == metric}
    unknowns = sorted((st, d) for (s, st, d) in present if s == finest)
    column = {u: i for i, u in enumerate(unknowns)}

    def indicator(
        size: int, start: int, dims: Iterable[tuple[tuple[str, str], ...]] | None
    ) -> np.ndarray:
        row = np.zeros(len(unknowns))
        for (st, d), i in column.items():
            if start <= st < start + size and (dims is None or d in dims):
                row[i] = 1.0
        return row

    released_cells: dict[tuple[int, int], set[tuple[tuple[str, str], ...]]] = {}
    rows = []
    for record in records:
        if record["metric"] != metric:
            continue
        size = record["window_seconds"]
        start = (
            int(np.datetime64(record["window_start"].rstrip("Z"), "s").astype(np.int64)) - BASE_S
        )
        cells_here = {d for (s, st, d) in present if (s, st) == (size, start)}
        if record["cell"] == "cell":
            dims = tuple(sorted(record["dimensions"].items()))
            released_cells.setdefault((size, start), set()).add(dims)
            rows.append(indicator(size, start, [dims]))
        elif record["cell"] == "total":
            rows.append(indicator(size, start, None))
        else:
            rows.append(np.zeros(len(unknowns)))  # filled below, once the window's cells are known
            rows[-1] = indicator(size, start, cells_here - released_cells.get((size, start), set()))
    windows: dict[tuple[int, int], set[str]] = {}
    for (s, st, _), cell in present.items():
        windows.setdefault((s, st), set()).update(cell.subjects)
    for (s, st), subjects in windows.items():
        if totals and len(subjects) >= k:
            rows.append(indicator(s, st, None))
    known = np.array(rows) if rows else np.zeros((0, len(unknowns)))
    rank = int(np.linalg.matrix_rank(known)) if len(known) else 0
    targets: list[tuple[tuple[int, int, tuple[tuple[str, str], ...]], np.ndarray]] = []
    for (s, st, d), cell in present.items():
        if len(cell.subjects) < k and d not in released_cells.get((s, st), set()):
            targets.append(((s, st, d), indicator(s, st, [d])))
    return sorted(
        name for name, row in targets if np.linalg.matrix_rank(np.vstack([known, row])) == rank
    )
