"""The privacy team's policy: one frozen, versioned pydantic model of the TOML file.

Each section is a frozen model whose fields carry their default, their documentation and the
allowed-values phrase errors quote. Rules that span settings, and what the statistics engine
needs, are `anonymizers.policy.checks`; reading and validating a file is
`anonymizers.policy.load` (`load_policy`, `parse_policy`, `default_policy`), which is how a
`Policy` is built: constructing one directly checks each field but not the rules that span
sections.

Durations are strings: a positive whole number and a unit, `s`, `m`, `h` or `d` ("30m",
"48h", "1d"); `duration_seconds` reads them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict

from anonymizers.fields import (
    DimensionField,
    EventType,
    OutputField,
    SubjectField,
    ValueField,
)
from anonymizers.identifiers import IdentifierForms

SCHEMA_VERSION: Final = 1
DURATION_PATTERN: Final = r"^[1-9][0-9]{0,6}[smhd]$"
_DURATION_RE: Final = re.compile(DURATION_PATTERN)
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_CELL_BOUND: Final = 65_535
"""Upper limit of L and M: the statistics engine counts contributions in 16 bits."""
DURATION_ALLOWED: Final = (
    'a duration such as "30s", "30m", "1h" or "1d" '
    "(a positive whole number followed by s, m, h or d)"
)

StrictInt = Annotated[int, Strict()]
StrictBool = Annotated[bool, Strict()]
StrictFloat = Annotated[float, Strict()]
Duration = Annotated[str, Strict(), Field(pattern=DURATION_PATTERN)]
Granularity = Literal["none", "country", "region", "city"]
IdentifierAction = Literal["pseudonymize", "drop"]
Statistic = Literal["count", "sum", "mean", "p50", "p75", "p90", "p95", "p99"]


def duration_seconds(text: str) -> int:
    """Seconds in a duration string ("30m" -> 1800); ValueError for anything else."""
    if not _DURATION_RE.match(text):
        raise ValueError(f"not a duration: {text!r}")
    return int(text[:-1]) * _UNIT_SECONDS[text[-1]]


def _setting(default: Any, doc: str, allowed: str, **constraints: Any) -> Any:
    """A policy setting: default, its documentation, and the allowed-values phrase for errors."""
    return Field(default, description=doc, json_schema_extra={"x-allowed": allowed}, **constraints)


def _one_of(values: Iterable[str]) -> str:
    return "one of " + ", ".join(json.dumps(v) for v in values)


def _list_of(values: Iterable[str]) -> str:
    return "a list of distinct values from " + ", ".join(json.dumps(v) for v in values)


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


def _no_repeats(values: tuple[Any, ...]) -> tuple[Any, ...]:
    if len(set(values)) != len(values):
        raise ValueError("repeated values")
    return values


Distinct = AfterValidator(_no_repeats)
"""Marks a list setting whose items must be distinct."""


class GeoConfig(_Section):
    """IP geolocation and what is left of the IP address."""

    granularity: Granularity = _setting(
        "region",
        "Finest location kept from the IP: none, country (ISO code), region (first subdivision) "
        "or city (never finer).",
        _one_of(get_args(Granularity)),
    )
    keep_ip_prefix: StrictBool = _setting(
        False,
        "Keep the IP truncated to the prefixes below as ip_prefix; otherwise the IP is dropped "
        "after the lookup.",
        "true or false",
    )
    ipv4_prefix: StrictInt = _setting(
        24,
        "Bits of an IPv4 address kept when keep_ip_prefix is true.",
        "an integer from 0 to 24",
        ge=0,
        le=24,
    )
    ipv6_prefix: StrictInt = _setting(
        48,
        "Bits of an IPv6 address kept when keep_ip_prefix is true.",
        "an integer from 0 to 48",
        ge=0,
        le=48,
    )


class IdentifiersConfig(_Section):
    """What happens to each identifier, and which one names the subject."""

    user_id: IdentifierAction = _setting(
        "pseudonymize",
        "Account id: pseudonymize (keyed HMAC) or drop.",
        _one_of(get_args(IdentifierAction)),
    )
    cookie_id: IdentifierAction = _setting(
        "pseudonymize", "First-party cookie id.", _one_of(get_args(IdentifierAction))
    )
    device_id: IdentifierAction = _setting(
        "pseudonymize", "App installation or device id.", _one_of(get_args(IdentifierAction))
    )
    ad_id: IdentifierAction = _setting(
        "drop", "Advertising id (IDFA/GAID): no analytic use.", _one_of(get_args(IdentifierAction))
    )
    mac: IdentifierAction = _setting(
        "drop",
        "MAC address: enumerable space (OUI + 24 bits).",
        _one_of(get_args(IdentifierAction)),
    )
    imei: IdentifierAction = _setting(
        "drop", "IMEI: enumerable space (TAC + serial).", _one_of(get_args(IdentifierAction))
    )
    subject_order: Annotated[tuple[SubjectField, ...], Distinct] = _setting(
        ("user_id", "cookie_id", "device_id", "ad_id"),
        "Identifiers tried in order for the subject pseudonym (the output field subject); the "
        "first present wins. The subject is a keyed pseudonym whatever the action above.",
        _list_of(get_args(SubjectField)),
    )
    cookieless_visitor: StrictBool = _setting(
        True,
        "With no identifier, use a daily visitor id: HMAC under the epoch key of the UTC day, IP "
        "and user agent, computed before the IP is dropped. If false, such events are dropped "
        "(reason no_subject).",
        "true or false",
    )
    user_id_case_sensitive: StrictBool = _setting(
        False,
        "Whether user ids are case-sensitive (Bob and bob two people). If false (default), user "
        "ids are case-folded before consent matching, pseudonyms and erasure. Either way "
        "identifiers are trimmed and NFC-normalised, and e-mail-like and GUID-form values of "
        "every type are case-folded.",
        "true or false",
    )

    def forms(self) -> IdentifierForms:
        """The canonical identifier forms these settings ask for."""
        return IdentifierForms(user_id_case_sensitive=self.user_id_case_sensitive)


class KeysConfig(_Section):
    """Pseudonym key rotation and retention."""

    rotation: Duration = _setting(
        "1d",
        "A new random 256-bit key every rotation (the epoch length).",
        DURATION_ALLOWED + " from 1m to 31d",
    )
    retention: Duration = _setting(
        "48h",
        "Keys are destroyed this long after their epoch starts: later, no pseudonym can be "
        "recomputed or re-linked.",
        DURATION_ALLOWED + " from 1m to 31d",
    )

    @property
    def rotation_seconds(self) -> int:
        """Epoch length in seconds."""
        return duration_seconds(self.rotation)

    @property
    def retention_seconds(self) -> int:
        """Key retention in seconds."""
        return duration_seconds(self.retention)


_QUERY_PARAM = Annotated[str, Strict(), Field(pattern=r"^[A-Za-z0-9_.\-\[\]]{1,64}$")]
_HOST = Annotated[
    str,
    Strict(),
    Field(pattern=r"^\.?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$"),
]


class UrlsConfig(_Section):
    """Page, link and referrer URLs."""

    query_allowlist: Annotated[tuple[_QUERY_PARAM, ...], Distinct] = _setting(
        ("utm_source", "utm_medium", "utm_campaign"),
        "Query parameters kept (their values are still scanned for personal data); every other "
        "parameter and the fragment are removed.",
        "a list of distinct parameter names (letters, digits, _ . - [ ], up to 64 characters)",
    )
    internal_hosts: Annotated[tuple[_HOST, ...], Distinct] = _setting(
        (),
        "Hosts of the site itself, lower case: a referrer from one of them (or from the page's "
        'own host) is marked internal. A leading dot matches subdomains: ".example.com".',
        "a list of lower-case host names",
    )


class SearchTermsConfig(_Section):
    """Search terms: normalised (NFKC, casefold, whitespace), then scanned for personal data."""

    on_pii: Literal["drop", "redact"] = _setting(
        "redact",
        "When e-mail, phone, card number, IBAN, IP or a run of 6+ digits is found: redact it "
        '(replaced by a marker such as "[email]") or drop the search terms altogether.',
        _one_of(("drop", "redact")),
    )
    max_length: StrictInt = _setting(
        200,
        "Search terms longer than this (characters, after normalising) are dropped.",
        "an integer from 1 to 2048",
        ge=1,
        le=2048,
    )


class ContextConfig(_Section):
    """Browser, OS, hardware, language and time on page."""

    language_region: StrictBool = _setting(
        False,
        'Keep the region of the browser language ("fr-CA"); otherwise only "fr".',
        "true or false",
    )
    time_on_page_max: Duration = _setting(
        "30m",
        "Time on page is clamped to this (outliers bounded).",
        DURATION_ALLOWED + " from 1s to 1d",
    )

    @property
    def time_on_page_max_ms(self) -> int:
        """The clamp in milliseconds."""
        return duration_seconds(self.time_on_page_max) * 1000


class ConsentConfig(_Section):
    """Consent signals carried by events (consent records are handled whatever the policy)."""

    honour_gpc: StrictBool = _setting(
        True,
        "Drop events with Global Privacy Control set (binding in California, Colorado).",
        "true or false",
    )
    honour_dnt: StrictBool = _setting(
        False,
        "Drop events with Do Not Track set (the privacy policy says DNT is not honoured).",
        "true or false",
    )
    require_consent_signal: StrictBool = _setting(
        False,
        "Drop events that do not carry consent.analytics = true (opt-in regimes). Events with "
        "consent.analytics = false are always dropped.",
        "true or false",
    )


_DEFAULT_OUTPUT: Final[tuple[str, ...]] = (
    "event_type",
    "occurred_at",
    "epoch",
    "subject",
    "country",
    "region",
    "page_url",
    "referrer_host",
    "referrer_internal",
    "link_url",
    "search_terms",
    "browser",
    "browser_major",
    "os",
    "os_major",
    "language",
    "hardware",
    "time_on_page_ms",
)


class OutputConfig(_Section):
    """The allowlist: the anonymized event holds these fields and nothing else."""

    fields: Annotated[tuple[OutputField, ...], Distinct] = _setting(
        _DEFAULT_OUTPUT,
        "Fields of the anonymized event. event_type, occurred_at, epoch and subject are "
        "required. Raw inputs (ip, user_agent, page URLs as sent...) are not output fields; "
        "identifiers (user_id ... imei) appear only as keyed pseudonyms, and only when their "
        "identifiers action is pseudonymize.",
        _list_of(get_args(OutputField)),
    )


_METRIC_NAME = Annotated[str, Strict(), Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class MetricConfig(_Section):
    """One released statistic: which events, grouped by which fields, aggregated how."""

    name: _METRIC_NAME = _setting(
        ...,
        "Metric name, unique (lower case, digits, _).",
        "a name of lower-case letters, digits and _ starting with a letter (max 64)",
    )
    event_types: Annotated[tuple[EventType, ...], Distinct] = _setting(
        ..., "Event types counted.", _list_of(get_args(EventType)), min_length=1
    )
    dimensions: Annotated[tuple[DimensionField, ...], Distinct] = _setting(
        (),
        "Fields the metric is grouped by (each must be in output.fields).",
        _list_of(get_args(DimensionField)),
        max_length=4,
    )
    aggregate: Literal["count", "distinct_subjects", "summary"] = _setting(
        "count",
        "count (events), distinct_subjects, or summary of value_field.",
        _one_of(("count", "distinct_subjects", "summary")),
    )
    value_field: ValueField | None = _setting(
        None, "Numeric field summarised (summary only).", _one_of(get_args(ValueField))
    )
    statistics: Annotated[tuple[Statistic, ...], Distinct] = _setting(
        (),
        "Statistics a summary publishes, exactly these (percentiles are the lower edge of "
        "their one-second histogram bin; none in dp mode).",
        _list_of(get_args(Statistic)),
    )
    sensitive: StrictBool = _setting(
        False,
        "Apply release.k_search_terms instead of k_min_subjects (required for search_terms).",
        "true or false",
    )
    windows: Annotated[tuple[Duration, ...], Distinct] = _setting(
        (),
        "Window sizes this metric is released at, among aggregation.windows; empty: all of "
        "them. Each size released costs privacy budget in dp mode.",
        "a list of distinct durations, each one of aggregation.windows",
    )
    weight: StrictFloat = _setting(
        1.0,
        "dp mode: this metric's share of the daily budget at each of its window sizes, "
        "relative to the other metrics' weights.",
        "a number > 0 and <= 100",
        gt=0,
        le=100,
    )
    max_contributions: StrictInt | None = _setting(
        None,
        "L for this metric (contributions of one subject to one cell per window); unset: "
        "release.max_contributions_per_cell. A dimension with few, large cells (browser, "
        "hardware) keeps more of each person's events at little cost in noise.",
        f"an integer from 1 to {MAX_CELL_BOUND}",
        ge=1,
        le=MAX_CELL_BOUND,
    )
    max_cells: StrictInt | None = _setting(
        None,
        "M for this metric (cells one subject contributes to per window); unset: "
        "release.max_cells_per_metric. A dimension with one value per person (browser, "
        "country) needs far fewer than a page, and a smaller M means less noise.",
        f"an integer from 1 to {MAX_CELL_BOUND}",
        ge=1,
        le=MAX_CELL_BOUND,
    )


def _metric(
    name: str, types: tuple[str, ...], dims: tuple[str, ...], aggregate: str = "count", **extra: Any
) -> MetricConfig:
    return MetricConfig.model_validate(
        {"name": name, "event_types": types, "dimensions": dims, "aggregate": aggregate, **extra}
    )


def _default_metrics() -> tuple[MetricConfig, ...]:
    pv = ("page_view",)
    # Bounds per metric (dp mode): pages are many and a person views many of them (M 30 a
    # window, L 5 a page); a browser, OS, hardware class or language is one per person and
    # day (M 2) with large cells, where keeping 200 of a person's events costs little noise.
    daily: dict[str, Any] = {"windows": ("1d",), "max_cells": 30}
    one_value: dict[str, Any] = {
        "windows": ("1d",),
        "max_cells": 2,
        "max_contributions": 200,
        "weight": 0.5,
    }
    return (
        _metric(
            "page_views",
            pv,
            ("page_url",),
            windows=("1h", "1d"),
            weight=4.0,
            max_cells=30,
            max_contributions=5,
        ),
        # The live view: page views per minute, no dimension (one cell, little noise).
        _metric("page_views_per_minute", pv, (), windows=("1m",), weight=1.0, max_cells=1),
        _metric(
            "unique_visitors",
            pv,
            ("page_url",),
            "distinct_subjects",
            windows=("1d",),
            weight=2.0,
            max_cells=60,
        ),
        # One visitors metric at the finest level the geo granularity allows: a coarser one
        # beside it would be a roll-up from which suppressed cells could be derived.
        _metric(
            "visitors",
            pv,
            ("country", "region"),
            "distinct_subjects",
            windows=("1d",),
            max_cells=2,
        ),
        _metric("page_views_by_browser", pv, ("browser",), **one_value),
        _metric("page_views_by_os", pv, ("os",), **one_value),
        _metric("page_views_by_hardware", pv, ("hardware",), **one_value),
        _metric("page_views_by_language", pv, ("language",), **one_value),
        _metric("referrals", pv, ("referrer_host",), **daily),
        _metric("link_clicks", ("link_click",), ("link_url",), **daily),
        _metric("searches", ("search",), ("search_terms",), sensitive=True, **daily),
        _metric(
            "time_on_page",
            ("page_leave",),
            ("page_url",),
            "summary",
            value_field="time_on_page_ms",
            statistics=("count", "mean"),
            **daily,
        ),
    )


class AggregationConfig(_Section):
    """Windows and metrics computed by the aggregation stage."""

    windows: Annotated[tuple[Duration, ...], Distinct] = _setting(
        ("1m", "1h", "1d"),
        "Tumbling window sizes (event time); each must divide keys.rotation.",
        "a non-empty list of distinct durations, each " + DURATION_ALLOWED,
        min_length=1,
    )
    allowed_lateness: Duration = _setting(
        "1m",
        "How late an event may arrive and still count in its window.",
        DURATION_ALLOWED + " up to 1d",
    )
    idle_timeout: Duration = _setting(
        "1m",
        "A partition idle this long no longer holds back releases (its watermark advances by "
        "processing time).",
        DURATION_ALLOWED + " up to 1d",
    )
    metrics: tuple[MetricConfig, ...] = _setting(
        _default_metrics(), "Released metrics.", "a list of metric tables", min_length=1
    )
    exclude_bots: StrictBool = _setting(
        True,
        'Events whose hardware class is "bot" (crawlers, scripted clients) count in no '
        "released metric (counted apart as excluded).",
        "true or false",
    )


ReleaseMode = Literal["dp", "exact"]


class ReleaseConfig(_Section):
    """How cells are released: differential privacy with a daily budget, or exact k."""

    mode: ReleaseMode = _setting(
        "dp",
        "dp: every released value carries noise from OpenDP's discrete Gaussian, cells of "
        "open-ended dimensions appear only when their noisy count of people passes a "
        "threshold, and each person-day's influence on everything released stays within "
        "epsilon_per_day and delta_per_day. exact: no noise; a cell needs k distinct people "
        "and an audit holds back cells that subtraction would reveal.",
        _one_of(get_args(ReleaseMode)),
    )
    epsilon_per_day: StrictFloat = _setting(
        8.0,
        "dp: the privacy loss one person-day (a subject within its key epoch) may incur over "
        "everything released, as epsilon of (epsilon, delta)-DP. For comparison: Google's "
        "mobility reports about 2.64 per day, Apple 4 to 16 per day.",
        "a number > 0 and <= 16",
        gt=0,
        le=16,
    )
    delta_per_day: StrictFloat = _setting(
        1e-7,
        "dp: the delta of that (epsilon, delta) guarantee per person-day; half of it pays for "
        "the threshold that decides which cells appear.",
        "a number > 0 and <= 0.0001",
        gt=0,
        le=1e-4,
    )
    max_windows_per_day: dict[Duration, StrictInt] = _setting(
        {"1m": 60, "1h": 4, "1d": 1},
        "dp: at most this many windows of each size in which one person counts, per metric "
        "and day; their later windows of that size are dropped (counted). Every window size "
        "a metric is released at needs an entry.",
        "a table of durations to integers from 1 to 1440",
    )

    k_min_subjects: StrictInt = _setting(
        10,
        "A cell is released only with at least this many distinct subjects.",
        "an integer >= 2",
        ge=2,
        le=1_000_000,
    )
    k_search_terms: StrictInt = _setting(
        20,
        "The same for sensitive metrics (search terms); must be >= k_min_subjects.",
        "an integer >= 2",
        ge=2,
        le=1_000_000,
    )
    max_contributions_per_cell: StrictInt = _setting(
        5,
        "L: at most this many contributions of one subject to one cell per window.",
        f"an integer from 1 to {MAX_CELL_BOUND}",
        ge=1,
        le=MAX_CELL_BOUND,
    )
    max_cells_per_metric: StrictInt = _setting(
        20,
        "M: at most this many cells of one metric per subject per window.",
        f"an integer from 1 to {MAX_CELL_BOUND}",
        ge=1,
        le=MAX_CELL_BOUND,
    )
    suppression: Literal["other", "suppress_total"] = _setting(
        "other",
        'exact: small cells are folded into an "other" cell (itself subject to k), or the '
        "total is suppressed too, so suppressed cells cannot be recovered by subtraction.",
        _one_of(("other", "suppress_total")),
    )


SECTIONS: Final[dict[str, type[_Section]]] = {
    "geo": GeoConfig,
    "identifiers": IdentifiersConfig,
    "keys": KeysConfig,
    "urls": UrlsConfig,
    "search_terms": SearchTermsConfig,
    "context": ContextConfig,
    "consent": ConsentConfig,
    "output": OutputConfig,
    "aggregation": AggregationConfig,
    "release": ReleaseConfig,
}


class PolicyHeader(BaseModel):
    """The file's two top-level settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = _setting(1, "Version of this file's schema.", "1")
    policy_version: Annotated[str, Strict(), Field(pattern=r"^[\x21-\x7e][\x20-\x7e]{0,63}$")] = (
        _setting(
            "default",
            "Free label of this policy's version, copied into every released aggregate.",
            "a label of 1 to 64 printable ASCII characters",
        )
    )


