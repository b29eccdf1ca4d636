"""The garbage collector of a worker: start-up objects frozen, young collections less often.

CPython's cyclic collector runs a young-generation collection every 700 net allocations of
container objects (its default threshold). An anonymize worker allocates several per event
(the decoded event, its output dict, the outcome tuple, faust's message objects) and keeps
a whole batch of them alive until the batch is sent, so with 700 the collector walks a
batch's objects up to two or three times before they die anyway, and promotes them to older
generations that it walks again. Its full collections also walk everything start-up made:
modules, the app, the policy, the memo dicts of the anonymizer chain.

`settle_after_startup(threshold)`, called once the worker is built and before it consumes:
- collects once, then `gc.freeze()`s every object that exists: the collector never walks
  them again (they are still freed by reference counting as usual);
- sets the young-generation threshold to `threshold` (older generations keep Python's
  ratios), so a collection finds most of a batch's objects already gone.

Cyclic garbage waits longer for its collection: a young collection comes after at most
`threshold` net container allocations (a few megabytes). `benchmarks/bench_chain.py`
measures the chain with these settings by default, as workers run it, and with Python's
under `--python-gc`. The gain is in long runs, where Python's settings bring full
collections (see docs/internals.md); over 100,000 events there may be none.
"""

from __future__ import annotations

import gc
from typing import Final

DEFAULT_YOUNG_THRESHOLD: Final = 10_000
"""Young-generation threshold of worker processes (CPython's default is 700)."""


def settle_after_startup(young_threshold: int = DEFAULT_YOUNG_THRESHOLD) -> None:
    """Freeze what start-up made and collect the young generation every `young_threshold`
    allocations; 0 leaves the collector exactly as Python set it up."""
    if young_threshold < 0:
        raise ValueError("young_threshold must be >= 0")
    if young_threshold == 0:
        return
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)
