"""POST /webhooks/shopify: signed Shopify webhooks, verified, deduplicated, persisted, then acknowledged."""

from __future__ import annotations

import base64
import hashlib
import hmac

import msgspec
import structlog
from starlette.requests import Request
from starlette.responses import Response

from recapture.adapters.http.context import HttpContext
from recapture.adapters.http.responses import BodyTooLargeError, error_response, json_response, read_body
from recapture.application.collector import ItemStatus
from recapture.domain.shopify_webhook import WebhookDelivery
from recapture.settings import ShopSettings

SOURCE = "shopify_webhook"
# Orders with hundreds of lines run to a few hundred KB; the pixel's 500 KB limit would refuse real orders.
MAX_WEBHOOK_BYTES = 5_000_000
log = structlog.get_logger("recapture.webhooks")


def signature_matches(body: bytes, signature: str, shop: ShopSettings) -> bool:
    """Constant-time comparison against every configured secret (current and previous during a rotation)."""
    matched = False
    for secret in shop.webhook_secrets:
        digest = hmac.new(secret.get_secret_value().encode(), body, hashlib.sha256).digest()
        matched |= hmac.compare_digest(base64.b64encode(digest), signature.encode())
    return matched


def _reject(ctx: HttpContext, status: int, code: str, message: str) -> Response:
    ctx.metrics.child(ctx.metrics.rejected, SOURCE, code).inc()
    return error_response(status, code, message)


async def shopify_webhook(request: Request, ctx: HttpContext) -> Response:
    headers = request.headers
    try:
        body = await read_body(request, MAX_WEBHOOK_BYTES)
    except BodyTooLargeError as error:
        return _reject(ctx, 413, "payload_too_large", str(error))
    ctx.metrics.child(ctx.metrics.received, SOURCE).inc()
    shop = ctx.shops.get(headers.get("x-shopify-shop-domain", "").strip().lower())
    if shop is None:
        return _reject(ctx, 404, "unknown_shop", "X-Shopify-Shop-Domain names no configured shop")
    signature = headers.get("x-shopify-hmac-sha256", "")
    if not signature or not signature_matches(body, signature, shop):
        return _reject(ctx, 401, "bad_signature", "X-Shopify-Hmac-Sha256 is missing or does not match")
    topic, webhook_id = headers.get("x-shopify-topic"), headers.get("x-shopify-webhook-id")
    if not topic or not webhook_id:
        return _reject(ctx, 400, "missing_header", "X-Shopify-Topic and X-Shopify-Webhook-Id are required")
    try:
        resource = msgspec.json.decode(body)
    except msgspec.DecodeError as error:
        return _reject(ctx, 400, "malformed_json", f"the body is not JSON: {error}")
    if not isinstance(resource, dict):
        return _reject(ctx, 422, "invalid_resource", "a webhook body must be a JSON object")
    delivery = WebhookDelivery(
        shop=shop.domain, topic=topic.strip().lower(), webhook_id=webhook_id.strip(),
        event_id=headers.get("x-shopify-event-id"), triggered_at=headers.get("x-shopify-triggered-at"),
        api_version=headers.get("x-shopify-api-version"), resource=resource, raw=body,
    )
    try:
        result = await ctx.collector.collect_webhook(delivery)
    except Exception:
        log.exception("storage_failed", source=SOURCE, topic=delivery.topic)
        return _reject(ctx, 503, "storage_unavailable", "not stored; Shopify will retry")
    if result.status is ItemStatus.DUPLICATE:
        ctx.metrics.child(ctx.metrics.duplicates, SOURCE).inc()
    else:
        ctx.metrics.child(ctx.metrics.stored, SOURCE).inc()
    return json_response({"status": result.status.value, "id": result.id, "topic": delivery.topic})
