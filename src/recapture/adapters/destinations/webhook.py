"""Any ESP with a conversion API: the same event content as signed JSON, with the same delivery guarantees."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Sequence
from typing import Any

import httpx
import msgspec

from recapture.application.delivery_errors import TerminalDeliveryError, TransientDeliveryError
from recapture.domain.delivery import DeliveryEvent, DeliveryProfile

SIGNATURE_HEADER = "X-Recapture-Signature"
TIMESTAMP_HEADER = "X-Recapture-Timestamp"


def webhook_body(event: DeliveryEvent) -> bytes:
    """Stable JSON: the metric, a unique id for deduplication, the time, the profile, properties and value."""
    document: dict[str, Any] = {
        "kind": "event", "metric": event.metric, "unique_id": event.unique_id, "time": event.time.isoformat(),
        "shop": event.shop,
        "profile": msgspec.to_builtins(event.profile), "properties": event.properties,
        "value": float(event.value) if event.value is not None else None, "value_currency": event.value_currency,
    }
    return msgspec.json.encode(document)


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """base64(HMAC-SHA256(secret, "<timestamp>.<body>")): a receiver can refuse replays of old requests."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class WebhookDestination:
    def __init__(self, url: str, secret: str, client: httpx.Client | None = None) -> None:
        self._url = url
        self._secret = secret
        self._client = client or httpx.Client(timeout=10.0)

    def __repr__(self) -> str:  # the secret never appears in logs or errors
        return f"WebhookDestination(url={self._url!r})"

    def send_event(self, event: DeliveryEvent) -> None:
        self._post(webhook_body(event), event.unique_id)

    def import_profile(self, profile: DeliveryProfile) -> str | None:
        body = msgspec.json.encode({"kind": "profile", "profile": msgspec.to_builtins(profile)})
        self._post(body, hashlib.sha256(body).hexdigest()[:40])
        return None

    def subscribe(self, profiles: Sequence[DeliveryProfile], list_id: str) -> None:
        body = msgspec.json.encode({"kind": "subscription", "list_id": list_id,
                                    "profiles": [msgspec.to_builtins(p) for p in profiles]})
        self._post(body, hashlib.sha256(body).hexdigest()[:40])

    def _post(self, body: bytes, idempotency_key: str) -> None:
        timestamp = str(int(time.time()))
        headers = {
            "content-type": "application/json", TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: signature(self._secret, timestamp, body), "Idempotency-Key": idempotency_key,
        }
        try:
            response = self._client.post(self._url, content=body, headers=headers)
        except httpx.HTTPError as error:
            raise TransientDeliveryError(None, None, f"{type(error).__name__} calling the webhook") from error
        if response.is_success:
            return
        detail = response.text[:300]
        if response.status_code == 429 or response.status_code >= 500:
            retry_after = response.headers.get("retry-after")
            seconds = float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else None
            raise TransientDeliveryError(seconds, response.status_code, detail)
        raise TerminalDeliveryError(response.status_code, detail)
