"""The dashboard's routes: the page, its panels as fragments (polled by dashboard.js), login, logout and retries.

Every page works without JavaScript (forms post and redirect back); with it, panels refresh in place and the
retry buttons post with fetch. Database work runs in the thread pool, off the event loop the collector shares.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs, urlencode

import structlog
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import escape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from recapture.adapters.http.client_ip import client_ip
from recapture.adapters.http.context import HttpContext
from recapture.adapters.http.responses import BodyTooLargeError, read_body
from recapture.adapters.web.auth import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    SESSION_SECONDS,
    Session,
    SessionSigner,
    token_matches,
)
from recapture.adapters.web.panels import format_seconds, funnel_panel, lift_panel
from recapture.adapters.web.services import DashboardServices
from recapture.settings import ShopSettings

log = structlog.get_logger("recapture.dashboard")

RANGES = (7, 30)
PANELS = ("funnel", "lift", "deliveries", "dead-letters", "events")
REPORT_PANELS = frozenset({"funnel", "lift"})
EVENT_LIMIT = 40
DEAD_LETTER_LIMIT = 50
FORM_LIMIT = 8192
# Row ids are 64-bit: a larger one names no delivery (and would overflow the database's integer).
MAX_ROW_ID = 2**63 - 1
# The count a no-JavaScript retry puts in the URL it redirects to: digits only, never words.
REQUEUED_COUNT = re.compile(r"[0-9]{1,9}")
FRAGMENT_HEADER = "x-dashboard-fragment"
STATIC_FILES = {"dashboard.css": "text/css; charset=utf-8", "dashboard.js": "text/javascript; charset=utf-8"}
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking: a session (which must show its CSRF token to change anything) or a bearer of the token."""

    session: Session | None
    csrf_token: str


@dataclass(frozen=True, slots=True)
class View:
    shop: str
    days: int

    @property
    def query(self) -> str:
        return urlencode({"shop": self.shop, "days": self.days})


class InvalidViewError(ValueError):
    """A shop or range the dashboard does not show; the message says which ones it does."""


def destinations_configured(shop: ShopSettings) -> list[str]:
    """The destination names the wiring gives this shop (wiring.destinations_of)."""
    names = ["klaviyo"] if shop.klaviyo_private_key is not None else []
    return names + (["webhook"] if shop.webhook_url and shop.webhook_secret else [])


def report_window(now: datetime, days: int) -> tuple[datetime, datetime]:
    """Whole days: from midnight UTC `days - 1` days ago until now, so a chart has exactly `days` points."""
    midnight = datetime.combine(now.astimezone(UTC).date(), time(), tzinfo=UTC)
    return midnight - timedelta(days=days - 1), now


def requeued_notice(count: int) -> str:
    if count == 0:
        return "Nothing was queued again: no such dead letter any more."
    if count == 1:
        return "1 dead letter queued again: the worker sends it now."
    return f"{count} dead letters queued again: the worker sends them now."


def format_when(moment: datetime) -> str:
    """`Oct 5 10:02:13` (UTC; the footer says so)."""
    moment = moment.astimezone(UTC)
    return f"{moment:%b} {moment.day} {moment:%H:%M:%S}"


def source_label(source: str) -> str:
    return source.removeprefix("shopify_")