class Policy(PolicyHeader):
    """The whole policy. Build it with `parse_policy`, `load_policy` or `default_policy`."""

    model_config = ConfigDict(frozen=True, extra="forbid", title="anonstream policy v1")

    geo: GeoConfig = _setting(GeoConfig(), GeoConfig.__doc__ or "", "a table")
    identifiers: IdentifiersConfig = _setting(
        IdentifiersConfig(), IdentifiersConfig.__doc__ or "", "a table"
    )
    keys: KeysConfig = _setting(KeysConfig(), KeysConfig.__doc__ or "", "a table")
    urls: UrlsConfig = _setting(UrlsConfig(), UrlsConfig.__doc__ or "", "a table")
    search_terms: SearchTermsConfig = _setting(
        SearchTermsConfig(), SearchTermsConfig.__doc__ or "", "a table"
    )
    context: ContextConfig = _setting(ContextConfig(), ContextConfig.__doc__ or "", "a table")
    consent: ConsentConfig = _setting(ConsentConfig(), ConsentConfig.__doc__ or "", "a table")
    output: OutputConfig = _setting(OutputConfig(), OutputConfig.__doc__ or "", "a table")
    aggregation: AggregationConfig = _setting(
        AggregationConfig(), AggregationConfig.__doc__ or "", "a table"
    )
    release: ReleaseConfig = _setting(ReleaseConfig(), ReleaseConfig.__doc__ or "", "a table")
