"""The `recapture` command line: whois explains a person, erase removes them, pixel prints the script."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from recapture.cli.main import app
from recapture.wiring import build_runtime
from tests.support import ADMIN_TOKEN, SECRET_KEY, SHOP, WEBHOOK_SECRET, checkout, envelope, pixel_event

runner = CliRunner()


@pytest.fixture
def cli_env(database_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {"RECAPTURE_DATABASE_URL": database_url, "RECAPTURE_SHOP_DOMAIN": SHOP,
           "RECAPTURE_SHOPIFY_WEBHOOK_SECRET": WEBHOOK_SECRET, "RECAPTURE_ADMIN_TOKEN": ADMIN_TOKEN,
           "RECAPTURE_SECRET_KEY": SECRET_KEY, "RECAPTURE_PUBLIC_URL": "https://rc.example.com"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def _seed(settings) -> None:  # type: ignore[no-untyped-def]
    from starlette.testclient import TestClient

    from recapture.wiring import build_web_app

    runtime = build_runtime(settings)
    batch = {"batch": [envelope(pixel_event(event_id="v1", client_id="dev-77")),
                       envelope(pixel_event(name="checkout_started", event_id="c1", client_id="dev-77",
                                            data={"checkout": checkout(email="lee@example.com", phone="+14155550123")}))]}
    with TestClient(build_web_app(settings, runtime, worker=False)) as client:
        assert client.post("/collect/shopify", json=batch).status_code == 200
    runtime.processor.run_once()
    runtime.engine.dispose()


def test_whois_finds_the_person_by_email_phone_or_device_and_masks_contacts(cli_env, make_settings) -> None:  # type: ignore[no-untyped-def]
    """`recapture whois` answers from any identifier of the person and never prints a raw email."""
    _seed(make_settings(clock="system"))
    reports = []
    for value in ("Lee@Example.com", "+1 415 555 0123", "dev-77"):
        result = runner.invoke(app, ["whois", value, "--json"])
        assert result.exit_code == 0, result.output
        reports.append(json.loads(result.output))
    assert len({r["person"] for r in reports}) == 1
    assert "lee@example.com" not in json.dumps(reports)
    assert {i["type"] for i in reports[0]["identifiers"]} >= {"email", "phone", "client_id", "checkout_token"}
    table = runner.invoke(app, ["whois", "dev-77"])
    assert "evidence" in table.output
    assert runner.invoke(app, ["whois", "nobody@example.com"]).exit_code == 1


def test_erase_removes_the_customer_everywhere(cli_env, make_settings) -> None:  # type: ignore[no-untyped-def]
    """`recapture erase --email` deletes the person with their device history; whois then finds nothing."""
    _seed(make_settings(clock="system"))
    result = runner.invoke(app, ["erase", "--email", "LEE@example.com"])
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.output)
    assert outcome["events"] == 2
    assert outcome["persons"] == 1
    assert runner.invoke(app, ["whois", "dev-77"]).exit_code == 1
    assert runner.invoke(app, ["erase", "--email", "not-an-email"]).exit_code == 2


def test_pixel_command_prints_the_configured_script(cli_env) -> None:  # type: ignore[no-untyped-def]
    """`recapture pixel` is what the merchant pastes into Shopify."""
    result = runner.invoke(app, ["pixel"])
    assert result.exit_code == 0
    assert '"https://rc.example.com/collect/shopify"' in result.output


def test_help_never_shows_secrets(cli_env) -> None:  # type: ignore[no-untyped-def]
    """`--help` output holds no secret even when secrets are set in the environment."""
    for command in ([], ["serve"], ["erase"], ["whois"]):
        output = runner.invoke(app, [*command, "--help"]).output
        for secret in (WEBHOOK_SECRET, SECRET_KEY, ADMIN_TOKEN):
            assert secret not in output


def test_deliveries_status_and_retry_commands(cli_env, make_settings) -> None:  # type: ignore[no-untyped-def]
    """`recapture deliveries status` shows the outbox; `retry` requeues dead letters and says how many."""
    from datetime import UTC, datetime

    from recapture.domain.delivery import DeliveryEvent, DeliveryProfile

    runtime = build_runtime(make_settings(clock="system"))
    event = DeliveryEvent(shop=SHOP, metric="Cart Abandoned - Recaptured", unique_id="u-1",
                          time=datetime.now(UTC), profile=DeliveryProfile(email="lee@example.com"))
    delivery = runtime.outbox.enqueue("webhook", event, datetime.now(UTC))
    assert delivery is not None
    runtime.outbox.reschedule(delivery, None, "400: bad payload")
    runtime.engine.dispose()
    status = json.loads(runner.invoke(app, ["deliveries", "status"]).output)
    assert status["webhook"]["dead"] == 1
    assert status["webhook"]["health"] == "red"
    retried = runner.invoke(app, ["deliveries", "retry"])
    assert "1 dead-lettered deliveries queued again" in retried.output
    assert json.loads(runner.invoke(app, ["deliveries", "status"]).output)["webhook"]["pending"] == 1
