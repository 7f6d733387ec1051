"""Campaign parameters and click ids from the landing URL."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recapture.domain.attribution import (
    CLICK_ID_KEYS,
    UTM_KEYS,
    attribution_from_url,
    campaign_parameters,
    query_parameters,
)
from recapture.domain.events import Attribution

SHOP_URL = "https://demo-store.myshopify.com/products/organic-tee"


def test_all_utm_parameters_are_read() -> None:
    """Every utm_* parameter on the landing URL is captured by name."""
    url = (
        f"{SHOP_URL}?utm_source=klaviyo&utm_medium=email&utm_campaign=abandoned-cart&utm_term=tee"
        "&utm_content=hero&utm_id=42"
    )
    assert attribution_from_url(url).utm == {
        "utm_source": "klaviyo", "utm_medium": "email", "utm_campaign": "abandoned-cart",
        "utm_term": "tee", "utm_content": "hero", "utm_id": "42",
    }


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("fbclid", "IwAR2xyz"), ("gclid", "Cj0KCQjw"), ("gbraid", "0AAAAA"), ("wbraid", "CjkKCQ"),
        ("ttclid", "E.C.P.abc"), ("msclkid", "7f1a2b3c"), ("_kx", "abc.XYZ123"),
    ],
)
def test_click_ids_are_read(key: str, value: str) -> None:
    """Each ad-network click id (and Klaviyo's `_kx`) is captured."""
    attribution = attribution_from_url(f"{SHOP_URL}?{key}={value}")
    assert attribution.click_ids == {key: value}
    assert attribution.utm == {}


def test_utm_and_click_ids_together_and_unknown_parameters_ignored() -> None:
    """utm_* and click ids are split apart; unrelated parameters (variant, ref) are ignored."""
    attribution = attribution_from_url(f"{SHOP_URL}?variant=222&utm_source=fb&fbclid=FB.123&ref=abc#reviews")
    assert attribution == Attribution(utm={"utm_source": "fb"}, click_ids={"fbclid": "FB.123"})


def test_values_are_percent_decoded() -> None:
    """Encoded values (%20, +, %2F) are decoded."""
    attribution = attribution_from_url(f"{SHOP_URL}?utm_campaign=spring%20sale&utm_term=blue+tee&utm_content=a%2Fb")
    assert attribution.utm == {"utm_campaign": "spring sale", "utm_term": "blue tee", "utm_content": "a/b"}


def test_empty_and_over_long_values_are_dropped() -> None:
    """Blank values and values over 512 characters are not kept."""
    url = f"{SHOP_URL}?utm_source=&utm_medium=email&gclid={'x' * 513}&fbclid={'y' * 512}"
    attribution = attribution_from_url(url)
    assert attribution.utm == {"utm_medium": "email"}
    assert attribution.click_ids == {"fbclid": "y" * 512}


def test_parameter_names_are_case_sensitive() -> None:
    """Only the lower-case parameter names browsers and ad networks actually use are recognized."""
    assert attribution_from_url(f"{SHOP_URL}?UTM_SOURCE=fb&GCLID=1") == Attribution()


@pytest.mark.parametrize("url", [None, "", SHOP_URL, f"{SHOP_URL}?", "http://[::1/broken?utm_source=x", "::::"])
def test_urls_without_usable_query_give_empty_attribution(url: str | None) -> None:
    """No query, or a malformed URL, gives an empty Attribution and no error."""
    assert attribution_from_url(url) == Attribution()


def test_query_parameters_of_relative_url() -> None:
    """A path-only URL still yields its query parameters."""
    assert query_parameters("/collections/all?utm_source=ig&page=2") == {"utm_source": "ig", "page": "2"}


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_attribution_never_raises(url: str) -> None:
    """Any text as a URL gives an Attribution with only known keys."""
    attribution = attribution_from_url(url)
    assert set(attribution.utm) <= set(UTM_KEYS)
    assert set(attribution.click_ids) <= set(CLICK_ID_KEYS)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from([*UTM_KEYS, *CLICK_ID_KEYS]), st.text(min_size=1, max_size=40), min_size=1))
def test_attribution_round_trips_encoded_parameters(params: dict[str, str]) -> None:
    """Parameters urlencoded onto a URL come back exactly (when non-blank)."""
    from urllib.parse import urlencode

    attribution = attribution_from_url(f"{SHOP_URL}?{urlencode(params)}")
    assert {**attribution.utm, **attribution.click_ids} == params


@settings(max_examples=2000)
@given(pairs=st.lists(st.tuples(
    st.sampled_from([*UTM_KEYS, *CLICK_ID_KEYS, "page", "utm%5Fsource", "utm+source", "", "variant"]),
    st.sampled_from(["", "=", "=a", "=a+b", "=%41%zz", "=x=y", "=" + "v" * 600, "=%E2%82%AC"]),
), max_size=8))
def test_campaign_parameters_are_read_as_the_standard_query_parser_reads_them(pairs: list[tuple[str, str]]) -> None:
    url = "https://shop.example/p?" + "&".join(key + value for key, value in pairs)
    every = query_parameters(url)
    assert campaign_parameters(url) == {k: v for k, v in every.items() if k in (*UTM_KEYS, *CLICK_ID_KEYS)}


URL_PIECES = st.sampled_from([
    "https://shop.example", "http://[::1]", "http://[::1", "/p", "?", "#", "&", "=", "utm_source=a", "fbclid=b",
    " ", "\t", "\n", "\x00", "%20", "+", "//x", "a:b", "?x#y?z", "é",
])


@settings(max_examples=3000)
@given(st.one_of(st.lists(URL_PIECES, min_size=1, max_size=12).map("".join), st.text(min_size=1, max_size=80)))
def test_the_query_is_found_as_urlsplit_finds_it(url: str) -> None:
    """The shortcut for plain URLs gives exactly urlsplit's query (and None where urlsplit raises)."""
    from urllib.parse import urlsplit

    from recapture.domain.attribution import _query

    try:
        expected: str | None = urlsplit(url).query
    except ValueError:
        expected = None
    assert _query(url) == expected
