"""A flat index of a MaxMind-format database's IPv4 networks: address -> data record pointer.

A database look-up walks a binary search tree of up to 128 levels through the memory-mapped
file and then decodes the whole record (names in eight languages, location, postal code...):
~12 µs on our machines, and several times that when other work has pushed the file out of the
CPU caches. Most of that is wasted on new addresses: among 100,000 random IPv4 addresses,
GeoLite2 City has only ~25,000 distinct records.

`Ipv4Index.build(path, ...)` reads the search tree once (numpy, ~1 s and ~25 MB for GeoLite2
City) and keeps, for every IPv4 network of the tree, its first address and its record
pointer, sorted. `index(address)` is then a binary search giving the pointer, under
which the caller caches the decoded record: exact, since the pointer is where the database
itself would read the record. The MaxMind DB format: https://maxmind.github.io/MaxMind-DB/.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Callable
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from anonymizers.exceptions import GeoDatabaseError

IPV4_BITS: Final = 32
_TYPECODE: Final = "I" if array("I").itemsize >= 4 else "L"
"""The smallest array type code that holds 32 bits (4 bytes on every platform we run)."""
_BLOCK_BITS: Final = 16
_BLOCKS: Final = 1 << _BLOCK_BITS
_IPV4_IN_IPV6_DEPTH: Final = 96
"""An IPv6 database keeps IPv4 under ::/96: 96 zero bits from the root."""
_MAX_IPV4: Final = (1 << 32) - 1
_U64_LIMIT: Final = 1 << 64


def _u32_view(source: Any, name: str) -> memoryview:
    view = memoryview(source)  # TypeError for an object without a buffer
    if view.itemsize != 4 or view.ndim != 1 or view.format not in ("I", "L"):
        view.release()
        raise TypeError(f"{name} must hold unsigned 32-bit values")
    return view


def _ranges_problem(starts: memoryview, pointers: memoryview, blocks: memoryview) -> str | None:
    count = len(starts)
    if count == 0 or len(pointers) != count:
        return "starts and pointers must have the same, non-zero length"
    if starts[0] != 0:
        return "the first network must start at 0.0.0.0"
    if len(blocks) != _BLOCKS + 1:
        return "blocks must have 65,537 entries"
    # sorted() of a sorted list is one linear pass in C.
    first = starts.tolist()
    if first != sorted(first):
        return "starts must be sorted"
    edges = blocks.tolist()
    if edges != sorted(edges) or edges[-1] > count:
        return "blocks must be sorted positions within starts"
    return None


class Ipv4Ranges:
    """Ipv4Ranges(starts, pointers, blocks): `Ipv4Index`'s search over three buffers of
    unsigned 32-bit values, held, not copied: `starts` the sorted first addresses of the
    networks (starts[0] == 0), `pointers` their records, `blocks` (65,537 entries) the range
    of `starts` positions per /16. `find(address)` is the pointer of the last network
    starting at or before it."""

    __slots__ = ("_blocks", "_pointers", "_starts")

    def __init__(self, starts: Any, pointers: Any, blocks: Any) -> None:
        views: list[memoryview] = []
        try:
            views.append(_u32_view(starts, "starts"))
            views.append(_u32_view(pointers, "pointers"))
            views.append(_u32_view(blocks, "blocks"))
            problem = _ranges_problem(*views)
            if problem is not None:
                raise ValueError(problem)
        except BaseException:
            for view in views:
                view.release()
            raise
        self._starts, self._pointers, self._blocks = views

    def find(self, address: int, /) -> int:
        """The record pointer of the network holding the IPv4 address (an int)."""
        if not 0 <= address <= _MAX_IPV4:
            if address < 0 or address >= _U64_LIMIT:
                raise OverflowError("an IPv4 address is 0 to 2**32 - 1")
            raise ValueError("an IPv4 address is 0 to 2**32 - 1")
        block = address >> 16
        blocks = self._blocks
        # bisect_right within the /16's networks: the one before its answer holds the address
        # (in this block, or running into it from before: starts[0] is 0).
        found = bisect.bisect_right(self._starts, address, blocks[block], blocks[block + 1])
        return self._pointers[found - 1]


class Ipv4Index:
    """IPv4 address (int) -> record pointer of the database, or None where it has no data.

    `starts` (sorted first addresses of the networks) and `pointers` (their records) are
    searched within the range of networks that start in the address's /16, which
    `blocks[address >> 16]` and the next entry give: a few probes instead of ~22. The search
    is `Ipv4Ranges`: ~1 µs of bisect and array reads.
    """

    __slots__ = ("_blocks", "_empty", "_find", "_pointers", "_starts")

    def __init__(self, starts: array[int], pointers: array[int], *, empty: int) -> None:
        self._starts = starts
        self._pointers = pointers
        self._empty = empty
        first = np.frombuffer(starts, dtype=np.uint32 if _TYPECODE == "I" else np.uint64)
        edges = np.arange(_BLOCKS + 1, dtype=np.int64) << (IPV4_BITS - _BLOCK_BITS)
        self._blocks = _packed(np.searchsorted(first, edges, side="left"))
        self._find: Callable[[int], int] = Ipv4Ranges(starts, pointers, self._blocks).find

    def __len__(self) -> int:
        return len(self._starts)

    def __call__(self, address: int) -> int | None:
        pointer = self._find(address)
        return None if pointer == self._empty else pointer

    @classmethod
    def build(cls, path: str, *, node_count: int, record_size: int, ip_version: int) -> Ipv4Index:
        """The index of the database at `path`, from its metadata's search-tree parameters.

        `GeoDatabaseError` when the tree is not a well-formed MaxMind DB search tree.
        """
        if record_size not in (24, 28, 32) or node_count <= 0:
            raise GeoDatabaseError(f"unsupported search tree: record size {record_size}")
        node_bytes = record_size // 4
        raw = np.fromfile(path, dtype=np.uint8, count=node_count * node_bytes)
        if raw.size != node_count * node_bytes:
            raise GeoDatabaseError("the geolocation database is shorter than its search tree")
        left, right = _records(raw.reshape(node_count, node_bytes), record_size)
        del raw
        root = 0
        if ip_version == 6:
            for _ in range(_IPV4_IN_IPV6_DEPTH):
                if root >= node_count:
                    break
                root = int(left[root])
        if root >= node_count:
            # The whole IPv4 space is one record (or none).
            return cls(array(_TYPECODE, [0]), array(_TYPECODE, [root]), empty=node_count)
        starts, pointers = _leaves(left, right, root, node_count)
        return cls(_packed(starts), _packed(pointers), empty=node_count)


def _packed(values: npt.NDArray[np.int64]) -> array[int]:
    """A compact array of unsigned 32-bit values (`Ipv4Ranges` searches it without numpy)."""
    packed = array(_TYPECODE)
    packed.frombytes(values.astype(np.uint32 if _TYPECODE == "I" else np.uint64).tobytes())
    return packed


def _records(
    nodes: npt.NDArray[np.uint8], record_size: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The left and right record of every node (big-endian; 28-bit records share a nibble)."""
    b = nodes.astype(np.int64)
    if record_size == 24:
        return b[:, 0] << 16 | b[:, 1] << 8 | b[:, 2], b[:, 3] << 16 | b[:, 4] << 8 | b[:, 5]
    if record_size == 28:
        left = (b[:, 3] & 0xF0) << 20 | b[:, 0] << 16 | b[:, 1] << 8 | b[:, 2]
        right = (b[:, 3] & 0x0F) << 24 | b[:, 4] << 16 | b[:, 5] << 8 | b[:, 6]
        return left, right
    left = b[:, 0] << 24 | b[:, 1] << 16 | b[:, 2] << 8 | b[:, 3]
    right = b[:, 4] << 24 | b[:, 5] << 16 | b[:, 6] << 8 | b[:, 7]
    return left, right


