"""Identifier normalization: one spelling per identifier, and placeholders never become identifiers."""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recapture.domain.events import Identifier, IdentifierType
from recapture.domain.identifiers import (
    PLACEHOLDER_VALUES,
    cart_token_from_url,
    checkout_token_from_url,
    clean_token,
    decode_klaviyo_cookie,
    is_placeholder,
    klaviyo_cookie_identifiers,
    normalize_email,
    normalize_phone,
    shopify_numeric_id,
    unique_identifiers,
)
from tests.support import klaviyo_cookie

E164 = re.compile(r"^\+[1-9]\d{1,14}$")
CART_TOKEN = "Z2NwLXVzLWVhc3QxOjAxSjlGV0VQ"
CHECKOUT_TOKEN = "2a1ace52255252df566af0faaedfbfa7"

# --- placeholders ----------------------------------------------------------------------------------------------

PLACEHOLDERS = [
    "", " ", "null", "NULL", " undefined ", "Undefined", "none", "nil", "NaN", "0", "false", "[object Object]",
    "000", "0-0", "00000000-0000-0000-0000-000000000000", "0.0", "0:0", "___",
]


@pytest.mark.parametrize("value", PLACEHOLDERS)
def test_placeholder_values_are_recognized(value: str) -> None:
    """Front-end spellings of 'unset' (null, undefined, 0, all-zero ids...) are placeholders."""
    assert is_placeholder(value)


@pytest.mark.parametrize("value", ["abc", "1", "10", "c1a2b3", "0a", "client-0", "shopper@example.com"])
def test_real_values_are_not_placeholders(value: str) -> None:
    """Ordinary ids, even ones containing zeroes, are not placeholders."""
    assert not is_placeholder(value)


# --- clean_token -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, True, False, 0, "", "   ", "null", "undefined", "0", "0000", "x" * 513])
def test_clean_token_drops_unusable_values(value: object) -> None:
    """None, booleans, placeholders and over-long values give no token."""
    assert clean_token(value) is None


@pytest.mark.parametrize("value", [{"id": "123"}, ["123"], ("1",), {1, 2}, 1.5, object()])
def test_clean_token_rejects_structures_and_floats(value: object) -> None:
    """A dict, list or float is never an id: its Python repr must not become an identifier."""
    assert clean_token(value) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [(" abc-123 ", "abc-123"), (207119551, "207119551"), ("x" * 512, "x" * 512), ("client-0", "client-0")],
)
def test_clean_token_trims_and_stringifies(value: object, expected: str) -> None:
    """Strings are trimmed and integers become their decimal text."""
    assert clean_token(value) == expected


def test_huge_integers_give_no_id_instead_of_raising() -> None:
    """An integer too large to print (Python's digit limit) is no id, and does not raise."""
    assert clean_token(10**5000) is None
    assert shopify_numeric_id(-(10**5000)) is None
    assert normalize_phone(10**5000) is None


# --- Shopify ids ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (207119551, "207119551"),
        ("207119551", "207119551"),
        ("gid://shopify/Customer/123", "123"),
        (" gid://shopify/Customer/123 ", "123"),
        ("gid://shopify/ProductVariant/43661439271125", "43661439271125"),
        ("gid://shopify/OrderIdentity/5678", "5678"),
    ],
)
def test_shopify_numeric_id_accepts_numbers_strings_and_gids(value: object, expected: str) -> None:
    """Numbers, numeric strings and GraphQL gids all give the same numeric id."""
    assert shopify_numeric_id(value) == expected


@pytest.mark.parametrize(
    "value", [None, "", "null", "undefined", 0, "0", "gid://shopify/Customer/0", "gid://shopify/Customer/000", True]
)
def test_shopify_numeric_id_never_yields_a_placeholder(value: object) -> None:
    """Unset ids, including a gid whose number is all zeroes, give no id."""
    assert shopify_numeric_id(value) is None


