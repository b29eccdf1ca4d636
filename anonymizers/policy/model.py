"""The privacy team's policy: one versioned, validated model read from a TOML file.

`default_policy()` equals the defaults table of PRIVACY.md. `load_policy(path)` and
`parse_policy(mapping)` validate everything before anything starts and raise `PolicyError`
holding *every* problem, each rendered as `<path> must be <allowed>; got <value>`.
`render_default_policy_toml()` writes the default file with every setting explained, and
`policy_json_schema()` is the schema committed as `schemas/policy.v1.json`.

Durations are strings: a positive whole number and a unit, `s`, `m`, `h` or `d` ("30m",
"48h", "1d").
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo

from anonymizers.exceptions import PolicyError
from anonymizers.fields import (
    IDENTIFIER_FIELDS,
    REQUIRED_OUTPUT_FIELDS,
    DimensionField,
    EventType,
    OutputField,
    SubjectField,
    ValueField,
)

SCHEMA_VERSION: Final = 1
DURATION_PATTERN: Final = r"^[1-9][0-9]{0,6}[smhd]$"
_DURATION_RE: Final = re.compile(DURATION_PATTERN)
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION_ALLOWED: Final = (
    'a duration such as "30s", "30m", "1h" or "1d" '
    "(a positive whole number followed by s, m, h or d)"
)

StrictInt = Annotated[int, Strict()]
StrictBool = Annotated[bool, Strict()]
StrictStr = Annotated[str, Strict()]
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
        "required. Raw inputs (ip, user_agent, mac...) cannot be named.",
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
        (), "Statistics of a summary.", _list_of(get_args(Statistic))
    )
    sensitive: StrictBool = _setting(
        False,
        "Apply release.k_search_terms instead of k_min_subjects (required for search_terms).",
        "true or false",
    )


def _metric(
    name: str, types: tuple[str, ...], dims: tuple[str, ...], aggregate: str = "count", **extra: Any
) -> MetricConfig:
    return MetricConfig.model_validate(
        {"name": name, "event_types": types, "dimensions": dims, "aggregate": aggregate, **extra}
    )


def _default_metrics() -> tuple[MetricConfig, ...]:
    pv = ("page_view",)
    return (
        _metric("page_views", pv, ("page_url",)),
        _metric("unique_visitors", pv, ("page_url",), "distinct_subjects"),
        # One visitors metric at the finest level the geo granularity allows: a coarser one
        # beside it would be a roll-up from which suppressed cells could be derived.
        _metric("visitors", pv, ("country", "region"), "distinct_subjects"),
        _metric("page_views_by_browser", pv, ("browser",)),
        _metric("page_views_by_os", pv, ("os",)),
        _metric("page_views_by_hardware", pv, ("hardware",)),
        _metric("page_views_by_language", pv, ("language",)),
        _metric("referrals", pv, ("referrer_host",)),
        _metric("link_clicks", ("link_click",), ("link_url",)),
        _metric("searches", ("search",), ("search_terms",), sensitive=True),
        _metric(
            "time_on_page",
            ("page_leave",),
            ("page_url",),
            "summary",
            value_field="time_on_page_ms",
            statistics=("count", "mean", "p50", "p90"),
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


class NoiseConfig(_Section):
    """Differentially private noise on released values."""

    enabled: StrictBool = _setting(False, "Add noise to released values.", "true or false")
    mechanism: Literal["geometric", "discrete_gaussian"] = _setting(
        "geometric",
        "Discrete mechanism: geometric (discrete Laplace) or discrete_gaussian.",
        _one_of(("geometric", "discrete_gaussian")),
    )
    epsilon: StrictFloat = _setting(
        1.0,
        "Privacy budget of one window's whole release, shared evenly by the metrics; below 1 "
        "is conservative.",
        "a number > 0 and <= 10",
        gt=0,
        le=10,
    )


class ReleaseConfig(_Section):
    """Rules applied once per released cell."""

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
        "an integer >= 1",
        ge=1,
        le=1_000_000,
    )
    max_cells_per_metric: StrictInt = _setting(
        20,
        "M: at most this many cells of one metric per subject per window.",
        "an integer >= 1",
        ge=1,
        le=1_000_000,
    )
    suppression: Literal["other", "suppress_total"] = _setting(
        "other",
        'Small cells are folded into an "other" cell (itself subject to k), or the total is '
        "suppressed too, so suppressed cells cannot be recovered by subtraction.",
        _one_of(("other", "suppress_total")),
    )
    noise: NoiseConfig = _setting(
        NoiseConfig(), "Differentially private noise on released values.", "a table"
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


class _Header(BaseModel):
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


class Policy(_Header):
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

    @model_validator(mode="after")
    def _cross_checks(self) -> Policy:
        issues = cross_checks({name: getattr(self, name) for name in SECTIONS})
        if issues:
            raise ValueError("; ".join(str(issue) for issue in issues))
        return self


# ---------------------------------------------------------------------------------- errors


@dataclass(frozen=True, slots=True)
class PolicyIssue:
    """One problem in a policy: where, what is allowed, what was given (JSON text or None)."""

    path: str
    allowed: str
    given: str | None
    kind: Literal["invalid", "unknown", "missing"] = "invalid"

    def __str__(self) -> str:
        if self.kind == "unknown":
            return f"{self.path} is not a known setting; allowed keys: {self.allowed}"
        if self.kind == "missing":
            return f"{self.path} is required: {self.allowed}"
        return f"{self.path} must be {self.allowed}; got {self.given}"


def _render_value(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _join_path(parts: Iterable[str | int]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _locate(
    model: type[BaseModel], loc: tuple[str | int, ...]
) -> tuple[type[BaseModel], FieldInfo | None, bool]:
    """Walk `loc` through nested models: (owner model, field or None, loc ended on a list item)."""
    owner: type[BaseModel] = model
    field: FieldInfo | None = None
    item = False
    for part in loc:
        if isinstance(part, int):
            item = True
            continue
        item = False
        if field is not None:
            nested = _model_of(field)
            if nested is None:
                return owner, None, item
            owner = nested
        field = owner.model_fields.get(part)
        if field is None:
            return owner, None, item
    return owner, field, item


def _model_of(field: FieldInfo) -> type[BaseModel] | None:
    annotation = field.annotation
    candidates = [annotation, *get_args(annotation)]
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _allowed_text(field: FieldInfo | None) -> str | None:
    extra = field.json_schema_extra if field is not None else None
    if isinstance(extra, dict):
        allowed = extra.get("x-allowed")
        if isinstance(allowed, str):
            return allowed
    return None


def _issues_from(
    exc: ValidationError, model: type[BaseModel], prefix: tuple[str | int, ...]
) -> list[PolicyIssue]:
    issues: list[PolicyIssue] = []
    errors = exc.errors(include_url=False)
    failed_locs = [tuple(error["loc"]) for error in errors]
    for error in errors:
        loc = tuple(error["loc"])
        if error["type"] == "too_short" and any(
            len(other) > len(loc) and other[: len(loc)] == loc for other in failed_locs
        ):
            # "too short after validation" only because its items failed: already reported.
            continue
        path = _join_path(prefix + loc)
        kind = error["type"]
        ctx = error.get("ctx") or {}
        owner, field, item = _locate(model, loc)
        if kind == "extra_forbidden":
            parent_owner, parent_field, _ = (
                _locate(model, loc[:-1]) if len(loc) > 1 else (model, None, False)
            )
            nested = _model_of(parent_field) if parent_field is not None else parent_owner
            keys = ", ".join((nested or owner).model_fields)
            issues.append(PolicyIssue(path, keys, None, "unknown"))
            continue
        allowed = _allowed_text(field)
        if item and kind == "literal_error":
            expected = str(ctx.get("expected", ""))
            allowed = "one of " + expected.replace("'", '"').replace(" or ", ", ")
        if kind == "missing":
            issues.append(PolicyIssue(path, allowed or "a value", None, "missing"))
            continue
        if allowed is None:
            allowed = (
                str(error["msg"]).removeprefix("Input should be ").removeprefix("Value error, ")
            )
        issues.append(PolicyIssue(path, allowed, _render_value(error.get("input"))))
    return issues


# --------------------------------------------------------------------------- cross checks


def cross_checks(sections: Mapping[str, Any]) -> list[PolicyIssue]:
    """Checks that span settings; each runs when the sections it needs are valid."""
    issues: list[PolicyIssue] = []
    keys: KeysConfig | None = sections.get("keys")
    geo: GeoConfig | None = sections.get("geo")
    ids: IdentifiersConfig | None = sections.get("identifiers")
    output: OutputConfig | None = sections.get("output")
    agg: AggregationConfig | None = sections.get("aggregation")
    release: ReleaseConfig | None = sections.get("release")
    context: ContextConfig | None = sections.get("context")

    if keys is not None:
        for name in ("rotation", "retention"):
            text = getattr(keys, name)
            if not 60 <= duration_seconds(text) <= 31 * 86400:
                issues.append(
                    PolicyIssue(
                        f"keys.{name}", DURATION_ALLOWED + " from 1m to 31d", _render_value(text)
                    )
                )
    if context is not None and not 1 <= duration_seconds(context.time_on_page_max) <= 86400:
        issues.append(
            PolicyIssue(
                "context.time_on_page_max",
                DURATION_ALLOWED + " from 1s to 1d",
                _render_value(context.time_on_page_max),
            )
        )
    if agg is not None:
        for name in ("allowed_lateness", "idle_timeout"):
            text = getattr(agg, name)
            if duration_seconds(text) > 86400:
                issues.append(
                    PolicyIssue(
                        f"aggregation.{name}", DURATION_ALLOWED + " up to 1d", _render_value(text)
                    )
                )
    if keys is not None and agg is not None:
        rotation = keys.rotation_seconds
        for index, window in enumerate(agg.windows):
            if rotation % duration_seconds(window):
                issues.append(
                    PolicyIssue(
                        f"aggregation.windows[{index}]",
                        f"a window that divides keys.rotation ({keys.rotation} = {rotation}s), "
                        "so a "
                        "window never spans two keys",
                        _render_value(window),
                    )
                )
        needed = rotation + duration_seconds(agg.allowed_lateness)
        if keys.retention_seconds < needed:
            issues.append(
                PolicyIssue(
                    "keys.retention",
                    f"at least keys.rotation + aggregation.allowed_lateness ({needed}s), so late "
                    "events still find their key",
                    _render_value(keys.retention),
                )
            )
    if release is not None and release.k_search_terms < release.k_min_subjects:
        issues.append(
            PolicyIssue(
                "release.k_search_terms",
                f"an integer >= release.k_min_subjects ({release.k_min_subjects})",
                _render_value(release.k_search_terms),
            )
        )
    if output is not None:
        fields = set(output.fields)
        for required in REQUIRED_OUTPUT_FIELDS:
            if required not in fields:
                issues.append(
                    PolicyIssue(
                        "output.fields",
                        f"a list that includes {', '.join(REQUIRED_OUTPUT_FIELDS)} "
                        f"(missing {required})",
                        _render_value(list(output.fields)),
                    )
                )
        if geo is not None:
            issues.extend(_geo_field_issues(geo, fields, "output.fields", list(output.fields)))
        if ids is not None:
            for name in IDENTIFIER_FIELDS:
                if name in fields and getattr(ids, name) != "pseudonymize":
                    issues.append(
                        PolicyIssue(
                            "output.fields",
                            f'a list without {name}, since identifiers.{name} is "drop"',
                            _render_value(list(output.fields)),
                        )
                    )
    if agg is not None:
        issues.extend(_metric_issues(agg, output, geo))
    return issues


_GEO_NEEDS: Final = {
    "country": ("country", "region", "city"),
    "region": ("region", "city"),
    "city": ("city",),
}


def _geo_field_issues(
    geo: GeoConfig, fields: Iterable[str], path: str, given: Any
) -> list[PolicyIssue]:
    issues = []
    for name, granularities in _GEO_NEEDS.items():
        if name in fields and geo.granularity not in granularities:
            issues.append(
                PolicyIssue(
                    path,
                    f'a list without {name}, since geo.granularity is "{geo.granularity}"',
                    _render_value(given),
                )
            )
    if "ip_prefix" in fields and not geo.keep_ip_prefix:
        issues.append(
            PolicyIssue(
                path,
                "a list without ip_prefix, since geo.keep_ip_prefix is false",
                _render_value(given),
            )
        )
    return issues


def _metric_issues(
    agg: AggregationConfig, output: OutputConfig | None, geo: GeoConfig | None
) -> list[PolicyIssue]:
    issues: list[PolicyIssue] = []
    seen: set[str] = set()
    for index, metric in enumerate(agg.metrics):
        base = f"aggregation.metrics[{index}]"
        if metric.name in seen:
            issues.append(
                PolicyIssue(
                    f"{base}.name", "a name no other metric has", _render_value(metric.name)
                )
            )
        seen.add(metric.name)
        if output is not None:
            missing = [d for d in metric.dimensions if d not in output.fields]
            if missing:
                issues.append(
                    PolicyIssue(
                        f"{base}.dimensions",
                        f"fields that output.fields keeps (not {', '.join(missing)})",
                        _render_value(list(metric.dimensions)),
                    )
                )
            if metric.value_field is not None and metric.value_field not in output.fields:
                issues.append(
                    PolicyIssue(
                        f"{base}.value_field",
                        "a field that output.fields keeps",
                        _render_value(metric.value_field),
                    )
                )
        if geo is not None:
            issues.extend(
                _geo_field_issues(
                    geo,
                    set(metric.dimensions) - {"ip_prefix"},
                    f"{base}.dimensions",
                    list(metric.dimensions),
                )
            )
        if "search_terms" in metric.dimensions and not metric.sensitive:
            issues.append(
                PolicyIssue(
                    f"{base}.sensitive",
                    "true for a metric grouped by search_terms (search k applies)",
                    _render_value(metric.sensitive),
                )
            )
        if metric.aggregate == "summary":
            if metric.value_field is None:
                issues.append(
                    PolicyIssue(f"{base}.value_field", 'set for a summary: "time_on_page_ms"', None)
                )
            if not metric.statistics:
                issues.append(
                    PolicyIssue(
                        f"{base}.statistics",
                        "a non-empty list for a summary: " + ", ".join(get_args(Statistic)),
                        "[]",
                    )
                )
        else:
            if metric.value_field is not None:
                issues.append(
                    PolicyIssue(
                        f"{base}.value_field",
                        f'absent for aggregate "{metric.aggregate}" (summary only)',
                        _render_value(metric.value_field),
                    )
                )
            if metric.statistics:
                issues.append(
                    PolicyIssue(
                        f"{base}.statistics",
                        f'absent for aggregate "{metric.aggregate}" (summary only)',
                        _render_value(list(metric.statistics)),
                    )
                )
    return issues


# ------------------------------------------------------------------------------ public API


def default_policy() -> Policy:
    """The shipped default: PRIVACY.md's defaults table."""
    return Policy()


