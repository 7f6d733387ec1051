"""`GET /admin/report`: the gap report as JSON (admin bearer token); the contract is in docs/report.md."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from recapture.adapters.http.admin import authorized
from recapture.adapters.http.context import HttpContext
from recapture.adapters.http.responses import error_response, json_response
from recapture.application.gap_report import InvalidReportQueryError

USAGE = "pass ?shop=<configured shop>&since=<ISO-8601>&until=<ISO-8601>&period=day|week[&attribution_days=<n>]"


async def gap_report(request: Request, ctx: HttpContext) -> Response:
    if (refusal := authorized(request, ctx)) is not None:
        return refusal
    if ctx.reports is None:
        return error_response(503, "report_unavailable", "the gap report is not wired in this process")
    query = request.query_params
    shop = (query.get("shop") or (next(iter(ctx.shops)) if len(ctx.shops) == 1 else "")).strip().lower()
    if shop not in ctx.shops:
        problem = f"no shop {shop} is configured" if shop else "several shops are configured: name one"
        return error_response(422, "invalid_query", f"{problem}: {USAGE}")
    try:
        scope = ctx.reports.scope_of(shop, query.get("since"), query.get("until"), query.get("period"),
                                     query.get("attribution_days"))
    except InvalidReportQueryError as error:
        return error_response(422, "invalid_query", f"{error}: {USAGE}")
    # Counting a large range takes seconds: off the event loop, so that collection is not held up.
    report = await run_in_threadpool(ctx.reports.report, scope)
    return json_response(report.as_json())


def report_route(ctx: HttpContext) -> Route:
    async def endpoint(request: Request) -> Response:
        return await gap_report(request, ctx)

    return Route("/admin/report", endpoint, methods=["GET"])
