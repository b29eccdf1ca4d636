"""URLs: keep scheme, host and path; allow-listed query parameters only; no fragment.

Path segments are brought to the canonical form (`anonymizers.canonical`: percent-decoded to
a fixed point, NFKC, case-folded, invisible characters gone) and redacted when they hold an
e-mail address, a UUID, a long token, a run of 6+ digits or any other finding of
`anonymizers.pii`; the output holds that canonical form, re-encoded, so what is written is what
was checked. Matrix parameters (`;jsessionid=...`) go. Names and values of query parameters
are read the same way (`+` as a space), and kept values scanned the same way. User info and
port go; a host that is an IP address (in any notation), a scheme other than http(s) or
anything unparsable makes the whole URL go (None).
Referrers keep only their host, marked internal when it is one of the site's own.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from typing import Any, Final, NamedTuple
from urllib.parse import quote, urlencode, urlsplit

from anonymizers import pii
from anonymizers.allowlist import echo_haystack
from anonymizers.canonical import canonical
from anonymizers.ip import parse_ip
from anonymizers.memo import Memo
from anonymizers.outcome import Draft
from anonymizers.policy import UrlsConfig

SCHEMES: Final = frozenset({"http", "https"})
TOKEN_MIN_LENGTH: Final = 12
"""A part (between - _ . ~) this long mixing letters and digits, or all hex, is a token."""
DEFAULT_CACHE_SIZE: Final = 65_536
_PATH_SAFE: Final = "!$&'()*+,=:@-._~[]"
# Only runs long enough to hold a token; one class, so a run is scanned a bounded number of times.
_PIECE_RE: Final = re.compile(rf"[A-Za-z0-9+/=_\-.~]{{{TOKEN_MIN_LENGTH},}}")
_SUBPIECE_SPLIT_RE: Final = re.compile(r"[\-_.~]")
_HEX_RE: Final = re.compile(r"^[0-9A-Fa-f]+$")
_HOST_RE: Final = re.compile(r"^[a-z0-9\-._~\u00a0-\uffff]+$")
_CONTROL_RE: Final = re.compile(r"[\x00-\x1f]")


def _is_token(piece: str) -> bool:
    """A run of token characters holding a long random-looking part (not a slug of words)."""
    if pii.UUID_RE.fullmatch(piece):
        return False  # left to the detector, which marks it [uuid]
    for part in _SUBPIECE_SPLIT_RE.split(piece):
        if len(part) < TOKEN_MIN_LENGTH:
            continue
        if _HEX_RE.match(part) and not part.isdigit():
            return True  # all digits are left to the detector: [card], [number]...
        if any(c.isdigit() for c in part) and any(c.isalpha() for c in part):
            return True
    return False


def scrub_text(text: str) -> str:
    """A path segment, host or query value in canonical form, with tokens and personal data
    replaced by markers."""
    text = canonical(text)
    if len(text) >= TOKEN_MIN_LENGTH:
        # Tokens first, whole: a session id must not survive as "ABCDEF[number]abc".
        text = _PIECE_RE.sub(lambda m: pii.TOKEN if _is_token(m.group(0)) else m.group(0), text)
    return pii.redact(text)[0]


def _host_of(netloc_host: str | None) -> str | None:
    if not netloc_host:
        return None
    host = canonical(netloc_host).rstrip(".")
    if not host or not _HOST_RE.match(host):
        return None
    # IP literals (also the bracketless forms urlsplit gives) would carry the address out.
    if parse_ip(host) is not None or host.replace(".", "").isdigit() or ":" in host:
        return None
    if "@" in host or pii.redact(host)[1]:
        return None
    return host


def _split(
    url: object, host_of: Callable[[str], str | None] = _host_of
) -> tuple[str, str, str, str] | None:
    """Scheme, host (`host_of` the URL's host name: `_host_of`, or a memo of it), path and
    query of `url`; None when it is not an http(s) URL with a usable host."""
    if not isinstance(url, str):
        return None
    text = url.strip()
    if not text or _CONTROL_RE.search(text) is not None:
        return None
    try:
        parts = urlsplit(text)
        hostname = parts.hostname
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES or not hostname:
        return None
    host = host_of(hostname)
    if host is None:
        return None
    return scheme, host, parts.path, parts.query


def _url_entry(scrubbed: str) -> _UrlEntry:
    return scrubbed, host_of_scrubbed(scrubbed), echo_haystack(scrubbed)


def _scrub_segment(raw_segment: str) -> str:
    """A path segment as it is written out: matrix parameters gone, scrubbed, re-encoded."""
    return quote(scrub_text(raw_segment.split(";", 1)[0]), safe=_PATH_SAFE)


# What the URL unit memoises per raw URL: (scrubbed URL, its host, echo haystack).
_UrlEntry = tuple[str | None, str | None, str]
# What the referrer unit memoises per raw referrer: (host, named by urls.internal_hosts, echo
# haystack).
_ReferrerEntry = tuple[str | None, bool, str]
_NO_URL: Final[_UrlEntry] = (None, None, "")
_NO_REFERRER_ENTRY: Final[_ReferrerEntry] = (None, False, "")


class UrlScrubber:
    """The chain's URL unit: page and link URLs scrubbed per `UrlsConfig`, None (no output
    field) when nothing safe is left.

    As a unit it writes the allow-listed `page_url` and `link_url` among `fields`, the page's
    host into the draft (for the referrer unit), and their echo haystacks. Results are
    memoised by raw URL (bounded, `cache_size` entries, process memory only); `scrub(url)` is
    the scrubbed URL alone.
    """

    def __init__(
        self,
        config: UrlsConfig,
        *,
        fields: Collection[str] = ("page_url", "link_url"),
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self._allowed = frozenset(config.query_allowlist)
        self._want_page = "page_url" in fields
        self._want_link = "link_url" in fields
        # The page's host decides whether a referrer is internal.
        self._want_page_host = self._want_page or "referrer_internal" in fields
        self.memo: Memo[str, _UrlEntry] = Memo(self._entry, max_size=cache_size)
        self._table = self.memo.plain_table
        # A new URL mostly differs from those seen in its query string or in one segment:
        # its host, path segments and kept query values are memoised too, each bounded as
        # the URL memo (a URL miss took ~100 µs; most of it scrubbing parts seen before).
        self._hosts: Memo[str, str | None] = Memo(_host_of, max_size=cache_size)
        self._segments: Memo[str, str] = Memo(_scrub_segment, max_size=cache_size)
        self._values: Memo[str, str] = Memo(scrub_text, max_size=cache_size)
        self._outputs: Memo[str, _UrlEntry] = Memo(_url_entry, max_size=cache_size)

    def __call__(self, event: dict[str, Any], out: Draft) -> str | None:
        table = self._table
        if self._want_page_host:
            page = event.get("page_url")
            if isinstance(page, str):
                entry = table.get(page)
                if entry is None:
                    entry = self.memo.miss(page)
                page_url, out.page_host, haystack = entry
                if page_url is not None and self._want_page:
                    out.fields["page_url"] = page_url
                    out.haystack = f"{out.haystack}\x00{haystack}"
        if self._want_link:
            link = event.get("link_url")
            if isinstance(link, str):
                entry = table.get(link)
                if entry is None:
                    entry = self.memo.miss(link)
                link_url, _, haystack = entry
                if link_url is not None:
                    out.fields["link_url"] = link_url
                    out.haystack = f"{out.haystack}\x00{haystack}"
        return None

    def scrub(self, url: object) -> str | None:
        """The scrubbed URL; None when nothing safe is left (memoised)."""
        if not isinstance(url, str):
            return None
        return self.memo[url][0]

    def _entry(self, url: str) -> _UrlEntry:
        scrubbed = self._scrub(url)
        if scrubbed is None:
            return _NO_URL
        # Raw URLs that differ only in dropped parameters (utm_*...) scrub alike.
        return self._outputs[scrubbed]

    def _scrub(self, url: str) -> str | None:
        split = _split(url, self._hosts.__getitem__)
        if split is None:
            return None
        scheme, host, path, query = split
        segment_of = self._segments.__getitem__
        clean_path = "/".join([segment_of(segment) for segment in path.split("/")]) or "/"
        kept: list[tuple[str, str]] = []
        if query and self._allowed:
            value_of = self._values.__getitem__
            for pair in query.split("&"):
                name, _, value = pair.partition("=")
                name = canonical(name.replace("+", " "))
                if name in self._allowed:
                    kept.append((name, value_of(value.replace("+", " "))))
        out = f"{scheme}://{host}{clean_path}"
        if kept:
            out += "?" + urlencode(kept, safe="[]")
        return out


class ReferrerOutcome(NamedTuple):
    """The referrer's host (None when unusable) and whether it is one of the site's own."""

    host: str | None
    internal: bool | None


_NO_REFERRER: Final = ReferrerOutcome(None, None)


class ReferrerScrubber:
    """The chain's referrer unit: a referrer URL becomes its host; internal when it is the
    page's host (the URL unit puts it in the draft) or configured.

    `urls.internal_hosts` entries match exactly, or as a suffix when they start with a dot.
    As a unit it writes the allow-listed `referrer_host` and `referrer_internal` among
    `fields`; results are memoised by raw referrer. `outcome(referrer, page_host=...)` is
    the same as a value.
    """

    def __init__(
        self,
        config: UrlsConfig,
        *,
        fields: Collection[str] = ("referrer_host", "referrer_internal"),
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self._exact = frozenset(h for h in config.internal_hosts if not h.startswith("."))
        self._suffixes = tuple(h for h in config.internal_hosts if h.startswith("."))
        self._want_host = "referrer_host" in fields
        self._want_internal = "referrer_internal" in fields
        self.memo: Memo[str, _ReferrerEntry] = Memo(self._entry, max_size=cache_size)
        self._table = self.memo.plain_table
        # Referrers are many (search pages, pins...) on few hosts.
        self._hosts: Memo[str, str | None] = Memo(_host_of, max_size=cache_size)
        self._host_entries: Memo[str, _ReferrerEntry] = Memo(self._host_entry, max_size=cache_size)

    def __call__(self, event: dict[str, Any], out: Draft) -> str | None:
        referrer = event.get("referrer_url")
        if isinstance(referrer, str):
            entry = self._table.get(referrer)
            if entry is None:
                entry = self.memo.miss(referrer)
            host, configured_internal, haystack = entry
            if host is not None:
                if self._want_host:
                    out.fields["referrer_host"] = host
                    out.haystack = f"{out.haystack}\x00{haystack}"
                if self._want_internal:
                    internal = configured_internal or host == out.page_host
                    out.fields["referrer_internal"] = internal
        return None

    def host(self, referrer: object) -> str | None:
        """The referrer's host, None when it has no usable one (memoised by referrer)."""
        if not isinstance(referrer, str):
            return None
        return self.memo[referrer][0]

    def configured_internal(self, host: str) -> bool:
        """True when `urls.internal_hosts` names `host` (exactly, or as a dotted suffix)."""
        return host in self._exact or any(host.endswith(s) or host == s[1:] for s in self._suffixes)

    def outcome(self, referrer: object, *, page_host: str | None = None) -> ReferrerOutcome:
        """The referrer's host and whether it is internal, for a page on `page_host`."""
        host = self.host(referrer)
        if host is None:
            return _NO_REFERRER
        return ReferrerOutcome(host, host == page_host or self.configured_internal(host))

    def _entry(self, referrer: str) -> _ReferrerEntry:
        split = _split(referrer, self._hosts.__getitem__)
        if split is None:
            return _NO_REFERRER_ENTRY
        return self._host_entries[split[1]]

    def _host_entry(self, host: str) -> _ReferrerEntry:
        return host, self.configured_internal(host), echo_haystack(host)


def host_of_scrubbed(url: str | None) -> str | None:
    """The host of a URL `UrlScrubber` returned (cheap: no re-parsing)."""
    if url is None:
        return None
    start = url.find("://") + 3
    end = url.find("/", start)
    return url[start:end] if end != -1 else url[start:]
