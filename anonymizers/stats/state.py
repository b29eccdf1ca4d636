"""Compact per-subject state of open windows (numpy), used by `anonymizers.stats.aggregate`.

Subjects are interned per epoch to dense int ids through a 128-bit digest of the pseudonym
(SHA-256, first 16 bytes), found through an open-addressing numpy table (about 28 bytes per
subject).
A (subject, cell) pair is one uint64 key `subject_id << 32 | cell_id`; sorting by key groups
a subject's pairs together. New entries are appended to a log in arrival order and merged
into sorted arrays by `compact`, which also applies the contribution bounds:

- at most `bound_l` per (subject, cell): counts saturate at L, summary cells keep the first L
  values in arrival order;
- at most `bound_m` cells per subject: the first M cells by first arrival are kept, later
  ones dropped for good (they can never be admitted, since bounds count from the window start).

Both bounds are defined by arrival order only, so processing the same events in the same
order gives the same state however they are batched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
U32 = npt.NDArray[np.uint32]
CELL_MASK = np.uint64(0xFFFF_FFFF)
SHIFT = np.uint64(32)
_EMPTY = -1


class AdmittedWindows:
    """AdmittedWindows(cap): the windows of one size each subject counts in, one epoch (dp's
    W): a subject's first `cap` distinct windows count, in arrival order; later ones are
    refused for good.

    Compact: the first `min(cap, SLOTS)` windows of each subject are int32 window numbers in a
    dense numpy row per subject id (4 bytes a slot, -1 empty); only a subject past those
    (possible when cap > SLOTS: minute windows) has a Python list of the rest. A dict of lists
    per subject cost about 150 bytes each and doubled the aggregate state per subject.
    """

    SLOTS = 4

    __slots__ = ("_cap", "_more", "_rows")

    def __init__(self, cap: int) -> None:
        if cap < 1:
            raise ValueError("cap must be >= 1")
        self._cap = cap
        self._rows: npt.NDArray[np.int32] = np.full((0, min(cap, self.SLOTS)), _EMPTY, np.int32)
        self._more: dict[int, list[int]] = {}

    @property
    def nbytes(self) -> int:
        """Bytes of the dense rows (the overflow lists are Python objects)."""
        return int(self._rows.nbytes)

    def admit(self, sids: I64, window: int) -> npt.NDArray[np.bool_]:
        """Which of `sids` (subject ids, repeats allowed) count in window number `window`
        (0 to 2**31 - 1; a 31-day epoch has 44,640 minutes): True for a subject that counts
        in it already or has room for it (it is then recorded), False for one whose `cap`
        windows are all others."""
        if not 0 <= window <= np.iinfo(np.int32).max:
            raise ValueError("window number out of range")
        subjects = np.unique(sids)
        if not len(subjects):
            return np.ones(0, bool)
        self._grow(int(subjects[-1]) + 1)
        rows = self._rows[subjects]
        known = (rows == window).any(axis=1)
        used = (rows != _EMPTY).sum(axis=1)
        width = rows.shape[1]
        room = ~known & (used < width)
        self._rows[subjects[room], used[room]] = window
        full = ~known & (used == width)
        if not full.any():
            return np.ones(len(sids), bool)
        refused = [sid for sid in subjects[full].tolist() if not self._admit_more(sid, window)]
        if not refused:
            return np.ones(len(sids), bool)
        return ~np.isin(sids, np.array(refused, np.int64))

    def _admit_more(self, sid: int, window: int) -> bool:
        """A subject whose slots are full: past them, up to cap windows in its list."""
        more = self._more.get(sid)
        if more is not None and window in more:
            return True
        held = self._rows.shape[1] + (len(more) if more is not None else 0)
        if held >= self._cap:
            return False
        if more is None:
            self._more[sid] = [window]
        else:
            more.append(window)
        return True

    def _grow(self, size: int) -> None:
        have = len(self._rows)
        if size > have:
            extra = max(size, have * 3 // 2, 1024) - have
            pad = np.full((extra, self._rows.shape[1]), _EMPTY, np.int32)
            self._rows = np.concatenate([self._rows, pad])


class SubjectIndex:
    """Dense ids for 128-bit subject digests (one index per pseudonym epoch).

    Digests live in dense arrays indexed by id; an open-addressing table of int32 ids (load at
    most 1/2, linear probing on the digest's high bits) finds them: about 28 bytes per
    subject. Two different pseudonyms share an id only if their 128-bit digests
    collide (probability about n^2 / 2^129: 1e-25 for ten million subjects), so distinct
    counts are exact in the same sense as the pseudonyms themselves.
    """

    __slots__ = ("_hi", "_lo", "_n", "_slots")

    def __init__(self, capacity: int = 1024) -> None:
        self._slots: npt.NDArray[np.int32] = np.full(capacity, _EMPTY, np.int32)
        self._hi: U64 = np.zeros(capacity // 2, np.uint64)
        self._lo: U64 = np.zeros(capacity // 2, np.uint64)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    @property
    def nbytes(self) -> int:
        """Bytes held by the table's arrays."""
        return int(self._slots.nbytes + self._hi.nbytes + self._lo.nbytes)

    def _probe(self, hi: U64, lo: U64) -> tuple[I64, I64]:
        """Ids of the keys (-1 where absent) and, for absent ones, the empty slot found."""
        mask = np.int64(len(self._slots) - 1)
        slots = (hi & np.uint64(mask)).astype(np.int64)
        found = np.full(len(hi), _EMPTY, np.int64)
        pending = np.arange(len(hi))
        while len(pending):
            s = slots[pending]
            ids = self._slots[s].astype(np.int64)
            empty = ids == _EMPTY
            safe = np.where(empty, 0, ids)
            match = ~empty & (self._hi[safe] == hi[pending]) & (self._lo[safe] == lo[pending])
            found[pending[match]] = ids[match]
            pending = pending[~empty & ~match]
            slots[pending] = (slots[pending] + 1) & mask
        return found, slots

    def _place(self, hi: U64, ids: I64) -> None:
        """Put ids of digests known to be absent into empty slots."""
        mask = np.int64(len(self._slots) - 1)
        slots = (hi & np.uint64(mask)).astype(np.int64)
        pending = np.arange(len(hi))
        while len(pending):
            s = slots[pending]
            free = self._slots[s] == _EMPTY
            cand = pending[free]
            _, first = np.unique(s[free], return_index=True)
            winners = cand[first]
            self._slots[slots[winners]] = ids[winners].astype(np.int32)
            done = np.zeros(len(hi), bool)
            done[winners] = True
            busy = pending[~free]
            slots[busy] = (slots[busy] + 1) & mask
            pending = pending[~done[pending]]

    def _reserve(self, needed: int) -> None:
        if needed > len(self._hi):
            size = max(needed, len(self._hi) * 3 // 2)
            self._hi = np.concatenate([self._hi, np.zeros(size - len(self._hi), np.uint64)])
            self._lo = np.concatenate([self._lo, np.zeros(size - len(self._lo), np.uint64)])
        capacity = len(self._slots)
        while needed * 2 > capacity:
            capacity *= 2
        if capacity != len(self._slots):
            self._slots = np.full(capacity, _EMPTY, np.int32)
            self._place(self._hi[: self._n], np.arange(self._n, dtype=np.int64))

    def ids_for(self, hi: U64, lo: U64) -> I64:
        """Ids of the digests `(hi, lo)`, inserting new ones in order of first appearance."""
        if not len(hi):
            return np.zeros(0, np.int64)
        order = np.lexsort((lo, hi))
        sh, sl = hi[order], lo[order]
        head = np.ones(len(order), bool)
        head[1:] = (sh[1:] != sh[:-1]) | (sl[1:] != sl[:-1])
        starts = np.flatnonzero(head)
        uh, ul, first_pos = sh[starts], sl[starts], order[starts]
        inverse = np.empty(len(order), np.int64)
        inverse[order] = np.cumsum(head) - 1
        found, _ = self._probe(uh, ul)
        absent = np.flatnonzero(found == _EMPTY)
        if len(absent):
            absent = absent[np.argsort(first_pos[absent], kind="stable")]
            self._reserve(self._n + len(absent))
            new_ids = self._n + np.arange(len(absent), dtype=np.int64)
            self._hi[new_ids] = uh[absent]
            self._lo[new_ids] = ul[absent]
            self._n += len(absent)
            self._place(uh[absent], new_ids)
            found[absent] = new_ids
        return found[inverse]

    def find(self, hi: int, lo: int) -> int | None:
        """The id of one digest, or None."""
        found, _ = self._probe(np.array([hi], np.uint64), np.array([lo], np.uint64))
        got = int(found[0])
        return None if got == _EMPTY else got


def _group_heads(sorted_keys: U64) -> npt.NDArray[np.bool_]:
    head = np.ones(len(sorted_keys), bool)
    head[1:] = sorted_keys[1:] != sorted_keys[:-1]
    return head


def _admit_cells(unique_keys: U64, first_pos: I64, bound_m: int) -> npt.NDArray[np.bool_]:
    """For pairs sorted by key, whether each is among its subject's first M cells by first
    arrival (`first_pos`)."""
    subjects = unique_keys >> SHIFT
    order = np.lexsort((first_pos, subjects))
    s = subjects[order]
    head = np.ones(len(s), bool)
    head[1:] = s[1:] != s[:-1]
    start = np.maximum.accumulate(np.where(head, np.arange(len(s)), 0))
    rank = np.arange(len(s)) - start
    keep = np.empty(len(s), bool)
    keep[order] = rank < bound_m
    return keep


def _pack(canonical: U64) -> tuple[npt.NDArray[np.unsignedinteger[Any]], int]:
    """Pack sorted canonical keys (`subject << 32 | cell`) as `subject << shift | cell`, with
    `shift` the bits the largest cell id needs, in uint32 when everything fits. The order of
    keys is unchanged."""
    if not len(canonical):
        return np.zeros(0, np.uint32), 1
    cells = canonical & CELL_MASK
    shift = max(1, int(cells.max()).bit_length())
    subjects = canonical >> SHIFT
    packed = (subjects << np.uint64(shift)) | cells
    if int(packed[-1]) < 2**32:  # sorted: the last key is the largest
        return packed.astype(np.uint32), shift
    return packed, shift


class _Packed:
    """Keys packed by `_pack`: subjects and cells of each entry, and the canonical keys."""

    keys: npt.NDArray[np.unsignedinteger[Any]]
    shift: int

    def subject_ids(self) -> I64:
        """Subject id of each entry."""
        return (self.keys >> self.keys.dtype.type(self.shift)).astype(np.int64)

    def cell_ids(self) -> I64:
        """Cell id of each entry."""
        return (self.keys & self.keys.dtype.type((1 << self.shift) - 1)).astype(np.int64)

    def canonical(self) -> U64:
        """Keys as `subject << 32 | cell` (uint64)."""
        return (self.subject_ids().astype(np.uint64) << SHIFT) | self.cell_ids().astype(np.uint64)


@dataclass(slots=True)
class PairStore(_Packed):
    """(subject, cell) pairs of one window and cell space, with counts saturating at L."""

    keys: npt.NDArray[np.unsignedinteger[Any]]
    counts: npt.NDArray[np.unsignedinteger[Any]]
    log: list[U64]
    shift: int = 1
    log_len: int = 0

    @classmethod
    def empty(cls) -> PairStore:
        """A store with no pairs."""
        return cls(np.zeros(0, np.uint32), np.zeros(0, np.uint8), [])

    def add(self, keys: U64, *, bound_l: int, bound_m: int) -> None:
        """Append canonical pair keys in arrival order; compacts when the log outgrows half
        the state."""
        self.log.append(keys)
        self.log_len += len(keys)
        if self.log_len > max(4096, len(self.keys) // 2):
            self.compact(bound_l=bound_l, bound_m=bound_m)

    def compact(self, *, bound_l: int, bound_m: int) -> None:
        """Merge the log into the sorted arrays, applying L and M."""
        if not self.log:
            return
        new = np.concatenate(self.log)
        keys = np.concatenate([self.canonical(), new])
        weights = np.concatenate([self.counts.astype(np.int64), np.ones(len(new), np.int64)])
        order = np.argsort(keys, kind="stable")
        sk = keys[order]
        starts = np.flatnonzero(_group_heads(sk))
        sums = np.add.reduceat(weights[order], starts)
        unique_keys = sk[starts]
        keep = _admit_cells(unique_keys, order[starts].astype(np.int64), bound_m)
        self.keys, self.shift = _pack(unique_keys[keep])
        dtype = np.uint8 if bound_l < 256 else np.uint16
        self.counts = np.minimum(sums[keep], bound_l).astype(dtype)
        self.log = []
        self.log_len = 0

    def remove_subject(self, subject_id: int) -> int:
        """Drop every pair of one subject (log included); returns how many entries went."""
        before = len(self.keys) + self.log_len
        keep = self.subject_ids() != subject_id
        self.keys, self.counts = self.keys[keep], self.counts[keep]
        sid = np.uint64(subject_id)
        self.log = [chunk[(chunk >> SHIFT) != sid] for chunk in self.log]
        self.log_len = sum(len(c) for c in self.log)
        return before - len(self.keys) - self.log_len

    @property
    def nbytes(self) -> int:
        """Bytes held by arrays."""
        return int(self.keys.nbytes + self.counts.nbytes + sum(c.nbytes for c in self.log))


@dataclass(slots=True)
class ValueStore(_Packed):
    """(subject, cell, value) entries of one window and summary space: at most L values per
    (subject, cell), first M cells per subject; values are already clamped."""

    keys: npt.NDArray[np.unsignedinteger[Any]]
    values: U32
    log_keys: list[U64]
    log_values: list[U32]
    shift: int = 1
    log_len: int = 0

    @classmethod
    def empty(cls) -> ValueStore:
        """A store with no entries."""
        return cls(np.zeros(0, np.uint32), np.zeros(0, np.uint32), [], [])

    def add(self, keys: U64, values: U32, *, bound_l: int, bound_m: int) -> None:
        """Append entries in arrival order; compacts when the log outgrows half the state."""
        self.log_keys.append(keys)
        self.log_values.append(values)
        self.log_len += len(keys)
        if self.log_len > max(4096, len(self.keys) // 2):
            self.compact(bound_l=bound_l, bound_m=bound_m)

    def compact(self, *, bound_l: int, bound_m: int) -> None:
        """Merge the log into the sorted arrays, applying L and M."""
        if not self.log_keys:
            return
        keys = np.concatenate([self.canonical(), *self.log_keys])
        values = np.concatenate([self.values, *self.log_values])
        order = np.argsort(keys, kind="stable")
        sk, sv = keys[order], values[order]
        head = _group_heads(sk)
        starts = np.flatnonzero(head)
        group = np.cumsum(head) - 1
        position = np.arange(len(sk)) - starts[group]
        pair_keep = _admit_cells(sk[starts], order[starts].astype(np.int64), bound_m)
        keep = (position < bound_l) & pair_keep[group]
        self.keys, self.shift = _pack(sk[keep])
        self.values = sv[keep]
        self.log_keys, self.log_values = [], []
        self.log_len = 0

    def remove_subject(self, subject_id: int) -> int:
        """Drop every entry of one subject (log included); returns how many went."""
        before = len(self.keys) + self.log_len
        keep = self.subject_ids() != subject_id
        self.keys, self.values = self.keys[keep], self.values[keep]
        sid = np.uint64(subject_id)
        masks = [(k >> SHIFT) != sid for k in self.log_keys]
        self.log_keys = [k[m] for k, m in zip(self.log_keys, masks, strict=True)]
        self.log_values = [v[m] for v, m in zip(self.log_values, masks, strict=True)]
        self.log_len = sum(len(k) for k in self.log_keys)
        return before - len(self.keys) - self.log_len

    @property
    def nbytes(self) -> int:
        """Bytes held by arrays."""
        logs = sum(k.nbytes for k in self.log_keys) + sum(v.nbytes for v in self.log_values)
        return int(self.keys.nbytes + self.values.nbytes + logs)