def from_trusted_proxy(peer: str, networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(address in network for network in networks)


def safe_next(target: str | None) -> str:
    """Only a path of the dashboard itself: a login link must never send anyone elsewhere."""
    if target and target.startswith("/dashboard") and not target.startswith("//") and "\\" not in target:
        return target
    return "/dashboard"


class Dashboard:
    def __init__(self, ctx: HttpContext) -> None:
        self._ctx = ctx
        token = ctx.settings.admin_token
        self._signer = SessionSigner(token.get_secret_value()) if token is not None else None
        self._throttle = ctx.token_guesses
        self._templates = Environment(
            loader=PackageLoader("recapture.adapters.web", "templates"),
            autoescape=select_autoescape(["html"]), undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        )
        self._templates.filters.update(when=format_when, duration=format_seconds, source=source_label)
        folder = files("recapture.adapters.web").joinpath("static")
        self._static = {name: folder.joinpath(name).read_bytes() for name in STATIC_FILES}
        self._version = hashlib.sha256(b"".join(self._static.values())).hexdigest()[:12]

    def routes(self) -> list[Route]:
        return [
            Route("/dashboard", self.page, methods=["GET"]),
            Route("/dashboard/login", self.login, methods=["GET", "POST"]),
            Route("/dashboard/logout", self.logout, methods=["POST"]),
            Route("/dashboard/panels/{panel}", self.panel, methods=["GET"]),
            Route("/dashboard/dead-letters/retry", self.retry_all, methods=["POST"]),
            Route("/dashboard/dead-letters/{delivery_id:int}/retry", self.retry_one, methods=["POST"]),
            Route("/dashboard/static/{name}", self.static, methods=["GET"]),
        ]

    # -- who is asking ---------------------------------------------------------------------------------------------

    def _caller(self, request: Request) -> Caller | Response:
        """Who is asking, or the response that refuses them (the login page, 401, or 429 while throttled)."""
        if self._signer is None:
            return self._unauthenticated(request)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        expected = self._ctx.settings.admin_token
        if scheme.lower() == "bearer" and expected is not None:
            # Throttled like the login form, else guessing would simply move to this header.
            address = self._client_address(request)
            if self._throttle.blocked(address):
                return self._html("<p>Too many failed sign-ins: wait a minute and try again.</p>", 429)
            if token_matches(token, expected.get_secret_value()):
                return Caller(None, "")
            self._throttle.failed(address)
            return self._unauthenticated(request)
        session = self._signer.verify(request.cookies.get(SESSION_COOKIE))
        if session is None:
            return self._unauthenticated(request)
        return Caller(session, self._signer.csrf_token(session))

    async def _checked_post(self, request: Request) -> Caller | Response:
        """The caller of a state-changing POST, or the refusal: not signed in, too large, no valid CSRF token."""
        caller = self._caller(request)
        if isinstance(caller, Response):
            return caller
        try:
            form = await self._form(request)
        except BodyTooLargeError:
            return self._html("<p>Request too large.</p>", 413)
        if self._csrf_refused(caller, request, form):
            return self._html("<p>This form has expired: reload the dashboard and try again.</p>", 403)
        return caller

    def _csrf_refused(self, caller: Caller, request: Request, form: dict[str, str]) -> bool:
        if caller.session is None or self._signer is None:
            return False
        given = request.headers.get("x-csrf-token") or form.get("csrf_token")
        return not self._signer.csrf_valid(caller.session, given)

    def _client_address(self, request: Request) -> str | None:
        """The client as the throttle counts it: X-Forwarded-For only from a trusted proxy."""
        peer = request.client.host if request.client else None
        return client_ip(peer, request.headers.get("x-forwarded-for"), self._ctx.settings.trusted_networks)

    def _unauthenticated(self, request: Request) -> Response:
        if request.headers.get(FRAGMENT_HEADER) or request.method != "GET":
            return self._html('<p><a href="/dashboard/login">Sign in again.</a></p>', 401)
        # Back to the page asked for after signing in (its shop and range); a fragment's page is the dashboard.
        query = f"?{request.url.query}" if request.url.query and request.url.path == "/dashboard" else ""
        target = "/dashboard" + query
        return RedirectResponse("/dashboard/login?" + urlencode({"next": target}), 303)

    def _secure(self, request: Request) -> bool:
        """HTTPS as the browser sees it: the request itself, or a trusted proxy's X-Forwarded-Proto."""
        if request.url.scheme == "https":
            return True
        peer = request.client.host if request.client else ""
        forwarded = request.headers.get("x-forwarded-proto", "").lower() == "https"
        return forwarded and from_trusted_proxy(peer, self._ctx.settings.trusted_networks)

    # -- pages -----------------------------------------------------------------------------------------------------

    def _requested_view(self, request: Request) -> View | Response | None:
        """The view asked for, or the 400 that says which shop or range is not one."""
        try:
            return self._view(request)
        except InvalidViewError as error:
            return self._bad_view(request, error)

    def _view(self, request: Request) -> View | None:
        """The shop and range asked for (default: the first shop, 7 days); None when no shop is configured."""
        shops = sorted(self._ctx.shops)
        if not shops:
            return None
        shop = request.query_params.get("shop", "").strip().lower() or shops[0]
        if shop not in self._ctx.shops:
            raise InvalidViewError(f"No shop {shop} is configured here; the shops are {', '.join(shops)}.")
        days = request.query_params.get("days", "") or str(RANGES[0])
        if days not in {str(r) for r in RANGES}:
            raise InvalidViewError(f"days is {' or '.join(map(str, RANGES))}, not {days}.")
        return View(shop=shop, days=int(days))

    def _bad_view(self, request: Request, error: InvalidViewError) -> Response:
        if request.headers.get(FRAGMENT_HEADER) or request.method != "GET":
            return self._html(f"<p>{escape(str(error))}</p>", 400)
        return self._render("empty.html", {"error": str(error), "shops_configured": True}, 400)

    async def page(self, request: Request) -> Response:
        caller = self._caller(request)
        if isinstance(caller, Response):
            return caller
        view = self._requested_view(request)
        if isinstance(view, Response):
            return view
        if view is None or self._ctx.dashboard is None:
            return self._render("empty.html", {"error": "", "shops_configured": view is not None}, 503)
        data = await run_in_threadpool(self._gather, self._ctx.dashboard, view, PANELS)
        requeued = request.query_params.get("requeued", "")
        notice = requeued_notice(int(requeued)) if REQUEUED_COUNT.fullmatch(requeued) else ""
        return self._render("dashboard.html", {
            **data, "caller": caller, "view": view, "shops": sorted(self._ctx.shops), "ranges": RANGES,
            "panels": PANELS, "notice": notice,
        })

    async def panel(self, request: Request) -> Response:
        caller = self._caller(request)
        if isinstance(caller, Response):
            return caller
        name = request.path_params["panel"]
        view = self._requested_view(request)
        if isinstance(view, Response):
            return view
        if name not in PANELS or view is None or self._ctx.dashboard is None:
            return self._html("<p>No such panel.</p>", 404)
        data = await run_in_threadpool(self._gather, self._ctx.dashboard, view, (name,))
        return self._render(f"panels/{name}.html", {**data, "caller": caller, "view": view, "notice": ""})

    def _gather(self, services: DashboardServices, view: View, panels: tuple[str, ...]) -> dict[str, Any]:
        """The data of the panels asked for, read in one go (a thread-pool call)."""
        now = services.clock.now()
        data: dict[str, Any] = {"now": now, "report_error": "", "funnel": None, "lift": None}
        if REPORT_PANELS & set(panels):
            data.update(self._report(services, view, now))
        if "deliveries" in panels:
            shop = self._ctx.shops[view.shop]
            data["destinations"] = services.read_model.destinations(view.shop, destinations_configured(shop), now)
        if "dead-letters" in panels:
            data["letters"], data["dead_total"] = services.read_model.dead_letters(view.shop, DEAD_LETTER_LIMIT)
        if "events" in panels:
            data["events"] = services.read_model.recent_events(view.shop, EVENT_LIMIT)
        return data

    def _report(self, services: DashboardServices, view: View, now: datetime) -> dict[str, Any]:
        if services.gap_report is None:
            return {"report_error": "The gap report is not available in this installation yet."}
        since, until = report_window(now, view.days)
        try:
            report = services.gap_report(view.shop, since, until, "day")
        except Exception as error:  # one failing panel must not take the whole dashboard down
            log.exception("dashboard_report_failed", shop=view.shop)
            return {"report_error": f"The gap report could not be computed ({type(error).__name__})."}
        return {"funnel": funnel_panel(report), "lift": lift_panel(report)}

    # -- actions ---------------------------------------------------------------------------------------------------

    async def retry_one(self, request: Request) -> Response:
        delivery_id = int(request.path_params["delivery_id"])
        return await self._act(request, delivery_id)

    async def retry_all(self, request: Request) -> Response:
        return await self._act(request, None)

    async def _act(self, request: Request, delivery_id: int | None) -> Response:
        """Requeue the shop's dead letters (one, or all of them), then show the list again: in place, or by
        redirecting back. The shop filter is what keeps a crafted id from touching another shop's delivery."""
        caller = await self._checked_post(request)
        if isinstance(caller, Response):
            return caller
        view = self._requested_view(request)
        if isinstance(view, Response):
            return view
        services = self._ctx.dashboard
        if view is None or services is None:
            return self._html("<p>No shop is configured.</p>", 404)
        if delivery_id is not None and delivery_id > MAX_ROW_ID:
            return self._html(f"<p>No delivery #{delivery_id} exists.</p>", 404)
        # The very code `recapture deliveries retry --shop` runs.
        requeued = await run_in_threadpool(services.retry_dead, services.clock.now(), view.shop, delivery_id)
        log.info("dashboard_retry", shop=view.shop, requeued=requeued)
        if not request.headers.get(FRAGMENT_HEADER):
            # A count, not a message, goes in the URL: a link must not be able to put words on the page.
            return RedirectResponse(f"/dashboard?{view.query}&requeued={requeued}#dead-letters", 303)
        data = await run_in_threadpool(self._gather, services, view, ("dead-letters",))
        return self._render("panels/dead-letters.html",
                            {**data, "caller": caller, "view": view, "notice": requeued_notice(requeued)})

    async def _form(self, request: Request) -> dict[str, str]:
        body = await read_body(request, FORM_LIMIT)
        return {key: values[0] for key, values in parse_qs(body.decode("utf-8", "replace")).items()}

    # -- login and logout ------------------------------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        if self._signer is None:
            return self._render("login.html", {"disabled": True, "error": "", "nonce": "", "next": ""}, 503)
        if request.method == "GET":
            return self._login_form(request, "", 200, safe_next(request.query_params.get("next")))
        try:
            form = await self._form(request)
        except BodyTooLargeError:
            return self._html("<p>Request too large.</p>", 413)
        address = self._client_address(request)
        target = safe_next(form.get("next"))
        if self._throttle.blocked(address):
            return self._login_form(request, "Too many failed sign-ins: wait a minute and try again.", 429, target)
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        if not nonce or not token_matches(form.get("login_nonce", ""), nonce):
            return self._login_form(request, "The login form expired: please try again.", 403, target)
        expected = self._ctx.settings.admin_token
        if expected is None or not token_matches(form.get("token", ""), expected.get_secret_value()):
            self._throttle.failed(address)
            return self._login_form(request, "That is not the admin token.", 401, target)
        cookie, _ = self._signer.issue()
        response = RedirectResponse(target, 303)
        response.set_cookie(SESSION_COOKIE, cookie, max_age=SESSION_SECONDS, path="/dashboard", httponly=True,
                            samesite="strict", secure=self._secure(request))
        response.delete_cookie(LOGIN_COOKIE, path="/dashboard/login")
        log.info("dashboard_login", client=address)
        return response

    def _login_form(self, request: Request, error: str, status: int, target: str) -> Response:
        """The form with a fresh nonce, also set as a cookie: a login posted from another site cannot match it."""
        nonce = SessionSigner.new_nonce()
        response = self._render("login.html", {"disabled": False, "error": error, "nonce": nonce, "next": target},
                                status)
        response.set_cookie(LOGIN_COOKIE, nonce, max_age=3600, path="/dashboard/login", httponly=True,
                            samesite="strict", secure=self._secure(request))
        return response

    async def logout(self, request: Request) -> Response:
        caller = await self._checked_post(request)
        if isinstance(caller, Response):
            return caller
        if caller.session is not None and self._signer is not None:
            self._signer.revoke(caller.session)
        response = RedirectResponse("/dashboard/login", 303)
        response.delete_cookie(SESSION_COOKIE, path="/dashboard", httponly=True, samesite="strict",
                               secure=self._secure(request))
        return response

    # -- responses -------------------------------------------------------------------------------------------------

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self._static:
            return Response(status_code=404)
        headers = {"cache-control": "public, max-age=3600", "x-content-type-options": "nosniff"}
        return Response(self._static[name], media_type=STATIC_FILES[name], headers=headers)

    def _render(self, template: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
        html = self._templates.get_template(template).render(**context, static_version=self._version)
        return self._html(html, status)

    def _html(self, html: str, status: int) -> HTMLResponse:
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def dashboard_routes(ctx: HttpContext) -> list[Route]:
    return Dashboard(ctx).routes()