def test_shopify_numeric_id_keeps_non_gid_text_verbatim() -> None:
    """A value that is not a gid is kept as it is (trimmed), not mangled."""
    assert shopify_numeric_id("gid://other/Customer/12") == "gid://other/Customer/12"


# --- email --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("shopper@example.com", "shopper@example.com"),
        ("  Shopper@Example.COM  ", "shopper@example.com"),
        ("\tBOB.Norman@HostMail.com\n", "bob.norman@hostmail.com"),
        ("first.last+tag@sub.example.co.uk", "first.last+tag@sub.example.co.uk"),
    ],
)
def test_normalize_email_trims_and_lower_cases(value: str, expected: str) -> None:
    """A valid email is trimmed and lower-cased into one spelling."""
    assert normalize_email(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        None, "", "null", "undefined", "0", "not-an-email", "shopper@", "@example.com", "a@@example.com",
        "shopper@example", "shopper at example.com", "a b@example.com", "shopper@exa mple.com", 42, True,
        ["shopper@example.com"], {"email": "shopper@example.com"},
    ],
)
def test_normalize_email_drops_invalid_values(value: object) -> None:
    """Anything that is not a syntactically valid email string gives None."""
    assert normalize_email(value) is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_normalize_email_never_raises_and_is_idempotent_on_text(value: str) -> None:
    """Any text is accepted without raising; normalizing a normalized email changes nothing."""
    once = normalize_email(value)
    if once is not None:
        assert once == once.strip().lower()
        assert normalize_email(once) == once


@settings(max_examples=200, deadline=None)
@given(st.emails())
def test_normalize_email_is_idempotent_on_valid_emails(value: str) -> None:
    """For generated valid addresses (and case variants), a second normalization is a no-op."""
    for variant in (value, value.upper(), f"  {value}  "):
        once = normalize_email(variant)
        if once is not None:
            assert normalize_email(once) == once


# --- phone --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "region", "expected"),
    [
        ("+1 (415) 555-2671", "US", "+14155552671"),
        ("(415) 555-2671", "US", "+14155552671"),
        ("415.555.2671", "US", "+14155552671"),
        (4155552671, "US", "+14155552671"),
        ("+14155552671", "GB", "+14155552671"),
        ("020 7946 0018", "GB", "+442079460018"),
        ("06 12 34 56 78", "FR", "+33612345678"),
        ("+33 6 12 34 56 78", "US", "+33612345678"),
    ],
)
def test_normalize_phone_formats_e164(value: object, region: str, expected: str) -> None:
    """Valid numbers become E.164, national numbers read in the default region."""
    assert normalize_phone(value, region) == expected


@pytest.mark.parametrize(
    "value",
    [
        None, "", "0", "null", "undefined", "12", "abc", "555-625-1199", "+1 000 000 0000", True, 1.5, ["+14155552671"],
        "+4930000000000000",
    ],
)
def test_normalize_phone_drops_invalid_values(value: object) -> None:
    """Placeholders, impossible or over-long (over 15 digits) numbers and non-scalar values give None."""
    assert normalize_phone(value) is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40), st.sampled_from(["US", "GB", "FR", "DE", "ZZ", ""]))
def test_normalize_phone_never_raises_and_outputs_e164(value: str, region: str) -> None:
    """Any text in any region never raises; a result is always E.164 and stable when normalized again."""
    phone = normalize_phone(value, region)
    if phone is not None:
        assert E164.match(phone)
        assert normalize_phone(phone, region) == phone


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"\A\+?[0-9 ()\-.]{0,20}\Z"))
def test_normalize_phone_on_phone_like_text(value: str) -> None:
    """Digit-and-punctuation strings (the usual form input) never raise and only give E.164."""
    phone = normalize_phone(value)
    assert phone is None or E164.match(phone)


