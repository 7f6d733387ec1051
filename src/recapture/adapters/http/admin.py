"""Admin endpoints (bearer token): the manual clock and the status a simulation driver waits on."""

from __future__ import annotations

from datetime import datetime

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from recapture.adapters.clock import ClockWentBackwardsError, ManualClock
from recapture.adapters.http.client_ip import client_ip
from recapture.adapters.http.context import HttpContext
from recapture.adapters.http.responses import error_response, json_response
from recapture.adapters.web.auth import token_matches


class ClockRequest(msgspec.Struct):
    now: datetime


def authorized(request: Request, ctx: HttpContext) -> Response | None:
    """None when the caller holds the admin token, else the response that refuses it (429 while guessing)."""
    expected = ctx.settings.admin_token
    given = request.headers.get("authorization", "")
    scheme, _, token = given.partition(" ")
    if expected is None:
        return error_response(401, "admin_disabled", "set RECAPTURE_ADMIN_TOKEN to use admin endpoints")
    peer = request.client.host if request.client else None
    address = client_ip(peer, request.headers.get("x-forwarded-for"), ctx.settings.trusted_networks)
    if ctx.token_guesses.blocked(address):
        return error_response(429, "too_many_failures", "too many wrong admin tokens from here: wait a minute")
    if scheme.lower() != "bearer" or not token_matches(token, expected.get_secret_value()):
        ctx.token_guesses.failed(address)
        return error_response(401, "unauthorized", "send Authorization: Bearer <admin token>")
    return None


async def set_clock(request: Request, ctx: HttpContext, clock: object) -> Response:
    if (refusal := authorized(request, ctx)) is not None:
        return refusal
    if not isinstance(clock, ManualClock):
        return error_response(409, "clock_not_manual", "the clock is manual only with RECAPTURE_CLOCK=manual")
    try:
        wanted = msgspec.json.decode(await request.body(), type=ClockRequest).now
    except msgspec.MsgspecError as error:
        return error_response(422, "invalid_clock", f'send {{"now": "<ISO-8601>"}}: {error}')
    try:
        now = clock.set(wanted)
    except ClockWentBackwardsError as error:
        return error_response(409, "clock_backwards", str(error), now=error.current.isoformat())
    return json_response({"now": now.isoformat()})


async def status(request: Request, ctx: HttpContext) -> Response:
    if (refusal := authorized(request, ctx)) is not None:
        return refusal
    return json_response(ctx.status.status())


async def person(request: Request, ctx: HttpContext) -> Response:
    if (refusal := authorized(request, ctx)) is not None:
        return refusal
    raw_id = request.path_params["person_id"]
    report = ctx.people.explain(int(raw_id)) if raw_id.isdigit() else None
    if report is None:
        return error_response(404, "unknown_person", f"no person {raw_id}")
    return json_response(report)


MAX_ATTRIBUTIONS = 5000


async def attributions(request: Request, ctx: HttpContext) -> Response:
    """Processed events in id order with the person each belongs to now: `?shop=&after=<id>&limit=`."""
    if (refusal := authorized(request, ctx)) is not None:
        return refusal
    query = request.query_params
    shop = (query.get("shop") or (next(iter(ctx.shops)) if len(ctx.shops) == 1 else "")).lower()
    after, limit = query.get("after", "0"), query.get("limit", "1000")
    if shop not in ctx.shops or not after.isdigit() or not limit.isdigit():
        return error_response(422, "invalid_query", "pass ?shop=<configured shop>&after=<event id>&limit=<n>")
    rows = ctx.people.attributions(shop, int(after), min(int(limit), MAX_ATTRIBUTIONS))
    return json_response({"shop": shop, "attributions": rows, "next": rows[-1]["id"] if rows else int(after)})
