"""The dashboard through HTTP on both databases: sign-in, CSRF, masking, the panels' data and the retry button."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from recapture.adapters.storage.schema import deliveries
from recapture.adapters.web.auth import LOGIN_COOKIE, SESSION_COOKIE
from recapture.application.delivery import DeliveryWorker
from recapture.application.delivery_errors import TerminalDeliveryError
from recapture.domain.delivery import DeliveryEvent, DeliveryProfile
from recapture.settings import Settings
from recapture.wiring import Runtime, build_runtime, build_web_app
from tests.dashboard_support import (
    EMAIL,
    MASKED_EMAIL,
    PHONE,
    anonymous_browse,
    csrf_token,
    login_nonce,
    native_cart,
    recapture_only_cart,
)
from tests.support import ADMIN_TOKEN, AUTH, SHOP, RecordingDestination

JSON = {"content-type": "application/json"}
FRAGMENT = {"X-Dashboard-Fragment": "1"}
OTHER_SHOP = "second-store.myshopify.com"


class RefusingDestination:
    """Refuses everything the way a platform refuses a bad profile: quoting the contact it refused."""

    def send_event(self, event: DeliveryEvent) -> None:
        raise TerminalDeliveryError(400, f"Invalid profile {event.profile.email} / {event.profile.phone_number}")

    def import_profile(self, profile: DeliveryProfile) -> str | None:
        raise TerminalDeliveryError(400, f"Invalid profile {profile.email}")

    def subscribe(self, profiles: Sequence[DeliveryProfile], list_id: str) -> None:
        raise TerminalDeliveryError(400, "refused")


class Shop:
    """One shop with a webhook destination, driven by hand: collect, process, decide, deliver."""

    def __init__(self, runtime: Runtime, client: TestClient) -> None:
        self.runtime, self.client = runtime, client

    def collect(self, *items: dict[str, Any]) -> None:
        response = self.client.post("/collect/shopify", content=json.dumps({"batch": list(items)}), headers=JSON)
        assert response.status_code == 200, response.text
        while self.runtime.processor.run_once().processed:
            pass

    def advance(self, minutes: int) -> None:
        self.runtime.clock.set(self.runtime.clock.now() + timedelta(minutes=minutes))
        self.runtime.abandonment.run_due(self.runtime.clock.now())

    def deliver(self, destination: object) -> None:
        worker = DeliveryWorker(self.runtime.outbox, {(SHOP, "webhook"): destination}, self.runtime.clock)  # type: ignore[dict-item]
        worker.run_once()

    def dead_letter(self) -> int:
        """Ann, known to recapture only, abandons a cart; the destination refuses it: one dead letter."""
        self.collect(*recapture_only_cart("laptop", self.runtime.clock.now()))
        self.advance(61)
        self.deliver(RefusingDestination())
        return self.only_delivery("dead")

    def statuses(self) -> dict[int, str]:
        with self.runtime.engine.connect() as conn:
            return {r.id: r.status for r in conn.execute(select(deliveries.c.id, deliveries.c.status))}

    def only_delivery(self, status: str) -> int:
        [found] = [i for i, s in self.statuses().items() if s == status]
        return found

    def login(self) -> str:
        """Signs in through the form; returns the dashboard's CSRF token."""
        form = self.client.get("/dashboard/login")
        response = self.client.post("/dashboard/login", data={
            "token": ADMIN_TOKEN, "login_nonce": login_nonce(form.text), "next": "/dashboard"}, follow_redirects=False)
        assert response.status_code == 303, response.text
        page = self.client.get("/dashboard")
        assert page.status_code == 200
        return csrf_token(page.text)


def _shop(settings: Settings) -> Iterator[Shop]:
    runtime = build_runtime(settings)
    runtime.clock.set(runtime.clock.now())
    with TestClient(build_web_app(settings, runtime, worker=False), base_url="http://127.0.0.1") as client:
        yield Shop(runtime, client)
    runtime.engine.dispose()


