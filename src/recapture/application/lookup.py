"""Turning what an operator types (an email, a phone, a device id, a token) into identifiers to look up."""

from __future__ import annotations

from recapture.domain.events import Identifier, IdentifierType
from recapture.domain.identifiers import clean_token, normalize_email, normalize_phone, shopify_numeric_id

T = IdentifierType


def candidates(text: str, default_region: str = "US") -> list[Identifier]:
    """Every identifier the text could be, most specific first: `whois` tries them in turn."""
    email = normalize_email(text)
    if email:
        return [Identifier(type=T.EMAIL, value=email)]
    found: list[Identifier] = []
    phone = normalize_phone(text, default_region)
    if phone and (text.strip().startswith("+") or not text.strip().isdigit()):
        found.append(Identifier(type=T.PHONE, value=phone))
    token = clean_token(text)
    if token is None:
        return found
    customer = shopify_numeric_id(token)
    if customer and customer.isdigit():
        found += [Identifier(type=T.SHOPIFY_CUSTOMER_ID, value=customer), Identifier(type=T.ORDER_ID, value=customer)]
    for kind in (T.CLIENT_ID, T.CHECKOUT_TOKEN, T.CART_TOKEN, T.KLAVIYO_EXCHANGE_ID, T.ANONYMOUS_ID, T.USER_ID):
        found.append(Identifier(type=kind, value=token))
    if phone and not any(i.type is T.PHONE for i in found):
        found.append(Identifier(type=T.PHONE, value=phone))
    return found
