"""The bench's peer: the anonymize step as a competent user would write it in an afternoon
with Quix Streams (PyPI `quixstreams`, a benchmark-only dependency).

Standalone: imports only quixstreams, maxminddb, orjson and the standard library, and runs
with the bench virtualenv's interpreter (`make bench-venv`; quixstreams cannot share the
project's virtualenv). Per message: orjson decode; per event: HMAC-SHA256 of the first
identifier (user_id, cookie_id, device_id, ad_id) under a fixed key as `subject`, country and
region from the same .mmdb as the worker, IP, MAC, IMEI and the raw identifiers dropped, URLs
reduced to their path; one output message per input message (an array for an array, a small
error record for a message that is not JSON).

    python quix_peer.py --bootstrap H:P --input T --output T2 --group G --messages N
        --mmdb FILE --out FIGURES.json

Stops after N messages (or 10 s without one) and writes its figures as JSON: messages, CPU
seconds (all threads) at the first message and at the end, peak RSS.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import time
from typing import Any
from urllib.parse import urlsplit

import maxminddb
import orjson
from quixstreams import Application

KEY = b"anonstream-bench-fixed-key-0000000000"
IDENTIFIERS = ("user_id", "cookie_id", "device_id", "ad_id")
DROPPED = frozenset({"ip", "mac", "imei", *IDENTIFIERS})
URLS = ("page_url", "referrer_url", "link_url")
IDLE_TIMEOUT_S = 10.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds() -> float:
    """utime + stime of every thread of this process (as stream.local.bench.procfs)."""
    with open(f"/proc/{os.getpid()}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Anonymizer:
    """One event in, its anonymised copy out."""

    def __init__(self, mmdb: str) -> None:
        self.reader = maxminddb.open_database(mmdb)

    def event(self, event: dict[str, Any]) -> dict[str, Any]:
        out = {name: value for name, value in event.items() if name not in DROPPED}
        for name in IDENTIFIERS:
            value = event.get(name)
            if isinstance(value, str) and value:
                out["subject"] = hmac.new(KEY, value.encode(), hashlib.sha256).hexdigest()
                break
        ip = event.get("ip")
        if isinstance(ip, str):
            out["country"], out["region"] = self.place(ip)
        for name in URLS:
            url = event.get(name)
            if isinstance(url, str):
                try:
                    out[name] = urlsplit(url).path
                except ValueError:
                    out[name] = None
        return out

    def place(self, ip: str) -> tuple[str | None, str | None]:
        try:
            record: Any = self.reader.get(ip)
        except ValueError:
            return None, None
        if not isinstance(record, dict):
            return None, None
        country = (record.get("country") or {}).get("iso_code")
        subdivisions = record.get("subdivisions") or [{}]
        return country, subdivisions[0].get("iso_code")

    def message(self, value: bytes) -> bytes:
        try:
            document = orjson.loads(value)
        except orjson.JSONDecodeError:
            return b'{"error":"not_json"}'
        if isinstance(document, dict):
            return orjson.dumps(self.event(document))
        if isinstance(document, list):
            return orjson.dumps([self.event(e) for e in document if isinstance(e, dict)])
        return b'{"error":"not_an_object"}'


def main() -> int:
    parser = argparse.ArgumentParser()
    for name in ("--bootstrap", "--input", "--output", "--group", "--mmdb", "--out"):
        parser.add_argument(name, required=True)
    parser.add_argument("--messages", type=int, required=True)
    args = parser.parse_args()
    anonymizer = Anonymizer(args.mmdb)
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        auto_create_topics=False,
        use_changelog_topics=False,
        state_dir=os.path.join(os.path.dirname(args.out), f"{args.group}.state"),
    )
    source = app.topic(args.input, value_deserializer="bytes")
    sink = app.topic(args.output, value_serializer="bytes")
    figures: dict[str, Any] = {"target": args.messages, "messages": 0}

    def anonymise(value: bytes) -> bytes:
        if figures["messages"] == 0:
            figures["first_s"] = time.monotonic()
            figures["cpu_first_s"] = cpu_seconds()
        figures["messages"] += 1
        return anonymizer.message(value)

    app.dataframe(source).apply(anonymise).to_topic(sink)
    app.run(count=args.messages, timeout=IDLE_TIMEOUT_S, collect=False)
    figures.update(
        last_s=time.monotonic(),
        cpu_last_s=cpu_seconds(),
        rss_mb=peak_rss_mb(),
        complete=figures["messages"] >= args.messages,
    )
    with open(args.out, "wb") as out:
        out.write(orjson.dumps(figures))
    return 0 if figures["complete"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