def _leaves(
    left: npt.NDArray[np.int64], right: npt.NDArray[np.int64], root: int, node_count: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(first address, record) of every leaf under `root`, sorted by address.

    Level by level: a record below `node_count` is a node one bit deeper, anything else a
    leaf (`node_count` itself: no data). A tree deeper than 32 bits is malformed.
    """
    found_starts: list[npt.NDArray[np.int64]] = []
    found_records: list[npt.NDArray[np.int64]] = []
    nodes = np.array([root], dtype=np.int64)
    starts = np.zeros(1, dtype=np.int64)
    for depth in range(IPV4_BITS):
        bit = 1 << (IPV4_BITS - 1 - depth)
        next_nodes: list[npt.NDArray[np.int64]] = []
        next_starts: list[npt.NDArray[np.int64]] = []
        for records, offset in ((left[nodes], 0), (right[nodes], bit)):
            child_starts = starts + offset
            leaf = records >= node_count
            found_starts.append(child_starts[leaf])
            found_records.append(records[leaf])
            next_nodes.append(records[~leaf])
            next_starts.append(child_starts[~leaf])
        nodes = np.concatenate(next_nodes)
        starts = np.concatenate(next_starts)
        if nodes.size == 0:
            break
    if nodes.size:
        raise GeoDatabaseError("the geolocation database's IPv4 tree is deeper than 32 bits")
    all_starts = np.concatenate(found_starts)
    order = np.argsort(all_starts, kind="stable")
    return all_starts[order], np.concatenate(found_records)[order]
