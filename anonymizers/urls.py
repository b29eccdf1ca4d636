"""URLs: keep scheme, host and path; allow-listed query parameters only; no fragment.

Path segments are percent-decoded (repeatedly, so double encoding does not hide anything)
and redacted when they hold an e-mail address, a UUID, a long token, a run of 6+ digits or
any other finding of `anonymizers.pii`; matrix parameters (`;jsessionid=...`) go. Values of
kept query parameters are scanned the same way. User info and port go; a host that is an IP
address, a scheme other than http(s) or anything unparsable makes the whole URL go (None).
Referrers keep only their host, marked internal when it is one of the site's own.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple
from urllib.parse import quote, unquote, urlencode, urlsplit

from anonymizers import pii
from anonymizers.ip import parse_ip
from anonymizers.memo import Memo
from anonymizers.policy import UrlsConfig

SCHEMES: Final = frozenset({"http", "https"})
TOKEN_MIN_LENGTH: Final = 12
"""A part (between - _ . ~) this long mixing letters and digits, or all hex, is a token."""
DEFAULT_CACHE_SIZE: Final = 65_536
_PATH_SAFE: Final = "!$&'()*+,=:@-._~[]"
_PIECE_RE: Final = re.compile(r"[A-Za-z0-9+/=_\-.~]+")
_SUBPIECE_SPLIT_RE: Final = re.compile(r"[\-_.~]")
_HEX_RE: Final = re.compile(r"^[0-9A-Fa-f]+$")
_HOST_RE: Final = re.compile(r"^[a-z0-9\-._~\u00a0-\uffff]+$")


def _decode(text: str) -> str:
    """Percent-decode until stable (at most 3 rounds)."""
    for _ in range(3):
        if "%" not in text:
            break
        decoded = unquote(text, errors="replace")
        if decoded == text:
            break
        text = decoded
    return text


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
    """A decoded path segment or query value with tokens and personal data replaced by markers."""
    if len(text) >= TOKEN_MIN_LENGTH:
        # Tokens first, whole: a session id must not survive as "ABCDEF[number]abc".
        text = _PIECE_RE.sub(lambda m: pii.TOKEN if _is_token(m.group(0)) else m.group(0), text)
    return pii.redact(text)[0]


class _Parts(NamedTuple):
    scheme: str
    host: str
    path: str
    query: list[tuple[str, str]]


def _host_of(netloc_host: str | None) -> str | None:
    if not netloc_host:
        return None
    host = netloc_host.rstrip(".").lower()
    if not host or not _HOST_RE.match(host):
        return None
    # IP literals (also the bracketless forms urlsplit gives) would carry the address out.
    if parse_ip(host) is not None or host.replace(".", "").isdigit() or ":" in host:
        return None
    if "@" in host or pii.redact(host)[1]:
        return None
    return host


def _split(url: object) -> tuple[str, str, str, str] | None:
    if not isinstance(url, str):
        return None
    text = url.strip()
    if not text or any(ord(c) < 32 for c in text):
        return None
    try:
        parts = urlsplit(text)
        hostname = parts.hostname
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        return None
    host = _host_of(hostname)
    if host is None:
        return None
    return scheme, host, parts.path, parts.query


class UrlScrubber:
    """Scrubs page and link URLs per `UrlsConfig`; None when nothing safe is left.

    Results are cached by input URL (bounded, `cache_size` entries, process memory only).
    """

    def __init__(self, config: UrlsConfig, *, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        self._allowed = frozenset(config.query_allowlist)
        self._cache: Memo[str, str | None] = Memo(self._scrub, max_size=cache_size)

    def __call__(self, url: object) -> str | None:
        if not isinstance(url, str):
            return None
        return self._cache[url]

    def _scrub(self, url: str) -> str | None:
        split = _split(url)
        if split is None:
            return None
        scheme, host, path, query = split
        segments = []
        for raw_segment in path.split("/"):
            segment = _decode(raw_segment.split(";", 1)[0])
            segments.append(quote(scrub_text(segment), safe=_PATH_SAFE))
        clean_path = "/".join(segments) or "/"
        kept: list[tuple[str, str]] = []
        if query and self._allowed:
            for pair in query.split("&"):
                name, _, value = pair.partition("=")
                name = _decode(name.replace("+", " "))
                if name in self._allowed:
                    kept.append((name, scrub_text(_decode(value.replace("+", " ")))))
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
    """A referrer URL becomes its host; internal when it is the page's host or configured.

    `urls.internal_hosts` entries match exactly, or as a suffix when they start with a dot.
    """

    def __init__(self, config: UrlsConfig, *, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        self._exact = frozenset(h for h in config.internal_hosts if not h.startswith("."))
        self._suffixes = tuple(h for h in config.internal_hosts if h.startswith("."))
        self._hosts: Memo[str, str | None] = Memo(_host_of_url, max_size=cache_size)

    def host(self, referrer: object) -> str | None:
        """The referrer's host, None when it has no usable one (cached by referrer)."""
        if not isinstance(referrer, str):
            return None
        return self._hosts[referrer]

    def configured_internal(self, host: str) -> bool:
        """True when `urls.internal_hosts` names `host` (exactly, or as a dotted suffix)."""
        return host in self._exact or any(host.endswith(s) or host == s[1:] for s in self._suffixes)

    def __call__(self, referrer: object, *, page_host: str | None = None) -> ReferrerOutcome:
        host = self.host(referrer)
        if host is None:
            return _NO_REFERRER
        return ReferrerOutcome(host, host == page_host or self.configured_internal(host))


def _host_of_url(url: str) -> str | None:
    split = _split(url)
    return split[1] if split is not None else None


def host_of_scrubbed(url: str | None) -> str | None:
    """The host of a URL `UrlScrubber` returned (cheap: no re-parsing)."""
    if url is None:
        return None
    start = url.find("://") + 3
    end = url.find("/", start)
    return url[start:end] if end != -1 else url[start:]
