"""Browser fixtures: Debian's Chromium driven by Playwright, storefront pages on their own origins, the live collector.

The pixel is what `GET /pixel/shopify.js` serves, run in a page that stands in for Shopify's custom-pixel sandbox
(`analytics`, `browser`, `init`, `customerPrivacy`); what it posts crosses a real CORS boundary to the real service.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from recapture.application.ports import PendingEvent
from recapture.settings import Settings
from recapture.wiring import Runtime, build_runtime
from tests.conftest import LiveServer, _unavailable, free_port
from tests.support import SHOP

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
REQUIRE_BROWSER = os.environ.get("RECAPTURE_REQUIRE_BROWSER") == "1"
WAIT_SECONDS = 15.0
WAIT_MS = int(WAIT_SECONDS * 1000)
STOREFRONT = f"https://{SHOP}"
COLLECT_SOURCE = "shopify_pixel"

HARNESS_HTML = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>Organic Tee - Demo Store</title></head>
<body><h1>Organic Tee</h1></body></html>
"""

# Shopify's custom-pixel globals, and a fetch that records what the pixel asked for. Timers can be held, so a
# test can show what is sent without the batch timer, with no timing in the test.
STAND_INS = """
(config) => {
  const state = { subscribers: [], privacy: [], fetches: [], held: new Map(), holdTimers: config.holdTimers };
  window.__harness = state;

  window.analytics = {
    subscribe(name, callback) { state.subscribers.push({ name, callback }); return () => true; },
  };
  // Shopify answers cookie reads over postMessage: asynchronously, but without timers.
  window.browser = {
    cookie: {
      get(name) {
        const pair = document.cookie.split("; ").find((item) => item.startsWith(name + "="));
        const value = pair ? pair.slice(name.length + 1) : "";
        return new Promise((resolve) => {
          const channel = new MessageChannel();
          channel.port1.onmessage = () => resolve(value);
          channel.port2.postMessage(null);
        });
      },
    },
  };
  window.init = {
    context: { document: { location: { href: config.href, origin: config.storefront } } },
    data: {
      customer: config.customer,
      cart: null,
      shop: {
        name: "Demo Store", myshopifyDomain: config.shop, countryCode: "US", storefrontUrl: config.storefront,
        paymentSettings: { currencyCode: "USD" },
      },
      purchasingCompany: null,
    },
    customerPrivacy: config.consent,
  };
  window.customerPrivacy = {
    subscribe(name, callback) { state.privacy.push({ name, callback }); return () => true; },
  };

  state.publish = (event) => {
    for (const s of state.subscribers) {
      if (s.name === "all_standard_events" || s.name === "all_events" || s.name === event.name) {
        s.callback(JSON.parse(JSON.stringify(event)));
      }
    }
  };
  state.collectConsent = (flags) => {
    for (const s of state.privacy) {
      if (s.name === "visitorConsentCollected") { s.callback({ customerPrivacy: flags }); }
    }
  };

  const realFetch = window.fetch.bind(window);
  window.fetch = (resource, options = {}) => {
    const headers = new Headers(options.headers || {});
    const record = {
      url: String(resource), method: options.method || "GET", keepalive: options.keepalive === true,
      contentType: headers.get("content-type"), body: typeof options.body === "string" ? options.body : null,
      status: null, error: null,
    };
    state.fetches.push(record);
    return realFetch(resource, options).then(
      (response) => { record.status = response.status; return response; },
      (error) => { record.error = String(error); throw error; },
    );
  };

  const realSetTimeout = window.setTimeout.bind(window);
  const realClearTimeout = window.clearTimeout.bind(window);
  let nextHeld = 1000000;
  window.setTimeout = (callback, delay, ...args) => {
    if (!state.holdTimers) { return realSetTimeout(callback, delay, ...args); }
    const id = nextHeld++;
    state.held.set(id, () => callback(...args));
    return id;
  };
  window.clearTimeout = (id) => { if (!state.held.delete(id)) { realClearTimeout(id); } };
  state.releaseTimers = () => {
    state.holdTimers = false;
    const due = [...state.held.values()];
    state.held.clear();
    due.forEach((run) => run());
    return due.length;
  };
}
"""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def kla_cookie(**fields: str) -> str:
    """Klaviyo's `__kla_id` cookie: base64 of a JSON object."""
    return base64.b64encode(json.dumps(fields).encode()).decode()