# --- tokens in URLs ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"https://demo-store.myshopify.com/checkouts/cn/{CART_TOKEN}",
        f"https://demo-store.myshopify.com/checkouts/cn/{CART_TOKEN}/information?locale=en-US",
        f"https://demo-store.myshopify.com/checkouts/cn/{CART_TOKEN}?key=secret#top",
        f"/checkouts/cn/{CART_TOKEN}/thank-you",
    ],
)
def test_cart_token_from_checkout_url(url: str) -> None:
    """The cart token is read from a one-page checkout URL `/checkouts/cn/<token>`."""
    assert cart_token_from_url(url) == CART_TOKEN


@pytest.mark.parametrize(
    "url",
    [
        None, "", "https://demo-store.myshopify.com/cart", "https://demo-store.myshopify.com/checkouts/cn/",
        "https://demo-store.myshopify.com/checkouts/cn/null", "https://demo-store.myshopify.com/checkouts/cn/0000",
        "https://demo-store.myshopify.com/checkouts/cn/undefined/information",
    ],
)
def test_cart_token_from_url_without_token(url: str | None) -> None:
    """No cart token comes from URLs without one, or whose token is a placeholder."""
    assert cart_token_from_url(url) is None


@pytest.mark.parametrize(
    "url",
    [
        f"https://demo-store.myshopify.com/checkouts/{CHECKOUT_TOKEN}",
        f"https://demo-store.myshopify.com/checkouts/c/{CHECKOUT_TOKEN}/information",
        f"https://demo-store.myshopify.com/checkouts/{CHECKOUT_TOKEN}?step=contact_information",
    ],
)
def test_checkout_token_from_classic_checkout_url(url: str) -> None:
    """The 32-hex checkout token is read from classic `/checkouts/<token>` URLs."""
    assert checkout_token_from_url(url) == CHECKOUT_TOKEN


@pytest.mark.parametrize(
    "url", [None, "", "https://x/checkouts/not-hex", f"https://x/checkouts/{CHECKOUT_TOKEN}abc", f"https://x/cart/{CHECKOUT_TOKEN}"]
)
def test_checkout_token_from_url_without_token(url: str | None) -> None:
    """URLs without a well-formed checkout token give none."""
    assert checkout_token_from_url(url) is None


# --- Klaviyo cookie ----------------------------------------------------------------------------------------------


def test_decode_klaviyo_cookie_reads_base64_json() -> None:
    """`__kla_id` is base64 JSON; every field comes back."""
    raw = klaviyo_cookie(cid="abc", **{"$exchange_id": "ex.123", "$email": "a@example.com"})
    assert decode_klaviyo_cookie(raw) == {"cid": "abc", "$exchange_id": "ex.123", "$email": "a@example.com"}


def test_decode_klaviyo_cookie_reads_url_encoded_unpadded_and_urlsafe_values() -> None:
    """Percent-encoded, unpadded and URL-safe base64 spellings of the cookie decode alike."""
    payload = {"$exchange_id": "ex.123~?>>", "$email": "a@example.com"}
    standard = base64.b64encode(json.dumps(payload).encode()).decode()
    urlsafe = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()
    for raw in (quote(standard), standard.rstrip("="), urlsafe, urlsafe.rstrip("=")):
        assert decode_klaviyo_cookie(raw) == payload


@pytest.mark.parametrize(
    "raw",
    [
        None, "", "not base64 !!", "%%%", base64.b64encode(b"[1, 2]").decode(), base64.b64encode(b'"text"').decode(),
        base64.b64encode(b"\xff\xfe").decode(), base64.b64encode(b"{not json").decode(), "é",
    ],
)
def test_decode_klaviyo_cookie_tolerates_garbage(raw: str | None) -> None:
    """A missing, malformed or non-object cookie decodes to an empty dict."""
    assert decode_klaviyo_cookie(raw) == {}


