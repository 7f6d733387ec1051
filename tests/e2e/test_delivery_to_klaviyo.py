"""The whole path as a user runs it: `recapture serve` + the fake Klaviyo, on both databases.

A shopper Klaviyo cannot see abandons a cart; after the hold window the fake Klaviyo (validating every request
against Klaviyo's official spec) has exactly one `Cart Abandoned - Recaptured` event for the right profile. The
worker is then killed with SIGKILL in the middle of delivering a backlog: after a restart nothing is lost and
nothing is recorded twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from recapture.adapters.destinations.fake_klaviyo import FakeKlaviyo, FakeKlaviyoServer, Fault, KlaviyoSpec
from tests.conftest import free_port
from tests.support import (
    ADMIN_TOKEN,
    AUTH,
    SECRET_KEY,
    SHARED,
    SHOP,
    WEBHOOK_SECRET,
    checkout,
    envelope,
    pixel_event,
    variant,
    wait_until,
)

START = datetime(2026, 10, 5, 10, 0, tzinfo=UTC)
KEY = "pk_e2e_0001"


@pytest.fixture
def fake() -> Iterator[tuple[FakeKlaviyo, str]]:
    spec = KlaviyoSpec.load(SHARED / "contracts" / "klaviyo" / "openapi-stable.json")
    klaviyo = FakeKlaviyo(spec, keys={KEY: spec.all_scopes})
    with FakeKlaviyoServer(klaviyo) as server:
        yield klaviyo, server.url


class Service:
    def __init__(self, database_url: str, klaviyo_url: str, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = os.environ | {
            "RECAPTURE_DATABASE_URL": database_url, "RECAPTURE_SHOP_DOMAIN": SHOP,
            "RECAPTURE_SHOPIFY_WEBHOOK_SECRET": WEBHOOK_SECRET, "RECAPTURE_ADMIN_TOKEN": ADMIN_TOKEN,
            "RECAPTURE_SECRET_KEY": SECRET_KEY, "RECAPTURE_CLOCK": "manual",
            "RECAPTURE_KLAVIYO_PRIVATE_KEY": KEY, "RECAPTURE_KLAVIYO_BASE_URL": klaviyo_url,
        }
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *arguments: str) -> None:
        recapture = str(Path(sys.executable).with_name("recapture"))
        with self.log.open("a") as out:
            self.process = subprocess.Popen([recapture, "serve", "--port", str(self.port), *arguments], env=self.env,
                                            stdout=out, stderr=subprocess.STDOUT)
        wait_until(lambda: httpx.get(self.url + "/readyz").status_code == 200, self.process)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=20)

    def clock(self, when: datetime) -> None:
        assert httpx.post(self.url + "/admin/clock", json={"now": when.isoformat()}, headers=AUTH).status_code == 200

    def collect(self, items: list[dict[str, Any]]) -> None:
        response = httpx.post(self.url + "/collect/shopify", content=json.dumps({"batch": items}),
                              headers={"content-type": "application/json"}, timeout=30)
        assert response.status_code == 200, response.text

    def status(self) -> dict[str, Any]:
        return httpx.get(self.url + "/admin/status", headers=AUTH, timeout=30).json()  # type: ignore[no-any-return]

    def settled(self) -> bool:
        queues = self.status()["queues"]
        return all(q["depth"] == 0 for q in queues.values())


@pytest.fixture
def service(database_url: str, fake: tuple[FakeKlaviyo, str], tmp_path: Path) -> Iterator[Service]:
    running = Service(database_url, fake[1], tmp_path / "serve.log")
    running.start()
    yield running
    running.stop()


def at(minutes: float) -> str:
    return (START + timedelta(minutes=minutes)).isoformat()


def shopper(n: int) -> list[dict[str, Any]]:
    """Shopper n typed their email at checkout three days ago, and today adds to cart with Klaviyo blocked."""
    device = f"device-{n}"
    line = {"quantity": 1, "merchandise": variant(price=20.0), "cost": {"totalAmount": {"amount": 20.0, "currencyCode": "USD"}}}
    return [
        envelope(pixel_event(name="checkout_contact_info_submitted", event_id=f"k{n}", client_id=device,
                             timestamp=at(-60 * 24 * 3), data={"checkout": checkout(email=f"shopper{n}@example.com", token=f"t{n}")})),
        envelope(pixel_event(name="product_added_to_cart", event_id=f"c{n}", client_id=device, timestamp=at(0),
                             data={"cartLine": line})),
    ]


def test_cart_abandonment_reaches_klaviyo_once_for_the_right_profile(service: Service, fake: tuple[FakeKlaviyo, str]) -> None:
    """After the hold window the fake Klaviyo has one spec-valid Cart Abandoned event for shopper 1's email."""
    klaviyo = fake[0]
    service.clock(START)
    service.collect(shopper(1))
    wait_until(service.settled)
    assert klaviyo.stats()["events"] == 0
    service.clock(START + timedelta(minutes=61))
    wait_until(lambda: klaviyo.stats()["events"] == 1 and service.settled())
    [event] = httpx.get(fake[1] + "/_fake/events").json()
    text = json.dumps(event)
    assert "Cart Abandoned - Recaptured" in text
    assert "shopper1@example.com" in text
    # The only 400s are the start-up scope probes, whose bodies are invalid on purpose so they create nothing.
    assert klaviyo.stats()["operations"]["create_event"] == {"202": 1, "400": 1}
    assert service.status()["destinations"]["klaviyo"]["health"] == "green"