@pytest.fixture
def shop(make_settings: Callable[..., Settings]) -> Iterator[Shop]:
    yield from _shop(make_settings(esp_webhook_url="http://127.0.0.1:9/hook", esp_webhook_secret="whsec"))


# -- signing in ------------------------------------------------------------------------------------------------------


def test_every_dashboard_page_needs_a_sign_in(shop: Shop) -> None:
    """Pages redirect to the login form; fragments and actions answer 401; a wrong bearer token is no sign-in."""
    page = shop.client.get("/dashboard?days=30", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/dashboard/login?next=%2Fdashboard%3Fdays%3D30"
    assert shop.client.get("/dashboard/panels/events", headers=FRAGMENT).status_code == 401
    assert shop.client.post("/dashboard/dead-letters/retry").status_code == 401
    assert shop.client.post("/dashboard/dead-letters/1/retry").status_code == 401
    wrong = {"Authorization": "Bearer not-the-token"}
    assert shop.client.get("/dashboard", headers=wrong, follow_redirects=False).status_code == 303
    assert shop.client.get("/dashboard", headers=AUTH).status_code == 200


def test_login_sets_a_strict_http_only_cookie_and_logout_ends_the_session(shop: Shop) -> None:
    form = shop.client.get("/dashboard/login?next=/dashboard%3Fdays%3D30")
    assert form.status_code == 200
    assert 'type="password"' in form.text
    nonce = login_nonce(form.text)
    wrong = shop.client.post("/dashboard/login", data={"token": "guess", "login_nonce": nonce,
                                                       "next": "/dashboard?days=30"})
    assert wrong.status_code == 401
    assert "not the admin token" in wrong.text
    assert 'name="next" value="/dashboard?days=30"' in wrong.text, "a second try still goes where the first would"
    nonce = login_nonce(wrong.text)
    response = shop.client.post("/dashboard/login", data={
        "token": ADMIN_TOKEN, "login_nonce": nonce, "next": "/dashboard?days=30"}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard?days=30"
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE + "="))
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/dashboard" in cookie
    assert "Secure" not in cookie, "plain HTTP here: a Secure cookie would never come back"
    session = shop.client.cookies.get(SESSION_COOKIE)
    page = shop.client.get("/dashboard")
    assert page.status_code == 200
    assert "Identification funnel" in page.text
    out = shop.client.post("/dashboard/logout", data={"csrf_token": csrf_token(page.text)}, follow_redirects=False)
    assert out.status_code == 303
    assert shop.client.get("/dashboard", follow_redirects=False).status_code == 303
    shop.client.cookies.set(SESSION_COOKIE, session or "", path="/dashboard")
    assert shop.client.get("/dashboard", follow_redirects=False).status_code == 303, "a logged-out session stays out"


def test_login_needs_the_forms_own_nonce_and_never_redirects_elsewhere(shop: Shop) -> None:
    """A login posted from another site (no nonce cookie) is refused; `next` only ever points into the dashboard."""
    refused = shop.client.post("/dashboard/login", data={"token": ADMIN_TOKEN, "login_nonce": "forged"})
    assert refused.status_code == 403
    form = shop.client.get("/dashboard/login")
    response = shop.client.post("/dashboard/login", data={
        "token": ADMIN_TOKEN, "login_nonce": login_nonce(form.text), "next": "//evil.example.com/x"},
        follow_redirects=False)
    assert response.headers["location"] == "/dashboard"
    assert shop.client.cookies.get(LOGIN_COOKIE) is None


def test_the_session_cookie_is_secure_over_https(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    runtime = build_runtime(settings)
    with TestClient(build_web_app(settings, runtime, worker=False), base_url="https://127.0.0.1") as client:
        form = client.get("/dashboard/login")
        response = client.post("/dashboard/login", data={"token": ADMIN_TOKEN, "login_nonce": login_nonce(form.text)},
                               follow_redirects=False)
    runtime.engine.dispose()
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE + "="))
    assert "Secure" in cookie