def money(amount: float, currency: str = "USD") -> dict[str, Any]:
    return {"amount": amount, "currencyCode": currency}


def product_variant(
    product_id: str = "7001", variant_id: str = "42001", title: str = "Organic Tee", price: float = 25.0,
) -> dict[str, Any]:
    """A ProductVariant as Web Pixels deliver it."""
    return {
        "id": variant_id,
        "image": {"src": "https://cdn.shopify.com/s/files/tee.jpg"},
        "price": money(price),
        "product": {
            "id": product_id, "title": title, "type": "Shirts", "untranslatedTitle": title,
            "url": "/products/organic-tee", "vendor": "Acme",
        },
        "sku": "TEE-BLU-M",
        "title": "Blue / M",
        "untranslatedTitle": "Blue / M",
    }


def cart_line(quantity: int = 2, price: float = 25.0) -> dict[str, Any]:
    return {"cost": {"totalAmount": money(price * quantity)}, "merchandise": product_variant(price=price),
            "quantity": quantity}


def checkout(
    email: str | None = None, phone: str | None = None, token: str = "5f7a0c8e9d1b2a3c4d5e6f708192a3b4",
    order_id: str | None = None,
) -> dict[str, Any]:
    """A Checkout as Web Pixels deliver it on checkout_* events."""
    return {
        "attributes": [],
        "billingAddress": None,
        "buyerAcceptsEmailMarketing": True,
        "buyerAcceptsSmsMarketing": False,
        "currencyCode": "USD",
        "delivery": None,
        "discountApplications": [
            {"allocationMethod": "ACROSS", "targetSelection": "ALL", "targetType": "LINE_ITEM",
             "title": "WELCOME10", "type": "DISCOUNT_CODE", "value": {"percentage": 10}},
        ],
        "discountsAmount": money(5.0),
        "email": email,
        "lineItems": [
            {"discountAllocations": [], "finalLinePrice": money(45.0), "id": "line-1", "properties": [],
             "quantity": 2, "sellingPlanAllocation": None, "title": "Organic Tee", "variant": product_variant()},
        ],
        "localization": {"country": {"isoCode": "US"}, "language": {"isoCode": "en"}, "market": None},
        "order": {"id": order_id, "customer": {"id": None, "isFirstOrder": True}} if order_id else None,
        "phone": phone,
        "shippingAddress": None,
        "shippingLine": None,
        "smsMarketingPhone": None,
        "subtotalPrice": money(45.0),
        "token": token,
        "totalPrice": money(50.0),
        "totalTax": money(0.0),
        "transactions": [],
    }


DEFAULT_PATHS = {
    "page_viewed": "/",
    "product_viewed": "/products/organic-tee",
    "product_added_to_cart": "/products/organic-tee",
}


def pixel_event(name: str, data: dict[str, Any] | None = None, *, client_id: str, path: str | None = None,
                seq: int = 1) -> dict[str, Any]:
    """A standard Web Pixels event (PixelEvents.d.ts) with a browser context."""
    path = path or DEFAULT_PATHS.get(name, "/checkouts/cn/Z2NwLXVzLWVhc3QxOjAxSjk/information")
    return {
        "clientId": client_id,
        "context": {
            "document": {
                "characterSet": "UTF-8",
                "location": {"href": STOREFRONT + path, "host": SHOP, "hostname": SHOP, "origin": STOREFRONT,
                             "pathname": path.split("?", 1)[0], "protocol": "https:", "search": ""},
                "referrer": "https://www.google.com/",
                "title": "Organic Tee - Demo Store",
            },
            "navigator": {"cookieEnabled": True, "language": "en-US", "languages": ["en-US"],
                          "userAgent": "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome"},
            "window": {"innerHeight": 720, "innerWidth": 1280, "screen": {"height": 1080, "width": 1920}},
        },
        "data": data if data is not None else {},
        "id": f"sh-{uuid.uuid4()}",
        "name": name,
        "seq": seq,
        "timestamp": now_iso(),
        "type": "standard",
    }


