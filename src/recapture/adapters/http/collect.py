"""POST /collect/shopify: envelopes from the Shopify custom pixel, one or a batch."""

from __future__ import annotations

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
    accepted = duplicates = 0
    for result in results:
        accepted += result.status is ItemStatus.ACCEPTED
        duplicates += result.status is ItemStatus.DUPLICATE
    return {
        "accepted": accepted,
        "duplicates": duplicates,
        "rejected": len(results) - accepted - duplicates,
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
        metrics.child(metrics.rejected, SOURCE, "unsupported_media_type").inc()
        return error_response(415, "unsupported_media_type", "send application/json (or text/plain holding JSON)")
    try:
        body = await read_body(request, ctx.settings.max_request_bytes)
        raw_items, is_batch = split_body(body)
    except BodyTooLargeError as error:
        metrics.child(metrics.rejected, SOURCE, "payload_too_large").inc()
        return error_response(413, "payload_too_large", str(error), limit=error.limit)
    except BodyError as error:
        metrics.child(metrics.rejected, SOURCE, error.code).inc()
        return error_response(400, error.code, str(error))
    items = [read_envelope(raw, ctx.settings.max_envelope_bytes) for raw in raw_items]
    metrics.child(metrics.received, SOURCE).inc(len(items))
    if not is_batch:
        only = items[0]
        if isinstance(only, Rejection):
            metrics.child(metrics.rejected, SOURCE, only.code).inc()
            return _single_rejection(only)
        if not ctx.collector.knows_shop(only.shop):
            metrics.child(metrics.rejected, SOURCE, "unknown_shop").inc()
            return error_response(404, "unknown_shop", f"shop {only.shop!r} is not configured", id=only.event_id)
    peer = request.client.host if request.client else None
    ip = client_ip(peer, request.headers.get("x-forwarded-for"), ctx.settings.trusted_networks)
    try:
        results = await ctx.collector.collect_pixel_events(items, ip, request.headers.get("user-agent"))
    except Exception:
        log.exception("storage_failed", source=SOURCE, items=len(items))
        metrics.child(metrics.rejected, SOURCE, "storage_unavailable").inc(len(items))
        return error_response(503, "storage_unavailable", "events were not stored; retry later")
    _count(ctx, results)
    return json_response(_summary(results), _status_code(results))


def _count(ctx: HttpContext, results: list[ItemResult]) -> None:
    # One counter update per distinct outcome, not one per item (a batch of 100 accepted events: one update).
    metrics = ctx.metrics
    tally: dict[tuple[ItemStatus, str], int] = {}
    for r in results:
        key = (r.status, (r.error or "rejected") if r.status is ItemStatus.REJECTED else "")
        tally[key] = tally.get(key, 0) + 1
    for (status, reason), count in tally.items():
        if status is ItemStatus.ACCEPTED:
            metrics.child(metrics.stored, SOURCE).inc(count)
        elif status is ItemStatus.DUPLICATE:
            metrics.child(metrics.duplicates, SOURCE).inc(count)
        else:
            metrics.child(metrics.rejected, SOURCE, reason).inc(count)