def parse_policy(mapping: Mapping[str, Any]) -> Policy:
    """Validate a policy mapping (a parsed TOML document); `PolicyError` lists every problem."""
    if not isinstance(mapping, Mapping):
        raise PolicyError(
            [PolicyIssue("(policy)", "a table of settings", _render_value(type(mapping).__name__))]
        )
    issues: list[PolicyIssue] = []
    top_fields = Policy.model_fields
    for key in mapping:
        if key not in top_fields:
            issues.append(PolicyIssue(str(key), ", ".join(top_fields), None, "unknown"))
    if "schema_version" not in mapping:
        issues.append(
            PolicyIssue(
                "schema_version",
                f"{SCHEMA_VERSION} (the first line of a v1 policy file)",
                None,
                "missing",
            )
        )
    scalars = {k: mapping[k] for k in ("schema_version", "policy_version") if k in mapping}
    try:
        _Header.model_validate(scalars)
    except ValidationError as exc:
        issues.extend(_issues_from(exc, _Header, ()))
    sections: dict[str, Any] = {}
    for name, model in SECTIONS.items():
        raw = mapping.get(name, {})
        if not isinstance(raw, Mapping):
            issues.append(PolicyIssue(name, "a table", _render_value(raw)))
            continue
        try:
            sections[name] = model.model_validate(raw)
        except ValidationError as exc:
            issues.extend(_issues_from(exc, model, (name,)))
    issues.extend(cross_checks(sections))
    if not issues:
        # Last, on sections otherwise valid: what only the aggregation engine knows
        # (roll-ups, nesting windows...), so a policy check fails where a worker would.
        from anonymizers.stats.from_policy import engine_issues

        issues.extend(engine_issues(sections))
    if issues:
        raise PolicyError(issues)
    return Policy.model_validate({**scalars, **sections})


