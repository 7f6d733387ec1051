"""Shopper journeys that give the dashboard something to show, and logging in to it, for HTTP and browser tests."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from tests.support import SHOP, checkout, envelope, klaviyo_cookie, pixel_event, variant

EMAIL = "ann.secret@example.com"
PHONE = "+14155552671"
MASKED_EMAIL = "a***@e***.com"
MASKED_PHONE = "+14*****71"
_NONCE = re.compile(r'name="login_nonce" value="([^"]+)"')
_CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')


def login_nonce(html: str) -> str:
    found = _NONCE.search(html)
    assert found, "the login form carries a nonce"
    return found.group(1)


def csrf_token(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "the dashboard carries its CSRF token"
    return found.group(1)


def _cart_line(price: float = 30.0) -> dict[str, Any]:
    return {"quantity": 2, "merchandise": variant(price=price),
            "cost": {"totalAmount": {"amount": price * 2, "currencyCode": "USD"}}}


def add_to_cart(event_id: str, device: str, at: datetime, **extra: Any) -> dict[str, Any]:
    return envelope(pixel_event(name="product_added_to_cart", event_id=event_id, client_id=device,
                                timestamp=at.isoformat(), data={"cartLine": _cart_line()}), **extra)


def known_shopper(device: str, at: datetime, email: str = EMAIL, phone: str | None = PHONE) -> dict[str, Any]:
    """The shopper types their email (and phone) at Shopify's checkout: a session Klaviyo sees itself."""
    return envelope(pixel_event(name="checkout_contact_info_submitted", event_id=f"known-{device}", client_id=device,
                                timestamp=at.isoformat(),
                                data={"checkout": checkout(email=email, phone=phone, token=f"chk-{device}")}))


def recapture_only_cart(device: str, at: datetime, email: str = EMAIL, phone: str | None = PHONE) -> list[dict[str, Any]]:
    """Known from a checkout two days earlier, the shopper adds to cart with Klaviyo's script blocked."""
    return [known_shopper(device, at - timedelta(days=2), email=email, phone=phone),
            add_to_cart(f"cart-{device}", device, at)]


def klaviyo_link_cart(device: str, at: datetime, exchange_id: str) -> list[dict[str, Any]]:
    """Arrived from a Klaviyo email link (`_kx`): recapture can address the profile, Klaviyo's cookie is absent."""
    landing = pixel_event(name="page_viewed", event_id=f"land-{device}", client_id=device, timestamp=at.isoformat(),
                          href=f"https://{SHOP}/?_kx={exchange_id}", data={})
    return [envelope(landing), add_to_cart(f"cart-{device}", device, at + timedelta(minutes=2))]


def native_cart(device: str, at: datetime) -> dict[str, Any]:
    """Klaviyo's own cookie names the shopper: left to Klaviyo's native flow."""
    cookie = {"__kla_id": klaviyo_cookie(**{"$exchange_id": f"KX-native-{device}"})}
    return add_to_cart(f"cart-{device}", device, at, cookies=cookie)


def anonymous_browse(device: str, at: datetime) -> dict[str, Any]:
    return envelope(pixel_event(name="product_viewed", event_id=f"view-{device}", client_id=device,
                                timestamp=at.isoformat()))


def week_of_journeys(now: datetime, days: int = 5) -> list[dict[str, Any]]:
    """A few shoppers a day over the last `days` days: native, recapture-only (email or Klaviyo link), anonymous."""
    items: list[dict[str, Any]] = []
    for day in range(days):
        at = now - timedelta(days=day, hours=3)
        items.append(native_cart(f"native-{day}", at))
        if day % 2 == 0:
            items.append(native_cart(f"native-b-{day}", at - timedelta(minutes=20)))
        items += klaviyo_link_cart(f"link-{day}", at - timedelta(minutes=40), f"KX.link{day}")
        if day in (1, 3):
            items += recapture_only_cart(f"mail-{day}", at - timedelta(minutes=50), email=f"shopper{day}@example.com",
                                         phone=None)
        items.append(anonymous_browse(f"anon-{day}", at - timedelta(minutes=10)))
    return items
