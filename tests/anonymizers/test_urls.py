"""URL and referrer scrubbing."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anonymizers.policy import UrlsConfig
from anonymizers.urls import ReferrerScrubber, UrlScrubber

URL_CASES = [
    pytest.param("https://shop.example/a/b", "https://shop.example/a/b", id="valid"),
    pytest.param(None, None, id="None"),
    pytest.param("", None, id="empty"),
    pytest.param(42, None, id="not-a-string"),
    pytest.param("  https://Shop.Example./p  ", "https://shop.example/p", id="case-dot-space"),
    pytest.param("https://shop.example", "https://shop.example/", id="no-path"),
    pytest.param(
        "https://shop.example/p?utm_source=nl&utm_medium=mail&utm_campaign=may&gclid=XYZ&email=a%40b.co#top",
        "https://shop.example/p?utm_source=nl&utm_medium=mail&utm_campaign=may",
        id="query-allowlist-fragment",
    ),
    pytest.param(
        "https://shop.example/p?sid=1&uid=2", "https://shop.example/p", id="no-allowed-param"
    ),
    pytest.param(
        "https://bob:pw@shop.example:8443/p", "https://shop.example/p", id="userinfo-port"
    ),
    pytest.param(
        "https://shop.example/users/alice@example.com/x",
        "https://shop.example/users/[email]/x",
        id="email-segment",
    ),
    pytest.param(
        "https://shop.example/users/alice%40example.com",
        "https://shop.example/users/[email]",
        id="email-encoded",
    ),
    pytest.param(
        "https://shop.example/u/alice%2540example.com",
        "https://shop.example/u/[email]",
        id="email-double-encoded",
    ),
    pytest.param(
        "https://shop.example/o/123e4567-e89b-12d3-a456-426614174000",
        "https://shop.example/o/[uuid]",
        id="uuid",
    ),
    pytest.param(
        "https://shop.example/o/1234567", "https://shop.example/o/[number]", id="digit-run"
    ),
    pytest.param(
        "https://shop.example/o/12345", "https://shop.example/o/12345", id="short-number-kept"
    ),
    pytest.param(
        "https://shop.example/r/AbCdEf123456GhIjKl", "https://shop.example/r/[token]", id="token"
    ),
    pytest.param(
        "https://shop.example/r/d41d8cd98f00b204e9800998ecf8427e",
        "https://shop.example/r/[token]",
        id="md5-hex",
    ),
    pytest.param(
        "https://shop.example/how-to-bake-bread-in-2024",
        "https://shop.example/how-to-bake-bread-in-2024",
        id="slug-kept",
    ),
    pytest.param(
        "https://shop.example/p;jsessionid=ABC123DEF456GHI789/x",
        "https://shop.example/p/x",
        id="matrix-param",
    ),
    pytest.param(
        "https://shop.example/c/+33612345678", "https://shop.example/c/[phone]", id="phone"
    ),
    pytest.param(
        "https://shop.example/pay/4111-1111-1111-1111", "https://shop.example/pay/[card]", id="card"
    ),
    pytest.param(
        "https://shop.example/s?utm_source=alice@example.com",
        "https://shop.example/s?utm_source=[email]",
        id="pii-in-kept-value",
    ),
    pytest.param("http://81.2.69.160/p", None, id="ipv4-host"),
    pytest.param("http://[2001:db8::1]/p", None, id="ipv6-host"),
    pytest.param("javascript:alert(1)", None, id="javascript"),
    pytest.param("mailto:alice@example.com", None, id="mailto"),
    pytest.param("/relative/path", None, id="relative"),
    pytest.param("https://shop.example/a\nb", None, id="control-char"),
    pytest.param("http://[::1", None, id="unparsable"),
]


@pytest.mark.parametrize(("raw", "expected"), URL_CASES)
def test_url_scrubbing(raw: object, expected: str | None) -> None:
    """URLs keep scheme, host, path and allow-listed parameters; personal data is redacted."""
    assert UrlScrubber(UrlsConfig()).scrub(raw) == expected


REFERRER_CASES = [
    pytest.param(
        "https://www.google.com/search?q=alice+smith",
        None,
        ("www.google.com", False),
        id="external",
    ),
    pytest.param(
        "https://shop.example/cart?sid=1", "shop.example", ("shop.example", True), id="same-host"
    ),
    pytest.param("https://blog.shop.example/x", None, ("blog.shop.example", True), id="suffix"),
    pytest.param("https://shop.example/x", None, ("shop.example", True), id="suffix-apex"),
    pytest.param("https://pay.example/x", None, ("pay.example", True), id="exact"),
    pytest.param("https://notshop.example/x", None, ("notshop.example", False), id="not-a-suffix"),
    pytest.param(None, None, (None, None), id="None"),
    pytest.param("", None, (None, None), id="empty"),
    pytest.param("android-app://com.google.android.gm", None, (None, None), id="app-scheme"),
    pytest.param("http://81.2.69.160/", None, (None, None), id="ip-host"),
]


@pytest.mark.parametrize(("raw", "page_host", "expected"), REFERRER_CASES)
def test_referrer_becomes_host(
    raw: object, page_host: str | None, expected: tuple[object, object]
) -> None:
    """A referrer keeps only its host and says whether it is internal."""
    unit = ReferrerScrubber(UrlsConfig(internal_hosts=(".shop.example", "pay.example")))
    assert tuple(unit.outcome(raw, page_host=page_host)) == expected


_PARAM = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
_VALUE = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=20
)
_SEGMENT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=20
)


@given(
    st.lists(_SEGMENT, max_size=5),
    st.lists(
        st.tuples(
            st.one_of(_PARAM, st.sampled_from(["utm_source", "utm_medium", "utm_campaign"])), _VALUE
        ),
        max_size=6,
    ),
    st.text(max_size=20),
)
def test_no_foreign_params_or_fragment(
    segments: list[str], params: list[tuple[str, str]], fragment: str
) -> None:
    """Output URLs never carry a query parameter outside the allowlist, nor a fragment."""
    from urllib.parse import quote, urlencode

    url = "https://shop.example/" + "/".join(quote(s, safe="") for s in segments)
    if params:
        url += "?" + urlencode(params)
    url += "#" + quote(fragment)
    result = UrlScrubber(UrlsConfig()).scrub(url)
    assert result is not None
    parts = urlsplit(result)
    assert parts.fragment == "" and "#" not in result
    assert {name for name, _ in parse_qsl(parts.query, keep_blank_values=True)} <= {
        "utm_source",
        "utm_medium",
        "utm_campaign",
    }
    assert parts.scheme == "https" and parts.hostname == "shop.example"


@given(st.emails())
def test_emails_in_paths_never_survive(email: str) -> None:
    """An e-mail address anywhere in a path, plain or percent-encoded, is redacted."""
    from urllib.parse import quote

    for segment in (email, quote(email, safe=""), quote(quote(email, safe=""), safe="")):
        result = UrlScrubber(UrlsConfig(), cache_size=0).scrub(
            f"https://shop.example/u/{segment}/x"
        )
        assert result is None or email.casefold() not in result.casefold()
        assert result is None or "@" not in result