def load_policy(path: str | Path) -> Policy:
    """Read and validate a TOML policy file; `PolicyError` for an unreadable or invalid one."""
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except OSError as exc:
        raise PolicyError(
            [PolicyIssue(str(path), "a readable policy file", _render_value(exc.strerror))]
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError([PolicyIssue(str(path), "valid TOML", _render_value(str(exc)))]) from exc
    return parse_policy(document)


def policy_json_schema() -> dict[str, Any]:
    """The JSON Schema of the policy file, as committed in `schemas/policy.v1.json`."""
    schema = Policy.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://anonstream.dev/schemas/policy.v1.json",
        **schema,
        "description": (
            "The anonstream policy file (TOML), schema version 1. Durations are strings: a "
            "positive whole number followed by s, m, h or d. Settings that span sections "
            "(windows divide keys.rotation, retention covers rotation + lateness, metric "
            "dimensions are kept output fields...) are checked by `anonstream policy check`."
        ),
    }


# ----------------------------------------------------------------------------- TOML output


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _comment(text: str, width: int = 96) -> list[str]:
    lines: list[str] = []
    current = "#"
    for word in text.split():
        if len(current) + 1 + len(word) > width:
            lines.append(current)
            current = "#"
        current += " " + word
    lines.append(current)
    return lines


