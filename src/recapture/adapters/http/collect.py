"""POST /collect/shopify: envelopes from the Shopify custom pixel, one or a batch."""

from __future__ import annotations

from collections import Counter as Tally

import structlog
from starlette.requests import Request
from starlette.responses import Response

from recapture.adapters.http.client_ip import client_ip
from recapture.adapters.http.context import HttpContext
from recapture.adapters.http.responses import (
    BodyTooLargeError,
    error_response,
    json_response,
    media_type,
    read_body,
)
from recapture.adapters.http.wire import BodyError, read_envelope, split_body
from recapture.application.collector import ItemResult, ItemStatus, Rejection

SOURCE = "shopify_pixel"
# The pixel posts text/plain: a "simple" CORS request needs no preflight, which keepalive fetches dislike.
ACCEPTED_MEDIA_TYPES = frozenset({"application/json", "text/plain"})
log = structlog.get_logger("recapture.collect")


def _summary(results: list[ItemResult]) -> dict[str, object]:
    tally = Tally(r.status for r in results)
    return {
        "accepted": tally[ItemStatus.ACCEPTED],
        "duplicates": tally[ItemStatus.DUPLICATE],
        "rejected": tally[ItemStatus.REJECTED],
        "results": [_item(r) for r in results],
    }


def _item(result: ItemResult) -> dict[str, object]:
    item: dict[str, object] = {"index": result.index, "status": result.status.value, "id": result.id}
    if result.error:
        item["error"] = {"code": result.error, "message": result.message}
    if result.flags:
        item["flags"] = list(result.flags)
    return item


def _status_code(results: list[ItemResult]) -> int:
    rejected = sum(r.status is ItemStatus.REJECTED for r in results)
    if rejected == 0:
        return 200
    return 422 if rejected == len(results) else 207


def _single_rejection(item: Rejection) -> Response:
    status = {"envelope_too_large": 413}.get(item.code, 422)
    return error_response(status, item.code, item.message, id=item.id)


async def collect_shopify(request: Request, ctx: HttpContext) -> Response:
    metrics = ctx.metrics
    if media_type(request) not in ACCEPTED_MEDIA_TYPES:
        metrics.rejected.labels(SOURCE, "unsupported_media_type").inc()
        return error_response(415, "unsupported_media_type", "send application/json (or text/plain holding JSON)")
    try:
        body = await read_body(request, ctx.settings.max_request_bytes)
        raw_items, is_batch = split_body(body)
    except BodyTooLargeError as error:
        metrics.rejected.labels(SOURCE, "payload_too_large").inc()
        return error_response(413, "payload_too_large", str(error), limit=error.limit)
    except BodyError as error:
        metrics.rejected.labels(SOURCE, error.code).inc()
        return error_response(400, error.code, str(error))
    items = [read_envelope(raw, ctx.settings.max_envelope_bytes) for raw in raw_items]
    metrics.received.labels(SOURCE).inc(len(items))
    if not is_batch:
        only = items[0]
        if isinstance(only, Rejection):
            metrics.rejected.labels(SOURCE, only.code).inc()
            return _single_rejection(only)
        if not ctx.collector.knows_shop(only.shop):
            metrics.rejected.labels(SOURCE, "unknown_shop").inc()
            return error_response(404, "unknown_shop", f"shop {only.shop!r} is not configured", id=only.event_id)
    peer = request.client.host if request.client else None
    ip = client_ip(peer, request.headers.get("x-forwarded-for"), ctx.settings.trusted_networks)
    try:
        results = await ctx.collector.collect_pixel_events(items, ip, request.headers.get("user-agent"))
    except Exception:
        log.exception("storage_failed", source=SOURCE, items=len(items))
        metrics.rejected.labels(SOURCE, "storage_unavailable").inc(len(items))
        return error_response(503, "storage_unavailable", "events were not stored; retry later")
    _count(ctx, results)
    return json_response(_summary(results), _status_code(results))


def _count(ctx: HttpContext, results: list[ItemResult]) -> None:
    # One counter update per distinct outcome, not one per item (a batch of 100 accepted events: one update).
    metrics = ctx.metrics
    tally = Tally((r.status, (r.error or "rejected") if r.status is ItemStatus.REJECTED else "") for r in results)
    for (status, reason), count in tally.items():
        if status is ItemStatus.ACCEPTED:
            metrics.stored.labels(SOURCE).inc(count)
        elif status is ItemStatus.DUPLICATE:
            metrics.duplicates.labels(SOURCE).inc(count)
        else:
            metrics.rejected.labels(SOURCE, reason).inc(count)
