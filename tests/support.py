"""Builders for the wire formats tests send: pixel envelopes and signed Shopify webhooks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from recapture.domain.delivery import DeliveryEvent, DeliveryProfile

SHOP = "demo-store.myshopify.com"
WEBHOOK_SECRET = "shpss_test_secret"
PREVIOUS_WEBHOOK_SECRET = "shpss_old_secret"
ADMIN_TOKEN = "admin-test-token"
SECRET_KEY = "0123456789abcdef0123456789abcdef"
# shared/ sits beside the project's root on developer machines and in CI.
SHARED = Path(os.environ.get("RECAPTURE_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))
WEBHOOK_FIXTURES = SHARED / "contracts" / "shopify" / "webhooks"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def wait_until(condition: Callable[[], bool], process: subprocess.Popen[bytes] | None = None,
               seconds: float = 60) -> None:
    """Poll (bounded) until `condition` holds; a dead `process` or an answerless server fails fast or retries."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the process exited with {process.returncode}")
        try:
            if condition():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError("condition not met in time")


def fixture_bytes(name: str) -> bytes:
    return (WEBHOOK_FIXTURES / name).read_bytes()


def sign(body: bytes, secret: str = WEBHOOK_SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def webhook_headers(
    body: bytes, topic: str, webhook_id: str, *, shop: str = SHOP, secret: str = WEBHOOK_SECRET,
    event_id: str = "evt-1", triggered_at: str = "2026-10-05T10:00:00Z",
) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Shop-Domain": shop,
        "X-Shopify-Webhook-Id": webhook_id,
        "X-Shopify-Event-Id": event_id,
        "X-Shopify-Triggered-At": triggered_at,
        "X-Shopify-API-Version": "2026-07",
        "X-Shopify-Hmac-Sha256": sign(body, secret),
    }


def klaviyo_cookie(**fields: str) -> str:
    return base64.b64encode(json.dumps(fields).encode()).decode()


def variant(product_id: str = "111", variant_id: str = "222", price: float = 25.0) -> dict[str, Any]:
    return {
        "id": variant_id,
        "title": "Blue / M",
        "sku": "TEE-BLU-M",
        "price": {"amount": price, "currencyCode": "USD"},
        "image": {"src": "https://cdn.shopify.com/tee.jpg"},
        "product": {"id": product_id, "title": "Organic Tee", "url": "/products/organic-tee", "vendor": "Acme"},
    }


def pixel_event(
    name: str = "product_viewed", event_id: str = "ev-1", client_id: str = "client-1",
    timestamp: str = "2026-10-05T09:59:00.000Z", href: str | None = None, data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    href = href or f"https://{SHOP}/products/organic-tee?utm_source=fb"
    if data is None:
        data = {"productVariant": variant()} if name == "product_viewed" else {}
    return {
        "id": event_id,
        "name": name,
        "timestamp": timestamp,
        "clientId": client_id,
        "type": "standard",
        "context": {
            "document": {"location": {"href": href, "origin": f"https://{SHOP}"}, "referrer": "", "title": "Tee"},
            "navigator": {"userAgent": "Mozilla/5.0 (iPhone)", "language": "en-US"},
            "window": {"screen": {"width": 390, "height": 844}},
        },
        "data": data,
    }


def envelope(event: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "shop": SHOP,
        "event": event or pixel_event(),
        "customer": None,
        "consent": {"analyticsProcessingAllowed": True, "marketingAllowed": True},
        "cookies": {},
    }
    body.update(overrides)
    return body


def checkout(email: str | None = "Shopper@Example.com", token: str = "chk-token-1", phone: str | None = None) -> dict[str, Any]:
    return {
        "token": token,
        "email": email,
        "phone": phone,
        "currencyCode": "USD",
        "totalPrice": {"amount": 55.0, "currencyCode": "USD"},
        "lineItems": [{"quantity": 2, "title": "Organic Tee", "variant": variant()}],
        "discountApplications": [{"type": "DISCOUNT_CODE", "title": "WELCOME10", "value": {"percentage": 10}}],
        "order": None,
    }


class RecordingDestination:
    """A destination that accepts everything and remembers it; `failures` are raised, in order, on the next sends."""

    def __init__(self) -> None:
        self.sent: list[DeliveryEvent] = []
        self.profiles: list[DeliveryProfile] = []
        self.subscriptions: list[tuple[str, str | None]] = []
        self.failures: list[Exception] = []

    def send_event(self, event: DeliveryEvent) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(event)

    def import_profile(self, profile: DeliveryProfile) -> str | None:
        self.profiles.append(profile)
        return None

    def subscribe(self, profiles: Sequence[DeliveryProfile], list_id: str) -> None:
        self.subscriptions += [(list_id, p.email) for p in profiles]