def _table_lines(model: BaseModel, header: str) -> list[str]:
    lines = [f"[{header}]"]
    nested: list[tuple[str, BaseModel]] = []
    arrays: list[tuple[str, tuple[BaseModel, ...]]] = []
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            nested.append((name, value))
            continue
        if isinstance(value, tuple) and value and isinstance(value[0], BaseModel):
            arrays.append((name, value))
            continue
        lines.extend(_comment(f"{info.description} Allowed: {_allowed_text(info)}."))
        if value is None:
            lines.append(f"# {name} = (unset)")
        else:
            lines.append(f"{name} = {_toml_value(value)}")
    for name, sub in nested:
        lines.append("")
        description = type(model).model_fields[name].description or ""
        lines.extend(_comment(f"---- {header}.{name}: {description}"))
        lines.extend(_table_lines(sub, f"{header}.{name}"))
    for name, items in arrays:
        info = type(model).model_fields[name]
        lines.append("")
        lines.extend(_comment(f"{info.description} Each [[{header}.{name}]] table:"))
        item_model = type(items[0])
        for field_name, field_info in item_model.model_fields.items():
            lines.extend(
                _comment(
                    f"  {field_name}: {field_info.description} "
                    f"Allowed: {_allowed_text(field_info)}."
                )
            )
        for item in items:
            lines.append("")
            lines.append(f"[[{header}.{name}]]")
            for field_name in item_model.model_fields:
                value = getattr(item, field_name)
                default = item_model.model_fields[field_name].default
                if value is None or (
                    value == default and field_name not in ("name", "event_types", "aggregate")
                ):
                    continue
                lines.append(f"{field_name} = {_toml_value(value)}")
    return lines


def render_default_policy_toml() -> str:
    """The default policy as a commented TOML file; parsing it gives `default_policy()`."""
    policy = default_policy()
    lines = [
        "# anonstream policy file, schema version 1 (JSON Schema: schemas/policy.v1.json).",
        "# Check it with `anonstream policy check PATH`; try it with `anonstream preview`.",
        '# Defaults follow PRIVACY.md. Durations: a whole number and s, m, h or d ("30m", "1d").',
        "",
    ]
    for name in ("schema_version", "policy_version"):
        info = Policy.model_fields[name]
        lines.extend(_comment(f"{info.description} Allowed: {_allowed_text(info)}."))
        lines.append(f"{name} = {_toml_value(getattr(policy, name))}")
    for name in SECTIONS:
        lines.append("")
        lines.extend(_comment(f"---- {name}: {Policy.model_fields[name].description}"))
        lines.extend(_table_lines(getattr(policy, name), name))
    return "\n".join(lines) + "\n"
