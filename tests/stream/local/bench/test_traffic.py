"""The bench's input: items counted per message, events batched 50 at a time."""

from __future__ import annotations

import orjson
import pytest

from stream.local.bench.traffic import batch_lines, count_items

MAX = 1000


@pytest.mark.parametrize(
    ("value", "items"),
    [
        pytest.param(b'{"event_type": "page_view"}', 1, id="object"),
        pytest.param(b'[{"a": 1}, {"a": 2}, {"a": 3}]', 3, id="array"),
        pytest.param(b"[1, 2]", 2, id="array-of-non-objects"),
        pytest.param(b"[]", 1, id="empty-array"),
        pytest.param(b"{not json", 1, id="not-json"),
        pytest.param(b"\xff\xfe", 1, id="not-utf8"),
        pytest.param(b"42", 1, id="scalar"),
        pytest.param(b"[" + b",".join([b"{}"] * 600) + b"]", 1, id="too-large-array"),
    ],
)
def test_count_items(value: bytes, items: int) -> None:
    """An array counts its length (at least 1), anything else 1, an oversized message 1."""
    assert count_items(value, max_bytes=MAX) == items


def test_batch_lines_keeps_every_item_in_order() -> None:
    """Objects are joined 50 per array in order; every other line stays a message alone."""
    objects = [orjson.dumps({"n": n}) for n in range(120)]
    lines = [*objects[:60], b"{broken", *objects[60:], b"[1]"]
    messages = batch_lines(lines, max_bytes=10**6)
    arrays = [orjson.loads(m) for m in messages if m.startswith(b"[{")]
    assert [len(a) for a in arrays] == [50, 50, 20]
    assert [e["n"] for a in arrays for e in a] == list(range(120))
    assert b"{broken" in messages and b"[1]" in messages
    assert sum(count_items(m, max_bytes=10**6) for m in messages) == 122


def test_batch_lines_keeps_arrays_under_the_size_limit() -> None:
    """An oversized object stays alone (as the worker dead-letters it); arrays close early
    rather than exceed the limit, so batching changes no item count."""
    small = [orjson.dumps({"n": n, "pad": "x" * 80}) for n in range(10)]
    huge = orjson.dumps({"pad": "y" * 2000})
    messages = batch_lines([*small[:5], huge, *small[5:]], max_bytes=500)
    assert huge in messages
    assert all(len(m) <= 500 for m in messages if m != huge)
    items = sum(count_items(m, max_bytes=500) for m in messages)
    assert items == 11
