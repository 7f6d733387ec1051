"""The gap report as a merchant gets it: a live service delivering to the fake Klaviyo, then `GET /admin/report`,
`recapture report --json --target` and `recapture report` on the database, on both databases."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from recapture.adapters.destinations.fake_klaviyo import FakeKlaviyo, FakeKlaviyoServer, KlaviyoSpec
from recapture.cli.main import app
from recapture.settings import Settings
from recapture.wiring import build_runtime
from tests.conftest import LiveServer
from tests.support import (
    ADMIN_TOKEN,
    AUTH,
    SECRET_KEY,
    SHARED,
    SHOP,
    WEBHOOK_SECRET,
    checkout,
    envelope,
    klaviyo_cookie,
    pixel_event,
    variant,
    wait_until,
    webhook_headers,
)

START = datetime(2026, 10, 5, 10, 0, tzinfo=UTC)
KEY = "pk_report_0001"
RANGE = ["--since", "2026-10-02", "--until", "2026-10-12"]
runner = CliRunner()


@pytest.fixture
def klaviyo() -> Iterator[tuple[FakeKlaviyo, str]]:
    spec = KlaviyoSpec.load(SHARED / "contracts" / "klaviyo" / "openapi-stable.json")
    fake = FakeKlaviyo(spec, keys={KEY: spec.all_scopes})
    with FakeKlaviyoServer(fake) as server:
        yield fake, server.url


@pytest.fixture
def service(make_settings: Callable[..., Settings], klaviyo: tuple[FakeKlaviyo, str]) -> Iterator[LiveServer]:
    settings = make_settings(klaviyo_private_key=KEY, klaviyo_base_url=klaviyo[1])
    runtime = build_runtime(settings)
    runtime.clock.set(START)
    with LiveServer(settings, runtime) as server:
        yield server
    runtime.engine.dispose()


def settled(service: LiveServer) -> bool:
    queues = httpx.get(service.url + "/admin/status", headers=AUTH, timeout=30).json()["queues"]
    return all(queue["depth"] == 0 for queue in queues.values())


def set_clock(service: LiveServer, when: datetime) -> None:
    assert httpx.post(service.url + "/admin/clock", json={"now": when.isoformat()}, headers=AUTH).status_code == 200


def journey(device: str, email: str, event_id: str, **extra: Any) -> list[dict[str, Any]]:
    """Typed the email at a checkout three days ago; today adds a 60 USD cart and leaves."""
    line = {"quantity": 2, "merchandise": variant(price=30.0),
            "cost": {"totalAmount": {"amount": 60.0, "currencyCode": "USD"}}}
    return [
        envelope(pixel_event(name="checkout_contact_info_submitted", event_id=f"{event_id}-k", client_id=device,
                             timestamp=(START - timedelta(days=3)).isoformat(),
                             data={"checkout": checkout(email=email, token=f"t-{device}")})),
        envelope(pixel_event(name="product_added_to_cart", event_id=event_id, client_id=device,
                             timestamp=START.isoformat(), data={"cartLine": line}), **extra),
    ]


@pytest.fixture
def played(service: LiveServer, klaviyo: tuple[FakeKlaviyo, str]) -> LiveServer:
    """Ann (Klaviyo blocked) is recaptured and buys the next day; Bob (Klaviyo's cookie) is left to Klaviyo."""
    cookie = {"__kla_id": klaviyo_cookie(**{"$exchange_id": "KX.bob"})}
    items = journey("laptop", "ann@example.com", "ann") + journey("phone", "bob@example.com", "bob", cookies=cookie)
    response = httpx.post(service.url + "/collect/shopify", content=json.dumps({"batch": items}),
                          headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == 200, response.text
    wait_until(lambda: settled(service))
    set_clock(service, START + timedelta(minutes=61))
    wait_until(lambda: klaviyo[0].stats()["events"] == 1 and settled(service))
    next_day = START + timedelta(days=1)
    set_clock(service, next_day)
    body = json.dumps({"id": 777, "email": "ann@example.com", "total_price": "60.00", "currency": "USD",
                       "line_items": []}).encode()
    headers = webhook_headers(body, "orders/create", "order-777", triggered_at=next_day.isoformat())
    assert httpx.post(service.url + "/webhooks/shopify", content=body, headers=headers).status_code == 200
    wait_until(lambda: settled(service))
    return service


def test_the_endpoint_reports_the_recaptured_cart_and_its_order(played: LiveServer) -> None:
    response = httpx.get(played.url + "/admin/report", params={"since": "2026-10-02", "until": "2026-10-12"},
                         headers=AUTH, timeout=60)
    assert response.status_code == 200
    cart = response.json()["totals"]["cart"]
    assert (cart["seen"], cart["native"], cart["delivered"]) == (2, 1, 1)
    assert cart["suppressed"]["native"] == 1
    assert cart["recovered_orders"] == 1
    assert cart["recovered_revenue"] == {"USD": "60.00"}
    assert cart["lift"] == 1.0
    assert 3600 <= cart["latency_seconds"]["p50"] <= 3600 + 300


@pytest.fixture
def cli_env(played: LiveServer, database_url: str, monkeypatch: pytest.MonkeyPatch) -> LiveServer:
    for key, value in {"RECAPTURE_DATABASE_URL": database_url, "RECAPTURE_SHOP_DOMAIN": SHOP,
                       "RECAPTURE_SHOPIFY_WEBHOOK_SECRET": WEBHOOK_SECRET, "RECAPTURE_SECRET_KEY": SECRET_KEY,
                       "RECAPTURE_CLOCK": "manual"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("RECAPTURE_ADMIN_TOKEN", raising=False)
    return played


def test_recapture_report_json_reads_the_database_or_asks_the_service(cli_env: LiveServer) -> None:
    """`--json` on the database and `--json --target` through the service print the same figures."""
    local = runner.invoke(app, ["report", "--json", *RANGE])
    assert local.exit_code == 0, local.output
    remote = runner.invoke(app, ["report", "--json", *RANGE, "--target", cli_env.url, "--admin-token", ADMIN_TOKEN])
    assert remote.exit_code == 0, remote.output
    from_database, from_service = json.loads(local.output), json.loads(remote.output)
    assert from_database["totals"] == from_service["totals"]
    assert from_database["series"] == from_service["series"]
    assert from_database["totals"]["cart"]["recovered_revenue"] == {"USD": "60.00"}
    assert from_database["totals"]["all"]["delivered"] == 1


def test_recapture_report_prints_tables_with_the_lift_explained(cli_env: LiveServer) -> None:
    result = runner.invoke(app, ["report", *RANGE, "--period", "week"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "per stage" in result.output
    assert "per week" in result.output
    assert "+100%" in result.output  # cart: 1 recaptured for 1 native
    assert "lift: abandonments recapture delivered" in result.output
    assert "USD 60.00" in result.output


def test_recapture_report_refuses_a_bad_range_and_a_target_without_token(cli_env: LiveServer) -> None:
    assert runner.invoke(app, ["report", "--since", "2026-10-09", "--until", "2026-10-01"]).exit_code == 2
    misspelt = runner.invoke(app, ["report", "--shop", "demo-stor.myshopify.com"])
    assert misspelt.exit_code == 2, "a shop that is not configured is refused, not reported as empty"
    assert "no shop demo-stor.myshopify.com is configured" in misspelt.output
    assert runner.invoke(app, ["report", "--target", cli_env.url]).exit_code == 2
    wrong = runner.invoke(app, ["report", "--target", cli_env.url, "--admin-token", "nope"])
    assert wrong.exit_code == 1
