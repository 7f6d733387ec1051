"""`recapture serve` as a user runs it, on both databases: events in over HTTP, worked off by the worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.support import (
    ADMIN_TOKEN,
    AUTH,
    SECRET_KEY,
    SHOP,
    WEBHOOK_SECRET,
    checkout,
    envelope,
    pixel_event,
    wait_until,
    webhook_headers,
)


@pytest.fixture
def served(database_url: str, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = os.environ | {
        "RECAPTURE_DATABASE_URL": database_url, "RECAPTURE_SHOP_DOMAIN": SHOP,
        "RECAPTURE_SHOPIFY_WEBHOOK_SECRET": WEBHOOK_SECRET, "RECAPTURE_ADMIN_TOKEN": ADMIN_TOKEN,
        "RECAPTURE_SECRET_KEY": SECRET_KEY, "RECAPTURE_CLOCK": "manual",
    }
    log = (tmp_path / "serve.log").open("w")
    recapture = str(Path(sys.executable).with_name("recapture"))
    process = subprocess.Popen([recapture, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(url + "/readyz").status_code == 200, process)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
        log.close()


def _status(url: str) -> dict:  # type: ignore[type-arg]
    return httpx.get(url + "/admin/status", headers=AUTH).json()


def test_events_flow_in_and_the_worker_drains_the_queue(served: str) -> None:
    """Pixel events and webhooks are acknowledged, stored and processed; status shows the queue empty."""
    assert httpx.post(served + "/admin/clock", json={"now": "2026-10-05T10:00:00Z"}, headers=AUTH).status_code == 200
    journey = [
        envelope(pixel_event(name="page_viewed", event_id="p1", data={})),
        envelope(pixel_event(event_id="p2")),
        envelope(pixel_event(name="checkout_started", event_id="p3", data={"checkout": checkout()})),
    ]
    response = httpx.post(served + "/collect/shopify", content=json.dumps({"batch": journey}),
                          headers={"content-type": "text/plain"})
    assert response.json()["accepted"] == 3
    order = json.dumps({"id": 1001, "email": "shopper@example.com", "checkout_token": "chk-token-1",
                        "total_price": "55.00", "currency": "USD", "line_items": []}).encode()
    assert httpx.post(served + "/webhooks/shopify", content=order,
                      headers=webhook_headers(order, "orders/create", "wh-e2e")).status_code == 200
    wait_until(lambda: _status(served)["queues"]["processing"]["depth"] == 0)
    status = _status(served)
    assert status["events"]["stored"] == 4
    assert status["events"]["processed"] == 4


def test_customer_redact_through_http_erases_the_customer(served: str) -> None:
    """The mandatory privacy webhook, end to end: the shopper's events are gone once the queue drains."""
    shopper = envelope(pixel_event(name="checkout_started", event_id="x1", data={"checkout": checkout(email="erase.me@example.com")}))
    other = envelope(pixel_event(event_id="x2", client_id="someone-else"))
    httpx.post(served + "/collect/shopify", content=json.dumps({"batch": [shopper, other]}), headers={"content-type": "application/json"})
    redact = json.dumps({"shop_id": 1, "shop_domain": SHOP, "customer": {"id": 5, "email": "erase.me@example.com"}}).encode()
    assert httpx.post(served + "/webhooks/shopify", content=redact,
                      headers=webhook_headers(redact, "customers/redact", "wh-redact-e2e")).status_code == 200
    wait_until(lambda: _status(served)["queues"]["processing"]["depth"] == 0
               and _status(served)["events"]["stored"] == 1)
