"""Every detector on untrusted text runs in linear time (issue 18, class 2).

Adversarial text fills every free-text field of a raw event to the schema's maximum size
(URLs 8192 characters, search terms and user agent 2048, identifiers 512); the chain (fresh
memos, so nothing is a cache hit) and preview's masking run on it. CPU time per KB of input,
measured with `time.process_time` (best of a few runs: this machine is shared), must stay
within `BUDGET_MS_PER_KB`; a quadratic pattern costs about 1 s on one such URL, hundreds of
times the budget. The figures are printed (`pytest -s`) beside the budget.
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


def _event(unit: str) -> dict[str, object]:
    url = "https://shop.example/"
    return {
        "event_id": "e-1",
        "event_type": "search",
        "occurred_at": "2024-05-01T10:00:00Z",
        "cookie_id": _fill(unit, _LIMITS["cookie_id"]),
        "user_id": _fill(unit, _LIMITS["user_id"]),
        "mac": _fill(unit, _LIMITS["mac"]),
        "page_url": _fill(unit, _LIMITS["page_url"], url),
        "link_url": _fill(unit, _LIMITS["link_url"], url + "c?utm_source="),
        "referrer_url": _fill(unit, _LIMITS["referrer_url"], "https://"),
        "search_terms": _fill(unit, _LIMITS["search_terms"]),
        "user_agent": _fill(unit, _LIMITS["user_agent"]),
        "browser_language": _fill(unit, _LIMITS["browser_language"]),
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


def test_every_field_at_maximum_size_within_budget(
    make_pipeline: Callable[[], Pipeline], tmp_path: Path
) -> None:
    """Adversarial text at the schema's maximum sizes costs the chain, and preview's masking,
    at most the budget per KB of input each."""
    figures = {name: _ms_per_kb(_event(unit), make_pipeline) for name, unit in ADVERSARIAL.items()}
    width = max(map(len, figures))
    print(f"\nCPU per KB of input (budget {BUDGET_MS_PER_KB} ms/KB each), best of {RUNS} runs:")
    print(f"  {'input':<{width}}   chain  masking")
    for name, (chain, masking) in sorted(figures.items(), key=lambda item: -max(item[1])):
        print(f"  {name:<{width}}  {chain:6.3f}  {masking:6.3f}")
    (tmp_path / "figures.json").write_text(json.dumps(figures))
    # A shared machine's neighbours can slow every figure alike for a while (CI saw all of them
    # at twice their quiet values): an input over the budget is measured again, a few times
    # with a pause, and judged on its best figure, so only a cost that stays over fails.
    for _ in range(RETRIES):
        over = [n for n, fs in figures.items() if max(fs) > BUDGET_MS_PER_KB]
        if not over:
            break
        time.sleep(RETRY_PAUSE_S)
        for name in over:
            again = _ms_per_kb(_event(ADVERSARIAL[name]), make_pipeline)
            figures[name] = (min(figures[name][0], again[0]), min(figures[name][1], again[1]))
    over_budget = {
        n: [round(f, 3) for f in fs] for n, fs in figures.items() if max(fs) > BUDGET_MS_PER_KB
    }
    assert not over_budget, over_budget


def test_the_measure_sees_quadratic_work() -> None:
    """The measure itself can fail: a quadratic backtracking pattern on one maximum-size URL
    is far over the budget."""
    import re

    quadratic = re.compile(r"[\w.%+\-]+@[\w\-]+(?:\.[\w\-]+)+")  # the pattern of issue 18
    text = _fill("1.", _LIMITS["page_url"])
    started = time.process_time()
    quadratic.search(text)
    elapsed_ms = (time.process_time() - started) * 1000
    assert elapsed_ms / (len(text) / 1024) > BUDGET_MS_PER_KB
