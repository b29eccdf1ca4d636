"""Every detector on untrusted text runs in linear time (issue 18, class 2).

Adversarial text fills every free-text field of a raw event to the schema's maximum size
(URLs 8192 characters, search terms and user agent 2048, identifiers 512), and again to an
eighth of it; the chain (fresh memos, so nothing is a cache hit) and preview's masking run on
both. CPU time per KB of input is measured with `time.process_time` (best of a few runs).

What is asserted does not depend on how fast the machine is (the house measures speed in
benchmarks, not in timed tests; this test failed CI on a VM twice as slow as usual, with every
input linear): per KB, the full size costs at most `GROWTH_LIMIT` times the eighth, measured
back to back (linear work costs the same per KB; quadratic work costs eight times more, and a
quadratic pattern costs ~1 s on one such URL). A loose absolute bound, `SANITY_MS_PER_KB`
(ten times the issue's 1 ms/KB budget), catches work that is slow at every size. The figures
are printed (`pytest -s`) beside the budget.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import schemas
from anonymizers.chain import Pipeline
from anonymizers.masking import mask_event
from anonymizers.policy import default_policy
from tests.anonymizers.conftest import static_keys

BUDGET_MS_PER_KB = 1.0
"""Issue 18's budget, printed beside the figures (what a quiet development VM measures: at
most ~0.6)."""
SANITY_MS_PER_KB = 10 * BUDGET_MS_PER_KB
GROWTH_LIMIT = 2.5
"""Per-KB cost at full size over that at an eighth: ~1 when linear, ~8 when quadratic."""
FLOOR_MS_PER_KB = 0.05
"""Per-KB costs below this are compared as this (a few µs of noise on nearly free input)."""
SMALL = 8
RUNS = 5
RETRIES = 4
RETRY_PAUSE_S = 2.0

_LIMITS: dict[str, int] = {
    name: spec["maxLength"]
    for name, spec in schemas.load(schemas.RAW_EVENT_V1)["properties"].items()
    if isinstance(spec, dict) and "maxLength" in spec
}

# Units repeated to fill a field: each defeats a naive pattern (the e-mail pattern's
# backtracking on dotted digits was quadratic), or makes many small candidate matches.
ADVERSARIAL: dict[str, str] = {
    "dotted-digits": "1.",
    "spaced-digits": "1 ",
    "dashed-digits": "1-",
    "comma-digits": "1,",
    "digits": "1",
    "at-signs": "a@",
    "email-like": "a@b.",
    "local-part": "a.b-c+",
    "colons": "1:",
    "hex-colons": "aa:",
    "hex-dots": "0x1.",
    "digit-letter": "1a",
    "dot-digit-letter": "1.1a",
    "five-digits": "12345 ",
    "brackets": "(1)",
    "plus-digits": "+1 ",
    "spelled-at": "a (at) b dot ",
    "at-words": " at ",
    "iban-like": "de89 ",
    "percent": "%25",
    "zero-width": "1\u200b",
    "full-width": "\uff11\uff0e",
    "ideographic-dots": "1\u3002",
    "hex": "a",
    "spaces": " ",
}


def _fill(unit: str, size: int, prefix: str = "") -> str:
    body = unit * ((size - len(prefix)) // len(unit) + 1)
    return (prefix + body)[:size]


def _event(unit: str, divisor: int = 1) -> dict[str, object]:
    """Every free-text field filled with `unit`, to its maximum size over `divisor`."""
    url = "https://shop.example/"

    def fill(name: str, prefix: str = "") -> str:
        return _fill(unit, _LIMITS[name] // divisor, prefix)

    return {
        "event_id": "e-1",
        "event_type": "search",
        "occurred_at": "2024-05-01T10:00:00Z",
        "cookie_id": fill("cookie_id"),
        "user_id": fill("user_id"),
        "mac": fill("mac"),
        "page_url": fill("page_url", url),
        "link_url": fill("link_url", url + "c?utm_source="),
        "referrer_url": fill("referrer_url", "https://"),
        "search_terms": fill("search_terms"),
        "user_agent": fill("user_agent"),
        "browser_language": fill("browser_language"),
    }


def _input_kb(event: dict[str, object]) -> float:
    return sum(len(str(v).encode()) for v in event.values()) / 1024


def _ms_per_kb(event: dict[str, object], make: Callable[[], Pipeline]) -> tuple[float, float]:
    """CPU ms per KB of the chain (fresh memos: every value a miss) and of preview's masking."""
    chain = masking = float("inf")
    # The detectors' own CPU: a collection of the suite's heap (whatever earlier tests left)
    # must not land in a timed call (a worker freezes its start-up heap: stream.gcsettings).
    gc.collect()
    gc.disable()
    try:
        for _ in range(RUNS):
            pipeline = make()
            started = time.process_time()
            pipeline(event)
            chain = min(chain, time.process_time() - started)
            started = time.process_time()
            mask_event(event)
            masking = min(masking, time.process_time() - started)
    finally:
        gc.enable()
    kb = _input_kb(event)
    return chain * 1000 / kb, masking * 1000 / kb