class _Site(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(HARNESS_HTML)))
        self.end_headers()
        self.wfile.write(HARNESS_HTML)

    def log_message(self, *_: object) -> None:
        pass


class Site:
    """A plain web page on its own origin (http://127.0.0.1:<port>), served from a thread."""

    def __init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
        self.origin = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Site:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@dataclass
class Collector:
    """The live service as the browser sees it, and what it stored."""

    url: str
    runtime: Runtime
    script: str

    @property
    def endpoint(self) -> str:
        return self.url + "/collect/shopify"

    def stored(self) -> int:
        return self.runtime.store.counts().stored

    def wait_for_stored(self, count: int, timeout: float = WAIT_SECONDS) -> int:
        """Polls until `count` events are stored (or the time is up); returns how many are."""
        deadline = time.monotonic() + timeout
        while (stored := self.stored()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return stored

    def events(self) -> list[PendingEvent]:
        return self.runtime.store.pending(1000)

    def envelope(self, event_id: int) -> dict[str, Any]:
        """The envelope exactly as the pixel posted it."""
        return dict(json.loads(self.runtime.store.read_raw(event_id)))

    def by_pixel_id(self) -> dict[str, tuple[PendingEvent, dict[str, Any]]]:
        """Stored events keyed by the Web Pixels event id, each with its raw envelope."""
        found: dict[str, tuple[PendingEvent, dict[str, Any]]] = {}
        for event in self.events():
            raw = self.envelope(event.id)
            assert raw["event"]["id"] not in found, f"event {raw['event']['id']} stored twice"
            found[raw["event"]["id"]] = (event, raw)
        return found

    def rejected(self, reason: str) -> float:
        value = self.runtime.metrics.registry.get_sample_value(
            "recapture_events_rejected_total", {"source": COLLECT_SOURCE, "reason": reason}
        )
        return value or 0.0

    def wait_for_rejected(self, reason: str, timeout: float = WAIT_SECONDS) -> float:
        deadline = time.monotonic() + timeout
        while (value := self.rejected(reason)) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        return value


class Storefront:
    """A harness page running the served pixel inside the custom-pixel stand-ins."""

    def __init__(self, page: Any, client_id: str) -> None:
        self.page = page
        self.client_id = client_id
        self._seq = 0

    def event(self, name: str, data: dict[str, Any] | None = None, path: str | None = None) -> dict[str, Any]:
        self._seq += 1
        return pixel_event(name, data, client_id=self.client_id, path=path, seq=self._seq)

    def publish(self, *events: dict[str, Any]) -> list[str]:
        """Publishes the events through `analytics`, in order, in one task (as a burst arrives)."""
        self.page.evaluate("(events) => events.forEach((e) => window.__harness.publish(e))", list(events))
        return [e["id"] for e in events]

    def collect_consent(self, flags: dict[str, bool]) -> None:
        self.page.evaluate("(flags) => window.__harness.collectConsent(flags)", flags)

    def fetches(self) -> list[dict[str, Any]]:
        return list(self.page.evaluate("() => window.__harness.fetches"))

    def wait_for_settled_requests(self, count: int = 1) -> list[dict[str, Any]]:
        """Waits until at least `count` requests were made and every one of them has been answered or failed."""
        self.page.wait_for_function(
            "(count) => { const f = window.__harness.fetches;"
            " return f.length >= count && f.every((r) => r.status !== null || r.error !== null); }",
            arg=count, timeout=WAIT_MS,
        )
        return self.fetches()

    def wait_for_held_timer(self) -> None:
        """Waits until the pixel has queued an event and armed its batch timer (held, so it never fires)."""
        self.page.wait_for_function("() => window.__harness.held.size > 0", timeout=WAIT_MS)

    def release_timers(self) -> int:
        return int(self.page.evaluate("() => window.__harness.releaseTimers()"))


def envelopes_sent(fetches: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The envelopes of each request the pixel made, in request order."""
    sent = []
    for record in fetches:
        body = json.loads(record["body"])
        sent.append(body.get("batch", [body]))
    return sent


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's Chromium (never a downloaded browser); absent or broken means skip, or fail when required.

    Module scope: Playwright's sync API keeps an event loop running in the main thread until it stops, which
    would break `asyncio.run` in the tests that come after.
    """
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing: `apt-get install chromium` to run the browser tests", REQUIRE_BROWSER)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        _unavailable(f"the playwright package is not installed: {error}", REQUIRE_BROWSER)
    manager = sync_playwright().start()
    try:
        browser = manager.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=30_000)
    except Exception as error:  # any launch failure means no usable browser here
        manager.stop()
        _unavailable(f"{CHROMIUM} did not start under Playwright: {type(error).__name__}: {error}", REQUIRE_BROWSER)
    yield browser
    browser.close()
    manager.stop()


@pytest.fixture
def storefront_site() -> Iterator[Site]:
    """The shop's storefront origin: listed in the shop's allowed origins."""
    with Site() as site:
        yield site


@pytest.fixture
def foreign_site() -> Iterator[Site]:
    """Some other web site: not an origin of the shop."""
    with Site() as site:
        yield site


@pytest.fixture
def collector(make_settings: Callable[..., Settings], storefront_site: Site) -> Iterator[Collector]:
    """The real service on a real port, with the storefront origin allowed; no worker, so events stay pending."""
    port = free_port()
    settings = make_settings(public_url=f"http://127.0.0.1:{port}", shop_allowed_origins=storefront_site.origin)
    runtime = build_runtime(settings)
    try:
        with LiveServer(settings, runtime, worker=False, port=port) as server:
            response = httpx.get(server.url + "/pixel/shopify.js", timeout=5)
            response.raise_for_status()
            yield Collector(url=server.url, runtime=runtime, script=response.text)
    finally:
        runtime.engine.dispose()


DEFAULT_CONSENT = {
    "analyticsProcessingAllowed": True, "marketingAllowed": True,
    "preferencesProcessingAllowed": True, "saleOfDataAllowed": True,
}


@pytest.fixture
def open_storefront(chromium: Any, collector: Collector, storefront_site: Site) -> Iterator[Callable[..., Storefront]]:
    """Opens a page on an origin (the storefront's unless told), installs the stand-ins and runs the served pixel."""
    contexts: list[Any] = []

    def open_page(
        *, site: Site | None = None, customer: dict[str, Any] | None = None,
        consent: dict[str, bool] | None = None, cookies: dict[str, str] | None = None, hold_timers: bool = False,
    ) -> Storefront:
        origin = (site or storefront_site).origin
        context = chromium.new_context()
        contexts.append(context)
        if cookies:
            context.add_cookies([{"name": k, "value": v, "url": origin} for k, v in cookies.items()])
        page = context.new_page()
        page.goto(origin + "/products/organic-tee")
        page.evaluate(STAND_INS, {
            "holdTimers": hold_timers, "customer": customer, "consent": consent or DEFAULT_CONSENT,
            "shop": SHOP, "storefront": STOREFRONT, "href": STOREFRONT + "/products/organic-tee",
        })
        page.add_script_tag(content=collector.script)
        return Storefront(page, client_id=f"client-{uuid.uuid4().hex[:12]}")

    yield open_page
    for context in contexts:
        context.close()
