"""Normalization of identifiers at the edge: one spelling per identifier, or none at all."""

from __future__ import annotations

import base64
import binascii
import json
import re
from urllib.parse import unquote

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from recapture.domain.events import Identifier, IdentifierType

# Values that front-end code emits when a variable is unset; they must never become identifiers.
PLACEHOLDER_VALUES = frozenset({"", "null", "undefined", "none", "nil", "nan", "0", "false", "[object object]"})
_ALL_ZEROES = re.compile(r"^[0\-_.:]+$")
_CART_TOKEN_IN_URL = re.compile(r"/checkouts/cn/([A-Za-z0-9_\-]+)")
_CHECKOUT_TOKEN_IN_URL = re.compile(r"/checkouts/(?:c/)?([0-9a-f]{32})(?:[/?#]|$)")
_SHOPIFY_GID = re.compile(r"^gid://shopify/[A-Za-z]+/(\d+)$")
_MAX_ID_INT = 10**512


_PLACEHOLDER_FIRST_CHARACTERS = frozenset("0-_.:nufi[")


def is_placeholder(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered and lowered[0] not in _PLACEHOLDER_FIRST_CHARACTERS:
        return False  # the usual id: no placeholder starts this way, skip the set and the pattern
    return lowered in PLACEHOLDER_VALUES or bool(_ALL_ZEROES.match(lowered))


def clean_token(value: object) -> str | None:
    """A device id, token or numeric id as a trimmed string, or None for placeholders.

    Only text and integers are ids: a dict, list or float would otherwise become its Python repr.
    """
    if type(value) is str:
        text = value.strip()
        return text if text and len(text) <= 512 and not is_placeholder(text) else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    if isinstance(value, int) and not -_MAX_ID_INT < value < _MAX_ID_INT:
        return None  # str() of a huge int raises, and no id is that long
    text = str(value).strip()
    if not text or len(text) > 512 or is_placeholder(text):
        return None
    return text


def shopify_numeric_id(value: object) -> str | None:
    """Shopify ids arrive as numbers, strings or GraphQL gids; all mean the same customer."""
    text = clean_token(value)
    if text is None or text.isdigit():
        return text
    match = _SHOPIFY_GID.match(text)
    # gid://shopify/Customer/0 is as unset as a bare 0.
    return clean_token(match.group(1)) if match else text


def normalize_email(value: object) -> str | None:
    if not isinstance(value, str) or "@" not in value:
        return None
    try:
        # Deliverability needs DNS (I/O); syntax is what we can and must check here.
        checked = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError:
        return None
    return checked.normalized.lower()


def normalize_phone(value: object, default_region: str = "US") -> str | None:
    """E.164, the only phone format Klaviyo accepts; None when the number is not a possible number."""
    text = clean_token(value)
    if text is None:
        return None
    try:
        parsed = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    e164 = str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))
    # libphonenumber accepts some German numbers longer than E.164's 15 digits; Klaviyo would refuse them.
    return e164 if len(e164) <= 16 else None


def cart_token_from_url(url: str | None) -> str | None:
    if not url:
        return None
    match = _CART_TOKEN_IN_URL.search(url)
    return clean_token(match.group(1)) if match else None


def checkout_token_from_url(url: str | None) -> str | None:
    if not url:
        return None
    match = _CHECKOUT_TOKEN_IN_URL.search(url)
    return match.group(1) if match else None


def decode_klaviyo_cookie(raw: str | None) -> dict[str, object]:
    """Klaviyo's `__kla_id` cookie: base64 of a JSON object (cid, $exchange_id, $email, $referrer)."""
    if not raw:
        return {}
    text = unquote(raw.strip())
    padded = text + "=" * (-len(text) % 4)
    for decoder in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            decoded = json.loads(decoder(padded))
        except (binascii.Error, ValueError):
            continue
        return decoded if isinstance(decoded, dict) else {}
    return {}


def klaviyo_cookie_identifiers(raw: str | None) -> list[Identifier]:
    if not raw:
        return []
    cookie = decode_klaviyo_cookie(raw)
    found: list[Identifier] = []
    exchange_id = clean_token(cookie.get("$exchange_id"))
    if exchange_id and isinstance(cookie.get("$exchange_id"), str):
        found.append(Identifier(type=IdentifierType.KLAVIYO_COOKIE_EXCHANGE_ID, value=exchange_id))
    known_email = normalize_email(cookie.get("$email"))
    if known_email:
        found.append(Identifier(type=IdentifierType.KLAVIYO_KNOWN_EMAIL, value=known_email))
    return found


def unique_identifiers(identifiers: list[Identifier]) -> tuple[Identifier, ...]:
    """Deduplicated, in first-seen order."""
    return tuple(dict.fromkeys(identifiers))