@pytest.fixture(scope="module")
def make_pipeline() -> Callable[[], Pipeline]:
    policy = default_policy()

    def make() -> Pipeline:
        return Pipeline.from_policy(policy, keys=static_keys(), geo=None)

    # Warm up: lazy metadata (phone number tables) is loaded once per process, not per KB.
    make()(_event("+33 6 12 34 56 78 "))
    mask_event(_event("+33 6 12 34 56 78 "))
    return make


def _growth(name: str, make: Callable[[], Pipeline]) -> tuple[float, float, float, float]:
    """(chain, masking) ms per KB at full size, then at an eighth, back to back."""
    full = _ms_per_kb(_event(ADVERSARIAL[name]), make)
    small = _ms_per_kb(_event(ADVERSARIAL[name], SMALL), make)
    return (*full, *small)


def _problems(figures: tuple[float, float, float, float]) -> list[str]:
    chain, masking, chain_small, masking_small = figures
    out = []
    for what, big, little in (("chain", chain, chain_small), ("masking", masking, masking_small)):
        if big > SANITY_MS_PER_KB:
            out.append(f"{what} {big:.3f} ms/KB > {SANITY_MS_PER_KB}")
        ratio = max(big, FLOOR_MS_PER_KB) / max(little, FLOOR_MS_PER_KB)
        if ratio > GROWTH_LIMIT:
            out.append(f"{what} per KB x{ratio:.1f} from 1/{SMALL} to full size")
    return out


def test_every_field_at_maximum_size_costs_linear_time(
    make_pipeline: Callable[[], Pipeline], tmp_path: Path
) -> None:
    """Adversarial text at the schema's maximum sizes costs the chain, and preview's masking,
    no more per KB than at an eighth of them (module docstring), and at most the sanity bound."""
    figures = {name: _growth(name, make_pipeline) for name in ADVERSARIAL}
    width = max(map(len, figures))
    print(
        f"\nCPU ms per KB of input (issue 18's budget {BUDGET_MS_PER_KB}), best of {RUNS} runs, "
        f"at full size and at 1/{SMALL}:"
    )
    print(f"  {'input':<{width}}   chain  masking  chain/{SMALL}  masking/{SMALL}")
    for name, (chain, masking, chain_s, masking_s) in sorted(
        figures.items(), key=lambda item: -max(item[1][:2])
    ):
        print(f"  {name:<{width}}  {chain:6.3f}  {masking:7.3f}  {chain_s:8.3f}  {masking_s:10.3f}")
    (tmp_path / "figures.json").write_text(json.dumps(figures))
    # A neighbour can slow one measurement and not the next: an input that fails is measured
    # again, a few times with a pause, and fails only if it fails every time.
    problems = {name: _problems(f) for name, f in figures.items() if _problems(f)}
    for _ in range(RETRIES):
        if not problems:
            break
        time.sleep(RETRY_PAUSE_S)
        problems = {
            name: found for name in problems if (found := _problems(_growth(name, make_pipeline)))
        }
    assert not problems, problems


def test_the_measure_sees_quadratic_work() -> None:
    """The measure itself can fail: a quadratic backtracking pattern costs far more per KB at
    a maximum-size URL than at an eighth of it, past the growth limit."""
    import re

    quadratic = re.compile(r"[\w.%+\-]+@[\w\-]+(?:\.[\w\-]+)+")  # the pattern of issue 18

    def ms_per_kb(size: int) -> float:
        text = _fill("1.", size)
        best = float("inf")
        for _ in range(3):
            started = time.process_time()
            quadratic.search(text)
            best = min(best, time.process_time() - started)
        return best * 1000 / (len(text) / 1024)

    full, small = ms_per_kb(_LIMITS["page_url"]), ms_per_kb(_LIMITS["page_url"] // SMALL)
    assert _problems((full, 0.0, small, 0.0)), (full, small)
