"""The allowlist and the echo guard."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anonymizers.allowlist import Allowlist, echo_needles, strip_echoes
from anonymizers.policy import OutputConfig


def test_only_allowlisted_non_null_fields() -> None:
    """Fields not named, and None values, never reach the output."""
    unit = Allowlist(
        OutputConfig(fields=("event_type", "occurred_at", "epoch", "subject", "country"))
    )
    out, _ = unit.build(
        {
            "event_type": "page_view",
            "occurred_at": "t",
            "epoch": 1,
            "subject": "s",
            "country": None,
            "region": "ENG",
            "ip": "81.2.69.160",
            "anything": 1,
        }
    )
    assert out == {"event_type": "page_view", "occurred_at": "t", "epoch": 1, "subject": "s"}


@given(st.dictionaries(st.text(min_size=1, max_size=12), st.integers(), max_size=20))
def test_unknown_fields_never_pass(extra: dict[str, int]) -> None:
    """Whatever else a candidate holds, the output keys are a subset of the allowlist."""
    unit = Allowlist(OutputConfig())
    out, _ = unit.build({**extra, "event_type": "page_view"})
    assert set(out) <= set(OutputConfig().fields)


ECHO_CASES = [
    pytest.param(
        "https://shop.example/u/alice-1234/cart",
        ["alice-1234"],
        "https://shop.example/u/[id]/cart",
        id="plain",
    ),
    pytest.param(
        "https://shop.example/u/ALICE-1234",
        ["alice-1234"],
        "https://shop.example/u/[id]",
        id="case",
    ),
    pytest.param(
        "https://shop.example/u/al%69ce-1234",
        ["alice-1234"],
        "https://shop.example/u/[id]",
        id="percent-encoded",
    ),
    pytest.param(
        "https://shop.example/u/alice+1234",
        ["alice 1234"],
        "https://shop.example/u/[id]",
        id="plus",
    ),
    pytest.param(
        "https://shop.example/u/alice%201234",
        ["alice 1234"],
        "https://shop.example/u/[id]",
        id="percent-20",
    ),
    pytest.param(
        "https://shop.example/a/6ba7b8109dad11d180b400c04fd430c8",
        ["6BA7B810-9DAD-11D1-80B4-00C04FD430C8"],
        "https://shop.example/a/[id]",
        id="guid-without-dashes",
    ),
    pytest.param(
        "https://shop.example/m/0011.22aa.bbcc",
        ["00:11:22:AA:BB:CC"],
        "https://shop.example/m/[id]",
        id="mac-dotted",
    ),
    pytest.param(
        "https://shop.example/o/42/view",
        ["42"],
        "https://shop.example/o/[id]/view",
        id="short-segment",
    ),
    pytest.param(
        "https://shop.example/o/1142/view",
        ["42"],
        "https://shop.example/o/1142/view",
        id="short-inside",
    ),
    pytest.param(
        "https://shop.example/h/0xc0a80101",
        ["192.168.1.1"],
        "https://shop.example/h/[id]",
        id="ip-hex",
    ),
    pytest.param(
        "https://shop.example/h/0300.0250.01.01",
        ["192.168.1.1"],
        "https://shop.example/h/[id]",
        id="ip-octal",
    ),
    pytest.param(
        "https://shop.example/h/3232235777",
        ["::ffff:192.168.1.1"],
        "https://shop.example/h/[id]",
        id="ip-number-mapped",
    ),
    pytest.param(
        "https://shop.example/u/bob", ["alice-1234"], "https://shop.example/u/bob", id="absent"
    ),
]


@pytest.mark.parametrize(("value", "needles", "expected"), ECHO_CASES)
def test_strip_echoes(value: str, needles: list[str], expected: str | None) -> None:
    """An identifier echoed in free text is replaced in any spelling (case, encoding,
    separators, notation); a short one only as a whole segment."""
    ips = [n for n in needles if n[:1].isdigit() or n.startswith(":")]
    assert strip_echoes(value, echo_needles(needles, ips=ips)) == expected


def test_allowlist_guard_removes_echoed_identifiers() -> None:
    """The allowlist runs the guard on free-text fields with the event's identifiers."""
    unit = Allowlist(OutputConfig())
    out, touched = unit.build(
        {
            "event_type": "search",
            "search_terms": "track ck-77aa88bb",
            "page_url": "https://s.example/ck-77aa88bb",
        },
        identifiers=["ck-77aa88bb", "abc"],
    )
    assert out["search_terms"] == "track [id]" and out["page_url"] == "https://s.example/[id]"
    assert touched == ["page_url", "search_terms"]


def test_an_ipv6_zone_is_no_part_of_the_notations_looked_for() -> None:
    """A zone ("%eth0") once made the notations raise (Python 3.11's `exploded`), dropping the
    event as unprocessable; the address is looked for without it, in every notation."""
    from anonymizers.allowlist import ip_probes

    probes = ip_probes("fe80::1%eth0")
    assert "fe800000000000000000000000000001" in probes  # exploded, separators removed
    assert "fe801" in probes  # compressed