def test_pages_carry_a_strict_content_security_policy(shop: Shop) -> None:
    shop.login()
    page = shop.client.get("/dashboard")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert page.headers["cache-control"] == "no-store"
    assert "<script>" not in page.text, "no inline script: the policy would block it"
    script = shop.client.get("/dashboard/static/dashboard.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert shop.client.get("/dashboard/static/../routes.py").status_code == 404


# -- CSRF and the retry button ---------------------------------------------------------------------------------------


def test_a_retry_without_the_csrf_token_is_refused(shop: Shop) -> None:
    dead = shop.dead_letter()
    token = shop.login()
    for data in ({}, {"csrf_token": "forged"}, {"csrf_token": token[:-1]}):
        refused = shop.client.post(f"/dashboard/dead-letters/{dead}/retry", data=data, follow_redirects=False)
        assert refused.status_code == 403
    assert shop.client.post("/dashboard/dead-letters/retry", data={}).status_code == 403
    assert shop.statuses()[dead] == "dead"


def test_retry_puts_the_dead_letter_back_in_the_queue_and_it_is_delivered(shop: Shop) -> None:
    """The button's request (fetch, with the token in a header) answers with the list without that row."""
    dead = shop.dead_letter()
    token = shop.login()
    panel = shop.client.get("/dashboard/panels/dead-letters", headers=FRAGMENT)
    assert f'data-delivery="{dead}"' in panel.text
    response = shop.client.post(f"/dashboard/dead-letters/{dead}/retry?shop={SHOP}&days=7",
                                headers={**FRAGMENT, "X-CSRF-Token": token})
    assert response.status_code == 200
    assert "1 dead letter queued again" in response.text
    assert f'data-delivery="{dead}"' not in response.text
    assert shop.statuses()[dead] == "pending"
    again = shop.client.post(f"/dashboard/dead-letters/{dead}/retry", headers={**FRAGMENT, "X-CSRF-Token": token})
    assert "Nothing was queued again" in again.text
    accepting = RecordingDestination()
    shop.deliver(accepting)
    assert shop.statuses()[dead] == "delivered"
    assert [e.profile.email for e in accepting.sent] == [EMAIL]


def test_retry_all_without_javascript_posts_and_redirects_back(shop: Shop) -> None:
    """The plain form (no fetch) requeues through `retry_dead`, the CLI's code, and lands on the dashboard."""
    dead = shop.dead_letter()
    token = shop.login()
    response = shop.client.post(f"/dashboard/dead-letters/retry?shop={SHOP}&days=30", data={"csrf_token": token},
                                follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"/dashboard?shop={SHOP}&days=30&requeued=1#dead-letters"
    assert shop.statuses()[dead] == "pending"
    assert "1 dead letter queued again" in shop.client.get(response.headers["location"]).text
    forged = shop.client.get("/dashboard?requeued=<b>send+your+token</b>").text
    assert "send your token" not in forged, "only a count is read from the URL"


def test_a_bearer_token_may_retry_without_a_csrf_token(shop: Shop) -> None:
    """Scripts use the admin token as elsewhere; a browser never sends that header by itself."""
    dead = shop.dead_letter()
    response = shop.client.post(f"/dashboard/dead-letters/{dead}/retry", headers={**AUTH, **FRAGMENT})
    assert response.status_code == 200
    assert shop.statuses()[dead] == "pending"


# -- what the panels show --------------------------------------------------------------------------------------------


def _whole_dashboard(shop: Shop) -> str:
    pages = [shop.client.get("/dashboard").text, shop.client.get("/dashboard?days=30").text]
    pages += [shop.client.get(f"/dashboard/panels/{p}", headers=FRAGMENT).text
              for p in ("funnel", "lift", "deliveries", "dead-letters", "events")]
    return "\n".join(pages)


def test_contact_data_never_appears_unmasked(shop: Shop) -> None:
    """The email and phone typed at checkout, and quoted back in the platform's error, show only masked."""
    shop.dead_letter()
    shop.login()
    html = _whole_dashboard(shop)
    for raw in (EMAIL, PHONE, EMAIL.split("@")[0], PHONE[1:]):
        assert raw not in html
    assert MASKED_EMAIL in html, "the person and the error name the shopper, masked"
    assert "+14*****71" in html


def test_the_panels_show_the_shops_data(shop: Shop) -> None:
    """Funnel and lift from the gap report, the outbox per destination, the dead letter, events and their persons."""
    now = shop.runtime.clock.now()
    shop.collect(native_cart("native-1", now - timedelta(minutes=5)), anonymous_browse("anon-1", now))
    dead = shop.dead_letter()
    shop.login()
    funnel = shop.client.get("/dashboard/panels/funnel", headers=FRAGMENT).text
    assert "Abandonments seen" in funnel
    assert "<svg" in funnel
    assert "Abandonments seen: 4" in funnel, "Ann's checkout two days ago and her cart, the native cart, the browse"
    assert "Identified natively by Klaviyo: 2" in funnel
    assert "Identified by recapture only: 1" in funnel
    assert "Delivered by recapture: 0" in funnel, "Ann's abandonment is a dead letter"
    lift = shop.client.get("/dashboard/panels/lift", headers=FRAGMENT).text
    assert lift.count("<svg") == 4, "two charts, each drawn wide and narrow"
    assert "Lift by stage" in lift
    health = shop.client.get("/dashboard/panels/deliveries", headers=FRAGMENT).text
    assert 'data-destination="webhook"' in health
    assert '<span class="badge red">red</span>' in health
    assert "<dt>Dead</dt><dd>1</dd>" in health
    letters = shop.client.get("/dashboard/panels/dead-letters", headers=FRAGMENT).text
    assert f'data-delivery="{dead}"' in letters
    assert "Cart Abandoned - Recaptured" in letters
    events = shop.client.get("/dashboard/panels/events", headers=FRAGMENT).text
    assert "product_added_to_cart" in events
    assert "checkout_contact_info_submitted" in events
    assert "new email, phone, checkout token, client id" in events, "what Ann's checkout attached to her person"
    assert "known client id" in events, "her cart two days later: the device was already hers"
    assert "anonymous" in events
    assert MASKED_EMAIL in events


def test_a_shop_selector_when_several_shops_are_configured(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(shops=[{"domain": OTHER_SHOP, "webhook_secrets": ["s2"]}])
    for shop in _shop(settings):
        shop.collect(native_cart("native-1", shop.runtime.clock.now()))
        page = shop.client.get("/dashboard", headers=AUTH).text
        assert '<select name="shop"' in page
        assert f'<option value="{SHOP}" selected>' in page
        other = shop.client.get(f"/dashboard?shop={OTHER_SHOP}", headers=AUTH).text
        assert f'<option value="{OTHER_SHOP}" selected>' in other
        assert "product_added_to_cart" not in other, "another shop's events stay with their shop"
        default = shop.client.get("/dashboard", headers=AUTH).text
        assert f'<option value="{SHOP}" selected>' in default
        assert 'aria-current="page">7 days' in default


def test_a_dead_letter_cannot_be_retried_through_another_shop(make_settings: Callable[..., Settings]) -> None:
    """The retry filters by the shop of the URL: a crafted id of another shop's delivery requeues nothing."""
    settings = make_settings(shops=[{"domain": OTHER_SHOP, "webhook_secrets": ["s2"]}],
                             esp_webhook_url="http://127.0.0.1:9/hook", esp_webhook_secret="whsec")
    for shop in _shop(settings):
        dead = shop.dead_letter()
        for path in (f"/dashboard/dead-letters/{dead}/retry", "/dashboard/dead-letters/retry"):
            response = shop.client.post(f"{path}?shop={OTHER_SHOP}", headers={**AUTH, **FRAGMENT})
            assert response.status_code == 200
            assert "Nothing was queued again" in response.text
        assert shop.statuses()[dead] == "dead"
        other = shop.client.get(f"/dashboard/panels/dead-letters?shop={OTHER_SHOP}", headers={**AUTH, **FRAGMENT})
        assert f'data-delivery="{dead}"' not in other.text, "nor does the other shop see it"


@pytest.mark.parametrize("query", [
    "shop=nope.myshopify.com", "days=999", "days=%C2%B2", "days=", "shop=%00",
])
def test_a_bad_shop_or_range_is_a_400_that_says_why(shop: Shop, query: str) -> None:
    """Not another shop's or another range's figures in silence, and never a 500."""
    page = shop.client.get(f"/dashboard?{query}", headers=AUTH)
    fragment = shop.client.get(f"/dashboard/panels/funnel?{query}", headers={**AUTH, **FRAGMENT})
    retry = shop.client.post(f"/dashboard/dead-letters/retry?{query}", headers={**AUTH, **FRAGMENT})
    if query == "days=":  # an empty value is the default range
        assert page.status_code == fragment.status_code == retry.status_code == 200
        return
    for response in (page, fragment, retry):
        assert response.status_code == 400
        assert "is configured here" in response.text or "days is 7 or 30" in response.text


def test_odd_values_elsewhere_are_refused_or_ignored_never_an_error(shop: Shop) -> None:
    assert shop.client.get("/dashboard?requeued=%C2%B2", headers=AUTH).status_code == 200
    assert shop.client.get("/dashboard?requeued=" + "9" * 5000, headers=AUTH).status_code == 200
    huge = shop.client.post(f"/dashboard/dead-letters/{2**64}/retry", headers={**AUTH, **FRAGMENT})
    assert huge.status_code == 404
    assert "No delivery" in huge.text
    crafted = [(b"cookie", b"recapture_dashboard=9999999999.abc.\xc3\xa9")]
    assert shop.client.get("/dashboard", headers=crafted, follow_redirects=False).status_code == 303
    shop.login()
    forged = [(b"x-csrf-token", b"\xc3\xa9"), (b"x-dashboard-fragment", b"1")]
    assert shop.client.post("/dashboard/dead-letters/retry", headers=forged).status_code == 403


def test_guessing_the_token_as_a_bearer_header_is_throttled_like_the_form(shop: Shop) -> None:
    """Otherwise the form's throttle is bypassed by sending guesses in the Authorization header."""
    for _ in range(10):
        assert shop.client.get("/dashboard/panels/events", headers={**FRAGMENT, "Authorization": "Bearer guess"},
                               ).status_code == 401
    refused = shop.client.get("/dashboard/panels/events", headers={**FRAGMENT, **AUTH})
    assert refused.status_code == 429, "even the right token, or the throttle would confirm a guess"
    form = shop.client.get("/dashboard/login")
    login = shop.client.post("/dashboard/login", data={"token": ADMIN_TOKEN, "login_nonce": login_nonce(form.text)})
    assert login.status_code == 429
    assert "Too many failed sign-ins" in login.text


def test_a_successful_bearer_request_is_never_throttled(shop: Shop) -> None:
    """A script polling with the right token is not slowed down: only failures count."""
    for _ in range(15):
        assert shop.client.get("/dashboard/panels/events", headers={**FRAGMENT, **AUTH}).status_code == 200


def test_without_an_admin_token_the_dashboard_is_off(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(admin_token=None)
    for shop in _shop(settings):
        assert shop.client.get("/dashboard", follow_redirects=False).status_code == 303
        login = shop.client.get("/dashboard/login")
        assert login.status_code == 503
        assert "RECAPTURE_ADMIN_TOKEN" in login.text
        assert shop.client.post("/dashboard/login", data={"token": ""}).status_code == 503
