"""The Starlette application: routes bound to the context the wiring built."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from recapture.adapters.http import admin
from recapture.adapters.http.collect import SOURCE as PIXEL_SOURCE
from recapture.adapters.http.collect import collect_shopify
from recapture.adapters.http.context import HttpContext
from recapture.adapters.http.cors import cors_headers, origin_refused, preflight
from recapture.adapters.http.report import report_route
from recapture.adapters.http.responses import error_response, json_response
from recapture.adapters.http.webhooks import shopify_webhook
from recapture.adapters.web.routes import dashboard_routes

Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]
Handler = Callable[[Request], Awaitable[Response]]


def build_app(ctx: HttpContext, clock: object, lifespan: Lifespan | None = None) -> Starlette:
    allowed = ctx.allowed_origins

    async def collect(request: Request) -> Response:
        if request.method == "OPTIONS":
            return preflight(request, allowed)
        if origin_refused(request, allowed):
            ctx.metrics.child(ctx.metrics.rejected, PIXEL_SOURCE, "origin_not_allowed").inc()
            return error_response(403, "origin_not_allowed", "this origin is not a configured shop origin")
        response = await collect_shopify(request, ctx)
        response.headers.update(cors_headers(request.headers.get("origin"), allowed))
        return response

    async def webhook(request: Request) -> Response:
        return await shopify_webhook(request, ctx)

    async def pixel(_: Request) -> Response:
        return PlainTextResponse(ctx.pixel_script, media_type="application/javascript")

    async def healthz(_: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(_: Request) -> Response:
        checks = ctx.readiness.check()
        return json_response({"ready": all(checks.values()), "checks": checks}, 200 if all(checks.values()) else 503)

    async def metrics(_: Request) -> Response:
        return Response(ctx.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def set_clock(request: Request) -> Response:
        return await admin.set_clock(request, ctx, clock)

    async def status(request: Request) -> Response:
        return await admin.status(request, ctx)

    async def person(request: Request) -> Response:
        return await admin.person(request, ctx)

    async def attributions(request: Request) -> Response:
        return await admin.attributions(request, ctx)

    routes = [
        Route("/collect/shopify", collect, methods=["POST", "OPTIONS"]),
        Route("/webhooks/shopify", webhook, methods=["POST"]),
        Route("/pixel/shopify.js", pixel, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/admin/clock", set_clock, methods=["POST"]),
        Route("/admin/status", status, methods=["GET"]),
        Route("/admin/persons/{person_id}", person, methods=["GET"]),
        Route("/admin/attributions", attributions, methods=["GET"]),
        report_route(ctx),
    ]
    routes += dashboard_routes(ctx)
    return Starlette(routes=routes, lifespan=lifespan)