BACKLOG = 250


def test_sigkill_while_delivering_loses_and_duplicates_nothing(service: Service, fake: tuple[FakeKlaviyo, str]) -> None:
    """Kill -9 while a bulk request of a 250-abandonment backlog is in flight; after a restart Klaviyo holds 250."""
    klaviyo = fake[0]
    service.clock(START)
    journeys = [item for n in range(BACKLOG) for item in shopper(n)]
    for start in range(0, len(journeys), 100):  # 500 KB per request
        service.collect(journeys[start : start + 100])
    wait_until(service.settled, seconds=120)
    # The first bulk request answers at once, the next ones only after 3 s: the kill lands inside the second.
    klaviyo.inject(Fault(kind="slow", delay=0.0, operation="bulk_create_events"),
                   *[Fault(kind="slow", delay=3.0, operation="bulk_create_events")] * 2)
    service.clock(START + timedelta(minutes=61))
    wait_until(lambda: klaviyo.stats()["events"] >= 100, seconds=90)
    time.sleep(0.5)
    service.kill()
    delivered_before = klaviyo.stats()["events"]
    assert delivered_before < BACKLOG, "the backlog finished before the kill; the test proves nothing"
    service.start()
    wait_until(lambda: klaviyo.stats()["events"] == BACKLOG and service.settled(), seconds=120)
    time.sleep(4)  # a request the killed process left in flight lands late: it must not add a duplicate
    assert klaviyo.stats()["events"] == BACKLOG
    events = httpx.get(fake[1] + "/_fake/events").json()
    shoppers = sorted(int(json.dumps(e).split("shopper")[1].split("@")[0]) for e in events)
    assert shoppers == list(range(BACKLOG))


def test_collector_and_worker_in_two_processes(database_url: str, fake: tuple[FakeKlaviyo, str], tmp_path: Path) -> None:
    """`serve --no-workers` beside `recapture worker`: the worker follows the manual clock and delivers."""
    service = Service(database_url, fake[1], tmp_path / "serve.log")
    service.start("--no-workers")
    worker = subprocess.Popen([str(Path(sys.executable).with_name("recapture")), "worker"], env=service.env,
                              stdout=(tmp_path / "worker.log").open("w"), stderr=subprocess.STDOUT)
    try:
        service.clock(START)
        service.collect(shopper(7))
        wait_until(service.settled, worker)
        service.clock(START + timedelta(minutes=61))
        wait_until(lambda: fake[0].stats()["events"] == 1, worker)
        assert "shopper7@example.com" in json.dumps(httpx.get(fake[1] + "/_fake/events").json())
    finally:
        worker.send_signal(signal.SIGINT)
        worker.wait(timeout=20)
        service.stop()