def test_klaviyo_cookie_identifiers_reads_exchange_id_and_known_email() -> None:
    """`$exchange_id` becomes the Klaviyo exchange id and `$email` the Klaviyo-known email, normalized."""
    raw = klaviyo_cookie(**{"$exchange_id": "01ABC.xyz", "$email": " Known@Example.com "})
    assert klaviyo_cookie_identifiers(raw) == [
        Identifier(type=IdentifierType.KLAVIYO_COOKIE_EXCHANGE_ID, value="01ABC.xyz"),
        Identifier(type=IdentifierType.KLAVIYO_KNOWN_EMAIL, value="known@example.com"),
    ]


@pytest.mark.parametrize("exchange_id", ["", "null", "undefined", "0", "  "])
def test_klaviyo_cookie_placeholder_exchange_id_is_dropped(exchange_id: str) -> None:
    """A placeholder `$exchange_id` never becomes an identifier."""
    assert klaviyo_cookie_identifiers(klaviyo_cookie(**{"$exchange_id": exchange_id})) == []


def test_klaviyo_cookie_non_string_exchange_id_and_bad_email_are_dropped() -> None:
    """A numeric `$exchange_id` and an invalid `$email` are both ignored."""
    raw = base64.b64encode(json.dumps({"$exchange_id": 12345, "$email": "nobody"}).encode()).decode()
    assert klaviyo_cookie_identifiers(raw) == []


def test_klaviyo_cookie_without_identity_fields() -> None:
    """A cookie with only `cid` (anonymous Klaviyo visitor) gives no identifiers."""
    assert klaviyo_cookie_identifiers(klaviyo_cookie(cid="abc")) == []
    assert klaviyo_cookie_identifiers(None) == []


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=60))
def test_klaviyo_exchange_id_round_trips_through_the_cookie(exchange_id: str) -> None:
    """Any non-placeholder exchange id written into the cookie comes back trimmed."""
    found = klaviyo_cookie_identifiers(klaviyo_cookie(**{"$exchange_id": exchange_id}))
    if is_placeholder(exchange_id):
        assert found == []
    else:
        assert found == [Identifier(type=IdentifierType.KLAVIYO_COOKIE_EXCHANGE_ID, value=exchange_id.strip())]


# --- dedupe / contact -----------------------------------------------------------------------------------------------


def test_unique_identifiers_keeps_first_seen_order() -> None:
    """Duplicates are removed and the first occurrence keeps its place."""
    a = Identifier(type=IdentifierType.CLIENT_ID, value="c1")
    b = Identifier(type=IdentifierType.EMAIL, value="a@example.com")
    c = Identifier(type=IdentifierType.CLIENT_ID, value="c2")
    assert unique_identifiers([a, b, a, c, b]) == (a, b, c)


def test_contact_identifiers_are_flagged_as_contact() -> None:
    """Email, phone and Klaviyo-known email are contact data; ids and tokens are not."""
    contact = {t for t in IdentifierType if Identifier(type=t, value="x").is_contact}
    assert contact == {IdentifierType.EMAIL, IdentifierType.PHONE, IdentifierType.KLAVIYO_KNOWN_EMAIL}


# --- never raise ------------------------------------------------------------------------------------------------

ANY_SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=80), st.sampled_from(sorted(PLACEHOLDER_VALUES))
)


@settings(max_examples=300, deadline=None)
@given(ANY_SCALAR)
def test_identifier_normalizers_never_raise(value: object) -> None:
    """Every identifier normalizer accepts any scalar without raising and never returns a placeholder."""
    for result in (clean_token(value), shopify_numeric_id(value), normalize_email(value), normalize_phone(value)):
        assert result is None or (isinstance(result, str) and not is_placeholder(result))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_url_and_cookie_parsers_never_raise(value: str) -> None:
    """URL token parsers and the Klaviyo cookie decoder accept any text without raising."""
    for token in (cart_token_from_url(value), checkout_token_from_url(value)):
        assert token is None or not is_placeholder(token)
    assert isinstance(decode_klaviyo_cookie(value), dict)
    for identifier in klaviyo_cookie_identifiers(value):
        assert not is_placeholder(identifier.value)
