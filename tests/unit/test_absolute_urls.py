"""Product and image URLs are made absolute as urljoin would, including on the fast paths that skip it."""

from __future__ import annotations

from urllib.parse import urljoin

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from recapture.domain.shopify_pixel import _absolute_url

ORIGINS = st.sampled_from(["https://a.com", "https://a.com:8080", "http://x.myshopify.com", "https://a.com/sub"])
PREFIXES = st.sampled_from(["/", "https://cdn.shopify.com", "http://a.b:80", "https://x.y/", "HTTPS://A.com/", "/a/../"])
TAILS = st.text(alphabet="abcXYZ019/.?#%&=:;@!$'()*+,-_~ \t\n\\[]é", max_size=20)


@settings(max_examples=3000)
@given(origin=ORIGINS, prefix=PREFIXES, tail=TAILS)
def test_urls_are_made_absolute_exactly_as_urljoin_makes_them(origin: str, prefix: str, tail: str) -> None:
    url = prefix + tail
    assume(not url.startswith("//"))  # protocol-relative: https, see below
    try:
        expected = urljoin(origin, url)
    except ValueError:
        expected = url
    assert _absolute_url(url, origin) == expected


def test_protocol_relative_image_sources_become_https() -> None:
    assert _absolute_url("//cdn.shopify.com/s/files/tee.jpg", "https://a.com") == "https://cdn.shopify.com/s/files/tee.jpg"


def test_a_relative_path_without_an_origin_stays_as_it_came() -> None:
    assert _absolute_url("/products/tee", None) == "/products/tee"
