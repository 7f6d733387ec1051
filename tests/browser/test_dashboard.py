"""The dashboard in headless Chromium against the live service with its workers and a fake Klaviyo.

A week of shoppers is collected over HTTP and worked off by the real workers; the fake Klaviyo refuses one
event (a JSON 400: a dead letter). The browser signs in, sees every panel with that data, retries the dead
letter and watches it leave the list, sees a new event arrive in the live stream, and on a phone-sized screen
scrolls only vertically. Screenshots go to /tmp/dashboard-*.png.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from recapture.adapters.destinations.fake_klaviyo import FakeKlaviyo, FakeKlaviyoServer, Fault, KlaviyoSpec
from recapture.settings import Settings
from recapture.wiring import Runtime, build_runtime
from tests.browser.conftest import WAIT_MS, WAIT_SECONDS
from tests.conftest import LiveServer, free_port
from tests.dashboard_support import week_of_journeys
from tests.support import ADMIN_TOKEN, SHARED, SHOP, envelope, pixel_event

pytestmark = pytest.mark.browser

KEY = "pk_dashboard_0001"
NOW = datetime(2026, 10, 5, 15, 0, tzinfo=UTC)
LAPTOP = {"width": 1280, "height": 900}
# Screenshots to look at: /tmp/dashboard-*.png.
SCREENSHOTS = Path(tempfile.gettempdir())
PHONE = {"width": 375, "height": 812}


@dataclass
class Installation:
    url: str
    runtime: Runtime
    klaviyo: FakeKlaviyo

    def wait(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def collect(self, items: list[dict[str, Any]]) -> None:
        response = httpx.post(self.url + "/collect/shopify", content=json.dumps({"batch": items}),
                              headers={"content-type": "application/json"}, timeout=10)
        assert response.status_code == 200, response.text
        self.wait(lambda: self.runtime.store.counts().pending == 0, "the events to be processed")

    def outbox(self) -> dict[str, Any]:
        return dict(self.runtime.outbox.delivery_health(self.runtime.clock.now()).get("klaviyo", {}))

    def dead_letter_ids(self) -> list[int]:
        letters, _ = self.runtime_read_model().dead_letters(SHOP, 10)
        return [letter.id for letter in letters]

    def runtime_read_model(self) -> Any:
        from recapture.adapters.storage.transactions import Transactions
        from recapture.adapters.web.read_model import SqlDashboardReadModel

        return SqlDashboardReadModel(Transactions(self.runtime.engine), self.runtime.graph)


@pytest.fixture
def installation(make_settings: Callable[..., Settings]) -> Iterator[Installation]:
    """The service with its workers, a week of shoppers decided and delivered, one delivery dead-lettered."""
    spec = KlaviyoSpec.load(SHARED / "contracts" / "klaviyo" / "openapi-stable.json")
    klaviyo = FakeKlaviyo(spec, keys={KEY: spec.all_scopes})
    port = free_port()
    with FakeKlaviyoServer(klaviyo) as fake:
        settings = make_settings(public_url=f"http://127.0.0.1:{port}", klaviyo_private_key=KEY,
                                 klaviyo_base_url=fake.url)
        runtime = build_runtime(settings)
        runtime.clock.set(NOW)
        try:
            with LiveServer(settings, runtime, worker=True, port=port) as server:
                site = Installation(server.url, runtime, klaviyo)
                # The start-up scope check talks to Klaviyo too: the fault below is for an abandonment event.
                site.wait(lambda: SHOP in runtime.missing_scopes, "the Klaviyo scope check")
                site.collect(week_of_journeys(NOW))
                klaviyo.inject(Fault(kind="error", status=400, operation="create_event"))
                runtime.clock.set(NOW + timedelta(hours=3))
                site.wait(lambda: site.outbox().get("dead") == 1 and site.outbox().get("pending") == 0,
                          "every abandonment to be delivered but one")
                yield site
        finally:
            runtime.engine.dispose()


def sign_in(chromium: Any, site: Installation, viewport: dict[str, int], screenshot: str = "", **options: Any) -> Any:
    context = chromium.new_context(viewport=viewport, **options)
    page = context.new_page()
    page.goto(site.url + "/dashboard")
    assert "/dashboard/login" in page.url
    if screenshot:
        page.screenshot(path=SCREENSHOTS / screenshot)
    page.fill("#token", ADMIN_TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(site.url + "/dashboard", timeout=WAIT_MS)
    return page


def no_horizontal_scroll(page: Any) -> bool:
    return bool(page.evaluate("() => document.documentElement.scrollWidth <= document.documentElement.clientWidth"))


WIDER_THAN_THE_SCREEN = """() => [...document.querySelectorAll("body *")]
  .filter((e) => e.getBoundingClientRect().right > document.documentElement.clientWidth + 0.5)
  .slice(0, 5).map((e) => `${e.tagName}.${e.className.baseVal ?? e.className} ${e.getBoundingClientRect().right}`)"""


def overflowing(page: Any) -> list[str]:
    """The first elements that reach past the right edge of the screen (what makes it scroll sideways)."""
    return list(page.evaluate(WIDER_THAN_THE_SCREEN))


def test_laptop_shows_every_panel_retries_a_dead_letter_and_streams_events(
    chromium: Any, installation: Installation
) -> None:
    from playwright.sync_api import expect

    site = installation
    page = sign_in(chromium, site, LAPTOP, screenshot="dashboard-login.png")
    [session] = [c for c in page.context.cookies() if c["name"] == "recapture_dashboard"]
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Strict"

    expect(page.locator("#funnel svg.chart-wide")).to_be_visible()
    expect(page.locator("#funnel svg.chart-narrow")).to_be_hidden()
    assert "Abandonments seen" in page.locator("#funnel").inner_text()
    lift = page.locator("#lift svg.chart-wide").first
    expect(lift).to_be_visible()
    assert lift.locator("path").count() >= 1, "lift drawn as lines"
    assert "Cart" in (lift.text_content() or ""), "a legend names the stages"
    expect(page.locator("#deliveries [data-destination=klaviyo] .badge")).to_have_text("red")
    assert page.locator("#events tbody tr").count() >= 10
    assert "Klaviyo profile" in page.locator("#events").inner_text()
    [dead] = site.dead_letter_ids()
    row = page.locator(f'#dead-letters li[data-delivery="{dead}"]')
    expect(row).to_be_visible()
    assert "The fake Klaviyo injected this error." in row.inner_text()
    page.screenshot(path=SCREENSHOTS / "dashboard-laptop.png", full_page=True)
    accepted = len(site.klaviyo.accepted_events)

    row.get_by_role("button", name=f"Retry delivery {dead}").click()
    expect(row).to_have_count(0, timeout=WAIT_MS)
    expect(page.locator("#dead-letters")).to_contain_text("1 dead letter queued again")
    expect(page.locator("#dead-letters")).to_contain_text("No dead letters")
    site.wait(lambda: len(site.klaviyo.accepted_events) == accepted + 1, "the retried event to reach Klaviyo")
    expect(page.locator("#deliveries [data-destination=klaviyo] .badge")).to_have_text("green", timeout=WAIT_MS)
    assert site.outbox()["dead"] == 0

    live = pixel_event(name="collection_viewed", event_id="live-1", client_id="live-device",
                       timestamp=site.runtime.clock.now().isoformat(), data={})
    site.collect([envelope(live)])
    expect(page.locator("#events")).to_contain_text("collection_viewed", timeout=WAIT_MS)
    page.evaluate("() => window.scrollTo(0, 0)")  # else the sticky top bar is drawn mid-page
    page.screenshot(path=SCREENSHOTS / "dashboard-laptop-after-retry.png", full_page=True)
    page.context.close()


def test_phone_layout_fits_the_screen(chromium: Any, installation: Installation) -> None:
    """At 375 px: one column, the narrow charts, labelled rows instead of wide tables, no sideways scrolling."""
    from playwright.sync_api import expect

    page = sign_in(chromium, installation, PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    expect(page.locator("#funnel svg.chart-narrow")).to_be_visible()
    expect(page.locator("#funnel svg.chart-wide")).to_be_hidden()
    expect(page.locator("#events thead")).to_be_hidden()
    assert no_horizontal_scroll(page), overflowing(page)
    for panel in ("funnel", "lift", "deliveries", "dead-letters", "events"):
        box = page.locator(f"#{panel}").bounding_box()
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= PHONE["width"], f"{panel} is wider than the screen"
        fits = page.locator(f"#{panel}").evaluate("(card) => card.scrollWidth <= card.clientWidth")
        assert fits, f"something in {panel} is wider than its card"
    page.screenshot(path=SCREENSHOTS / "dashboard-phone.png", full_page=True)
    page.screenshot(path=SCREENSHOTS / "dashboard-phone-first-screen.png")
    for panel in ("funnel", "lift", "deliveries", "dead-letters", "events"):
        page.locator(f"#{panel}").screenshot(path=SCREENSHOTS / f"dashboard-phone-{panel}.png")
    page.get_by_role("button", name="Retry all").click()
    expect(page.locator("#dead-letters")).to_contain_text("1 dead letter queued again", timeout=WAIT_MS)
    assert no_horizontal_scroll(page), overflowing(page)
    page.context.close()
