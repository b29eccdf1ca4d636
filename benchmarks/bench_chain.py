# ruff: noqa: E501  (long literal tables of test data)
"""Throughput of the anonymizer chain in one process, beside a ceiling measured in the same run.

Realistic mix: many repeated IPs, subjects and user agents, some new ones; page views,
searches, link clicks and page leaves; a consent state with opted-out subjects. Prints
events/s for (a) orjson decode + encode alone (the ceiling), (b) decode + chain + encode,
(c) the chain alone, and the ratio. Target: >= 100,000 events/s for the chain on one core.

    python benchmarks/bench_chain.py [--events N] [--geo-db PATH]
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import orjson

from anonymizers.chain import Anonymized, Pipeline
from anonymizers.consent import ConsentState
from anonymizers.ip import GeoLookup
from anonymizers.keys import GeneratedKeyProvider
from anonymizers.policy import default_policy

UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
]
PAGES = [
    f"https://shop.example/category/{c}/product-{p}"
    for c in ("shoes", "bags", "hats")
    for p in range(60)
]
SEARCHES = [
    "red shoes",
    "leather bag",
    "summer hat 42",
    "gift card",
    "call 06 12 34 56 78",
    "size 38",
]


def make_events(count: int, seed: int = 7) -> list[bytes]:
    """Encoded raw events: 80% from 5,000 returning subjects/IPs, 20% new ones."""
    rng = random.Random(seed)
    subjects = [f"user-{i:06d}" for i in range(5000)]
    ips = [f"81.2.{rng.randrange(256)}.{rng.randrange(1, 255)}" for _ in range(3000)]
    ips += [f"2a02:a000:{rng.randrange(65536):x}::{rng.randrange(65536):x}" for _ in range(500)]
    out = []
    for index in range(count):
        returning = rng.random() < 0.8
        event: dict[str, object] = {
            "event_id": f"e{index}",
            "event_type": rng.choices(
                ["page_view", "search", "link_click", "page_leave"], [70, 10, 10, 10]
            )[0],
            "occurred_at": f"2024-05-01T{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{rng.randrange(1000):03d}Z",
            "ip": rng.choice(ips)
            if returning
            else f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}",
            "user_agent": rng.choice(UAS),
            "browser_language": rng.choice(["fr-FR,fr;q=0.9", "en-US,en;q=0.8", "de-DE"]),
            "page_url": rng.choice(PAGES) + rng.choice(["", "?utm_source=nl&sid=abc", "#reviews"]),
        }
        kind = rng.random()
        if kind < 0.5:
            event["cookie_id"] = rng.choice(subjects) if returning else f"new-{index}"
        elif kind < 0.7:
            event["user_id"] = rng.choice(subjects) if returning else f"newu-{index}"
        # else: cookieless visitor id from IP + UA
        if rng.random() < 0.3:
            event["referrer_url"] = rng.choice(
                ["https://www.google.com/", "https://shop.example/", "https://news.example/a?b=c"]
            )
        if event["event_type"] == "search":
            event["search_terms"] = rng.choice(SEARCHES)
        elif event["event_type"] == "link_click":
            event["link_url"] = rng.choice(PAGES)
        elif event["event_type"] == "page_leave":
            event["time_on_page_ms"] = rng.randrange(0, 4_000_000)
        out.append(orjson.dumps(event))
    return out


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--geo-db", type=Path, default=None)
    args = parser.parse_args()
    geo_path = args.geo_db
    if geo_path is None:
        from stream.preview import bundled_geo_database

        geo_path = bundled_geo_database()
    geo = GeoLookup(str(geo_path)) if geo_path else None
    policy = default_policy()
    consent = ConsentState()
    for index in range(0, 5000, 50):  # 2% of returning subjects opted out
        consent.apply(
            {"subject_type": "cookie_id", "subject_id": f"user-{index:06d}", "action": "opt_out"}
        )
    pipeline = Pipeline.from_policy(
        policy,
        keys=GeneratedKeyProvider(rotation_seconds=policy.keys.rotation_seconds),
        geo=geo,
        consent=consent,
    )
    raw = make_events(args.events)
    loads, dumps = orjson.loads, orjson.dumps

    # Warm caches once (steady state of a long-running worker), then measure.
    for line in raw[: len(raw) // 4]:
        pipeline(loads(line))

    started = time.perf_counter()
    for line in raw:
        dumps(loads(line))
    ceiling = _rate(len(raw), time.perf_counter() - started)

    decoded = [loads(line) for line in raw]
    started = time.perf_counter()
    for event in decoded:
        pipeline(event)
    chain_only = _rate(len(raw), time.perf_counter() - started)

    emitted = 0
    started = time.perf_counter()
    for line in raw:
        result = pipeline(loads(line))
        if isinstance(result, Anonymized):
            dumps(result.event)
            emitted += 1
    full = _rate(len(raw), time.perf_counter() - started)

    print(
        f"events: {len(raw):,} (emitted {emitted:,}); geo: {geo.database_type if geo else 'none'}"
    )
    print(f"ceiling  (orjson decode + encode):      {ceiling:12,.0f} events/s")
    print(
        f"pipeline (decode + chain + encode):     {full:12,.0f} events/s  ({full / ceiling:.1%} of ceiling)"
    )
    print(
        f"chain alone:                            {chain_only:12,.0f} events/s  (target >= 100,000)"
    )


if __name__ == "__main__":
    main()
