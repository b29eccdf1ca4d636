"""Which cells a window may release without revealing a suppressed one by subtraction.

Threat model. An attacker holds every released record and, conservatively, the exact total
of any metric window whose total has at least k distinct subjects (another metric over the
same events, an `other` or a total cell may give it away). Values are taken as exactly
additive: a cell of a coarse window equals the sum of that cell over its finer windows (true
whenever the contribution bounds do not bind; assuming it always only makes the attacker
stronger). Each window's record set therefore satisfies linear identities:

- per window w:          sum over cells X of c(w, X)                = t(w)
- per coarse cell (w,X): sum over child windows u of w of c(u, X)   = c(w, X)
- per coarse window w:   sum over child windows u of t(u)           = t(w)

Every unknown quantity (a suppressed cell, a total below k) appears in exactly two of these
identities, so the system is the incidence system of a graph whose vertices are identities
and whose edges are unknowns (an unknown used in a single identity hangs on a free vertex Z).
A single unknown is determined by the released values exactly when its edge is a *bridge*
of that graph (no cycle of unknowns runs through it): released values fix every vertex sum,
and the only freedom left is to push values round cycles. The rule of this module is that,
after every window's release, the graph of unknowns has no bridge: no combination of released
records, totals included, reveals any suppressed count, within a window, across metrics
sharing events, or across nested window sizes (an hour minus its released minutes).

Windows are decided in (end, size) order. Cells of coarser windows that are not decided yet
are unknowns for now; when a coarse window is decided its releases remove edges, and cells it
must keep back to avoid a bridge are suppressed as well (complementary suppression), the
smallest first. Decisions depend only on merged exact values, never on noise, so a restart
recomputes the same decisions.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field

Vertex = Hashable
_Z: Vertex = ("Z",)
_TOP: Vertex = ("T",)


@dataclass(frozen=True, slots=True)
class CellFacts:
    """What a decision needs about one cell: distinct subjects and a size for ordering
    complementary suppression (the cell's count, or its subjects)."""

    subjects: int
    size: int


@dataclass(frozen=True, slots=True)
class Decision:
    """Outcome for one metric window: cells to release and cells held back (primary:
    fewer than k subjects; complementary: held back to avoid a bridge); `other` says whether
    the sum of the held cells is released as an `other` cell. `unresolved` is True when no
    complementary choice removed every bridge and everything was held back."""

    released: frozenset[str]
    suppressed: frozenset[str]
    complementary: frozenset[str]
    other: bool = False
    unresolved: bool = False


Edge = tuple[Vertex, Vertex, bool]  # two identities and whether the unknown is protected


class _Contracted:
    """The unknowns of decided windows, for one attacker, with every 2-edge-connected part
    contracted to one vertex (union-find). Decided unknowns are never removed, so an edge
    on a cycle of decided unknowns is never a bridge again; contracting keeps the graph each
    decision searches about as small as one day's bridges, not all its unknowns."""

    __slots__ = ("_forest", "_parent")

    def __init__(self) -> None:
        self._parent: dict[Vertex, Vertex] = {}
        self._forest: list[Edge] = []

    def find(self, vertex: Vertex) -> Vertex:
        """The vertex standing for `vertex`'s contracted part."""
        parent = self._parent
        root = vertex
        while root in parent:
            root = parent[root]
        while vertex in parent and parent[vertex] != root:
            parent[vertex], vertex = root, parent[vertex]
        return root

    def map(self, edge: Edge) -> Edge:
        """`edge` between contracted parts."""
        return (self.find(edge[0]), self.find(edge[1]), edge[2])

    def edges(self) -> list[Edge]:
        """Decided unknowns that lie on no cycle of decided unknowns."""
        return [self.map(e) for e in self._forest]

    def add(self, edges: Iterable[Edge]) -> None:
        """Add decided unknowns and contract the cycles they close."""
        forest = [*self.edges(), *(self.map(e) for e in edges)]
        forest = [e for e in forest if e[0] != e[1]]
        vertices = [v for e in forest for v in e[:2]]
        found = _bridges(forest, vertices, protected_only=False)
        bridge_ids = set(found.edge_ids)
        for i, (a, b, _) in enumerate(forest):
            if i not in bridge_ids:
                ra, rb = self.find(a), self.find(b)
                if ra != rb:
                    self._parent[ra] = rb
        self._forest = [forest[i] for i in sorted(bridge_ids)]


@dataclass(slots=True)
class _Ledger:
    # Unknowns of decided windows, for the attacker who also knows every total of k or more
    # subjects, and for the attacker who knows only this metric's releases.
    with_totals: _Contracted = field(default_factory=_Contracted)
    without_totals: _Contracted = field(default_factory=_Contracted)
    # Per undecided coarse window: its cells seen below, each with the largest number of
    # distinct subjects seen in a finer window (a lower bound of its own).
    present: dict[tuple[int, int], dict[str, int]] = field(default_factory=dict)
    # Per undecided coarse window: largest total subjects of a finer window, if any.
    totals: dict[tuple[int, int], int] = field(default_factory=dict)


class SuppressionAudit:
    """Cell suppression with a no-bridge audit, for one metric, across nested window sizes.

    `sizes`: the window sizes in seconds, ascending, each dividing the next. State is kept
    per top-level (largest) window and dropped once that window is decided.

    Protected unknowns (their edge must never become a bridge): cells held back for having
    fewer than k subjects, and undecided coarse cells that may turn out below k (no finer
    window has shown them with k subjects yet). Cells held back only to protect others,
    undecided cells already known to reach k, and window totals may be determined. A bridge
    that exists even if the window releases nothing (a window total below k that is the
    difference of totals of k or more, whose window has a single cell) is not of the
    window's making and is left alone; every bridge a release would add is repaired.
    """

    def __init__(self, sizes: tuple[int, ...]) -> None:
        self._sizes = sizes
        self._top = len(sizes) - 1
        self._ledgers: dict[int, _Ledger] = {}

    def _start_at(self, level: int, start_us: int) -> int:
        span = self._sizes[level] * 1_000_000
        return start_us - start_us % span

    def _lower(self, ledger: _Ledger, level: int, start_us: int, cell: str | None) -> Vertex:
        if level == 0:
            return ("B", start_us)
        if cell is None:
            return ("C", level, start_us) if (level, start_us) in ledger.totals else _Z
        if cell in ledger.present.get((level, start_us), {}):
            return ("A", level, start_us, cell)
        return _Z  # no finer window saw this cell: no identity ties it to finer values

    def _upper(self, level: int, start_us: int, cell: str | None) -> Vertex:
        if self._top == 0:
            return _Z
        if level == self._top:
            return _TOP
        parent = self._start_at(level + 1, start_us)
        return ("A", level + 1, parent, cell) if cell is not None else ("C", level + 1, parent)

    def _edge(
        self, ledger: _Ledger, level: int, start_us: int, cell: str | None
    ) -> tuple[Vertex, Vertex]:
        return (self._lower(ledger, level, start_us, cell), self._upper(level, start_us, cell))

    def decide(
        self,
        *,
        window_seconds: int,
        start_us: int,
        cells: Mapping[str, CellFacts],
        total_subjects: int,
        k: int,
        other: bool = False,
        max_cells: int = 1,
    ) -> Decision:
        """Decide one metric window: release cells with at least `k` subjects unless a cell
        must be held back so that no protected value becomes derivable. `cells` maps the
        canonical dimensions text of each cell to its facts; `total_subjects` is the
        window's exact distinct subjects of this metric. With `other`, the held cells are
        released as one `other` cell when it provably has k subjects: at least
        max(largest held cell, ceil(held subjects / min(max_cells, held cells)),
        total - released subjects), `max_cells` being M (a subject is in at most M cells)."""
        level = self._sizes.index(window_seconds)
        top_start = self._start_at(self._top, start_us)
        ledger = self._ledgers.setdefault(top_start, _Ledger())
        names = sorted(cells)
        # Windows above this one are undecided: their cells and totals are unknowns for now.
        ancestors = [
            (lvl, self._start_at(lvl, start_us)) for lvl in range(level + 1, self._top + 1)
        ]
        pending = self._undecided_ancestors(ledger, ancestors, cells, total_subjects, k)
        # Cells a finer window saw that this window lacks (its own bound M dropped them):
        # never released, so unknowns to the attacker as well; their value is no secret.
        absent = [
            (*self._edge(ledger, level, start_us, c), False)
            for c in sorted(ledger.present.get((level, start_us), {}))
            if c not in cells
        ]
        pending += absent
        own_total = self._edge(ledger, level, start_us, None)
        cell_edge = {c: self._edge(ledger, level, start_us, c) for c in names}
        problem = _Problem(
            cells, k=k, views=_views(ledger, pending, own_total, cell_edge, total_subjects >= k)
        )
        held, complementary, unresolved = problem.repair()
        # An `other` cell reveals this window's total to the attacker who knows only this
        # metric: release it only if that adds no bridge.
        with_other = (
            other
            and not unresolved
            and _other_provable(cells, held, total_subjects, k=k, max_cells=max_cells)
            and not problem.new_bridges(problem.views[0], held, set(), drop_last=True)[2]
        )
        held_edges = [
            (*cell_edge[c], c in problem.primary or unresolved) for c in names if c in held
        ]
        held_edges += absent
        ledger.without_totals.add(held_edges if with_other else [*held_edges, (*own_total, False)])
        ledger.with_totals.add(
            held_edges if total_subjects >= k else [*held_edges, (*own_total, False)]
        )
        if level == self._top:
            del self._ledgers[top_start]
        else:
            ledger.present.pop((level, start_us), None)
            ledger.totals.pop((level, start_us), None)
        return Decision(
            released=frozenset(c for c in names if c not in held),
            suppressed=frozenset(held),
            complementary=frozenset() if unresolved else frozenset(complementary),
            other=with_other,
            unresolved=unresolved,
        )

    def _undecided_ancestors(
        self,
        ledger: _Ledger,
        ancestors: list[tuple[int, int]],
        cells: Mapping[str, CellFacts],
        total_subjects: int,
        k: int,
    ) -> list[Edge]:
        """Note this window's cells and total in its undecided ancestors, and return their
        cells and totals as edges (a cell protected while it has fewer than k subjects)."""
        for a in ancestors:
            seen = ledger.present.setdefault(a, {})
            for c, facts in cells.items():
                seen[c] = max(seen.get(c, 0), facts.subjects)
            ledger.totals[a] = max(ledger.totals.get(a, 0), total_subjects)
        pending: list[Edge] = []
        for lvl, a_start in ancestors:
            seen = ledger.present[(lvl, a_start)]
            for c in sorted(seen):
                pending.append((*self._edge(ledger, lvl, a_start, c), seen[c] < k))
            pending.append((*self._edge(ledger, lvl, a_start, None), False))
        return pending

    def forget_before(self, top_start_us: int) -> None:
        """Drop state of top-level windows starting before `top_start_us`."""
        for start in [s for s in self._ledgers if s < top_start_us]:
            del self._ledgers[start]


_View = tuple[list[Edge], dict[str, tuple[Vertex, Vertex]], list[Vertex]]
"""One attacker's graph: the fixed edges, each cell's edge, the roots searched from."""


def _views(
    ledger: _Ledger,
    pending: list[Edge],
    own_total: tuple[Vertex, Vertex],
    cell_edge: Mapping[str, tuple[Vertex, Vertex]],
    total_known: bool,
) -> list[_View]:
    """Two attackers: one who knows only what this metric released, one who also knows
    every total of k or more subjects (from another metric over the same events)."""
    views = []
    for graph, own_known in ((ledger.without_totals, False), (ledger.with_totals, total_known)):
        fixed = [*graph.edges(), *(graph.map(e) for e in pending)]
        if not own_known:
            fixed.append(graph.map((*own_total, False)))  # last: `other` may reveal it
        mapped = {c: graph.map((*e, False))[:2] for c, e in cell_edge.items()}
        roots = [v for e in mapped.values() for v in e] + [graph.find(v) for v in own_total]
        views.append((fixed, mapped, roots))
    return views


def _other_provable(
    cells: Mapping[str, CellFacts], held: set[str], total_subjects: int, *, k: int, max_cells: int
) -> bool:
    """The held cells' sum provably has k subjects (see `SuppressionAudit.decide`)."""
    if not held:
        return False
    held_subjects = [cells[c].subjects for c in held]
    bound = max(
        max(held_subjects),
        -(-sum(held_subjects) // min(max_cells, len(held))),
        total_subjects - sum(f.subjects for c, f in cells.items() if c not in held),
    )
    return bound >= k


class _Problem:
    """One window's decision: which cells to hold so that no attacker's graph has a bridge
    its releases made."""

    def __init__(self, cells: Mapping[str, CellFacts], *, k: int, views: list[_View]) -> None:
        self.names = sorted(cells)
        self.primary = {c for c in self.names if cells[c].subjects < k}
        self.candidates = sorted(
            (c for c in self.names if c not in self.primary),
            key=lambda c: (cells[c].subjects, cells[c].size, c),
        )
        self.views = views

    def new_bridges(
        self, view: _View, kept: set[str], baseline: set[object], *, drop_last: bool = False
    ) -> tuple[_Bridges, list[object], list[object]]:
        """The bridges of `view` with the cells `kept` held, their keys, and those keys not
        in `baseline`."""
        fixed, mapped, roots = view
        if drop_last:
            fixed = fixed[:-1]
        cells_kept = [c for c in self.names if c in kept]
        edges = [*fixed, *((*mapped[c], c in self.primary) for c in cells_kept)]
        found = _bridges(edges, roots)
        keys = _edge_keys(cells_kept, found, len(fixed))
        return found, keys, [key for key in keys if key not in baseline]

    def repair(self) -> tuple[set[str], list[str], bool]:
        """(held cells, complementary ones in the order chosen, unresolved): cells below k,
        then the smallest cell that breaks a new bridge, until none is left; everything
        when no choice can."""
        # With totals known, a bridge present even when this window releases nothing is not
        # of its making (a total below k that is a difference of totals of k or more, over a
        # window with a single cell): only bridges its releases would add are repaired.
        baselines = [set(self.new_bridges(view, set(self.names), set())[1]) for view in self.views]
        held = set(self.primary)
        complementary: list[str] = []
        while True:
            bridged, choice = self._next_choice(held, baselines)
            if not bridged:
                return held, complementary, False
            if choice is None:
                return set(self.names), complementary, True
            held.add(choice)
            complementary.append(choice)

    def _next_choice(self, held: set[str], baselines: list[set[object]]) -> tuple[bool, str | None]:
        """(a new bridge is left, the next cell to hold back to break it, None if none does)."""
        for view, base_keys in zip(self.views, baselines, strict=True):
            found, all_keys, keys = self.new_bridges(view, held, base_keys)
            if not keys:
                continue
            found.bridges = [
                b for b, key in zip(found.bridges, all_keys, strict=True) if key in keys
            ]
            return True, _repair(found, [c for c in self.candidates if c not in held], view[1])
        return False, None


@dataclass(slots=True)
class _Bridges:
    bridges: list[tuple[Vertex, Vertex]]  # (parent side, child side) of each bridge
    edge_ids: list[int]  # index in the edge list of each bridge
    tin: dict[Vertex, int]
    tout: dict[Vertex, int]
    component: dict[Vertex, int]


def _bridges(
    edges: list[Edge], roots: Iterable[Vertex], *, protected_only: bool = True
) -> _Bridges:
    """Bridges (protected ones only, by default) of the multigraph `edges` in the components
    holding `roots` (iterative Tarjan; parallel edges are distinct edges, so two unknowns
    between the same identities protect each other)."""
    adjacency: dict[Vertex, list[tuple[Vertex, int]]] = {}
    for eid, (a, b, _) in enumerate(edges):
        adjacency.setdefault(a, []).append((b, eid))
        adjacency.setdefault(b, []).append((a, eid))
    tin: dict[Vertex, int] = {}
    low: dict[Vertex, int] = {}
    tout: dict[Vertex, int] = {}
    component: dict[Vertex, int] = {}
    found: list[tuple[Vertex, Vertex]] = []
    ids: list[int] = []
    timer = 0
    for root in roots:
        if root in tin or root not in adjacency:
            continue
        comp = len(tin)
        tin[root] = low[root] = timer
        component[root] = comp
        timer += 1
        stack = [(root, -1, iter(adjacency[root]))]
        while stack:
            vertex, parent_edge, neighbours = stack[-1]
            advanced = False
            for other, eid in neighbours:
                if eid == parent_edge:
                    continue
                if other in tin:
                    low[vertex] = min(low[vertex], tin[other])
                else:
                    tin[other] = low[other] = timer
                    component[other] = comp
                    timer += 1
                    stack.append((other, eid, iter(adjacency[other])))
                    advanced = True
                    break
            if advanced:
                continue
            stack.pop()
            tout[vertex] = timer - 1
            if stack:
                parent = stack[-1][0]
                low[parent] = min(low[parent], low[vertex])
                if low[vertex] > tin[parent] and (edges[parent_edge][2] or not protected_only):
                    found.append((parent, vertex))
                    ids.append(parent_edge)
    return _Bridges(found, ids, tin, tout, component)


def _edge_keys(cells: list[str], found: _Bridges, n_fixed: int) -> list[object]:
    """Stable names of the bridges found: the index of a fixed edge, or the cell's name."""
    return [i if i < n_fixed else ("cell", cells[i - n_fixed]) for i in found.edge_ids]


def _repair(
    found: _Bridges, candidates: list[str], cell_edge: Mapping[str, tuple[Vertex, Vertex]]
) -> str | None:
    """The first (smallest) candidate whose edge puts a bridge on a cycle; failing that, the
    first that at least extends a bridge's hanging side; None when no candidate touches any."""
    tin, tout, component = found.tin, found.tout, found.component

    def inside(vertex: Vertex, child: Vertex) -> bool:
        t = tin.get(vertex)
        return t is not None and tin[child] <= t <= tout[child]

    for _, child in found.bridges:
        comp = component[child]
        for cell in candidates:
            a, b = cell_edge[cell]
            if (
                component.get(a) == comp
                and component.get(b) == comp
                and inside(a, child) != inside(b, child)
            ):
                return cell
    for _, child in found.bridges:
        comp = component[child]
        for cell in candidates:
            a, b = cell_edge[cell]
            ends_in = [component.get(v) == comp for v in (a, b)]
            if sum(ends_in) == 1:
                return cell
    return None
