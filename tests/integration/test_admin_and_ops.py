"""Admin clock and status, health, readiness, metrics and the pixel script, on both databases."""

from __future__ import annotations

import json

from starlette.testclient import TestClient

from recapture.wiring import Runtime
from tests.support import AUTH, SHOP, envelope, pixel_event

JSON = {"content-type": "application/json"}


def test_admin_endpoints_require_the_bearer_token(client: TestClient) -> None:
    """No token or a wrong token: 401, for the clock and for status."""
    assert client.get("/admin/status").status_code == 401
    assert client.get("/admin/status", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.post("/admin/clock", json={"now": "2026-10-06T00:00:00Z"}).status_code == 401


def test_clock_moves_forward_and_never_back(client: TestClient, runtime: Runtime) -> None:
    """The manual clock is set by POST /admin/clock; going backwards is a 409 that leaves it unchanged."""
    moved = client.post("/admin/clock", json={"now": "2026-10-06T08:00:00Z"}, headers=AUTH)
    assert moved.status_code == 200
    assert moved.json()["now"] == "2026-10-06T08:00:00+00:00"
    back = client.post("/admin/clock", json={"now": "2026-10-06T07:59:59Z"}, headers=AUTH)
    assert back.status_code == 409
    assert back.json()["error"]["code"] == "clock_backwards"
    assert runtime.clock.now().isoformat() == "2026-10-06T08:00:00+00:00"
    assert client.post("/admin/clock", json={"now": "tomorrow"}, headers=AUTH).status_code == 422


def test_clock_survives_a_restart(make_settings, runtime: Runtime) -> None:  # type: ignore[no-untyped-def]
    """A simulation can resume: the manual clock's time is persisted."""
    from recapture.wiring import build_runtime

    runtime.clock.set(runtime.clock.now().replace(year=2027))
    again = build_runtime(make_settings())
    assert again.clock.now() == runtime.clock.now()
    again.engine.dispose()


def test_status_counts_received_stored_processed_and_queue_depth(client: TestClient, runtime: Runtime) -> None:
    """A driver can wait for `processing.depth == 0`; counts follow what happened."""
    batch = {"batch": [envelope(pixel_event(event_id=f"s{i}")) for i in range(3)] + [{"bad": 1}]}
    client.post("/collect/shopify", content=json.dumps(batch), headers={"content-type": "application/json"})
    status = client.get("/admin/status", headers=AUTH).json()
    assert status["events"]["received"] == 4
    assert status["events"]["rejected"] == 1
    assert status["events"]["stored"] == 3
    assert status["queues"]["processing"]["depth"] == 3
    assert status["clock"]["mode"] == "manual"
    runtime.processor.run_once()
    status = client.get("/admin/status", headers=AUTH).json()
    assert status["events"]["processed"] == 3
    assert status["queues"]["processing"]["depth"] == 0
    assert not any("depth" in key or "pending" in key for key in status["scheduled"])


def test_health_readiness_and_metrics(client: TestClient) -> None:
    """Liveness, readiness (database reachable, writer running) and Prometheus counters."""
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": True, "writer": True}
    client.post("/collect/shopify", content=json.dumps(envelope()), headers={"content-type": "application/json"})
    text = client.get("/metrics").text
    assert 'recapture_events_received_total{source="shopify_pixel"} 1.0' in text
    assert 'recapture_events_stored_total{source="shopify_pixel"} 1.0' in text
    assert 'recapture_queue_depth{queue="processing"} 1.0' in text
    # Group commit is observable: one commit made that one event durable.
    assert "recapture_ingest_commit_events_count 1.0" in text
    assert "recapture_ingest_commit_events_sum 1.0" in text


def test_pixel_script_is_served_with_this_installation_filled_in(client: TestClient) -> None:
    """GET /pixel/shopify.js is the ready-to-paste pixel, posting to RECAPTURE_PUBLIC_URL for this shop."""
    response = client.get("/pixel/shopify.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/javascript")
    script = response.text
    assert 'analytics.subscribe("all_standard_events"' in script
    assert '"https://recapture.example.com/collect/shopify"' in script
    assert f'"{SHOP}"' in script
    assert "keepalive" in script
    assert "__RECAPTURE_" not in script


def test_secrets_never_appear_in_status_metrics_or_errors(client: TestClient, settings) -> None:  # type: ignore[no-untyped-def]
    """The webhook secret, admin token and encryption key are in no response body."""
    bodies = [
        client.get("/admin/status", headers=AUTH).text,
        client.get("/metrics").text,
        client.post("/webhooks/shopify", content=b"{}", headers={"X-Shopify-Shop-Domain": SHOP}).text,
        client.post("/admin/clock", json={"now": 1}, headers=AUTH).text,
        repr(settings),
    ]
    secrets = [settings.shopify_webhook_secret, settings.admin_token, settings.secret_key]
    for secret in secrets:
        assert all(secret.get_secret_value() not in body for body in bodies)


def test_guessing_the_admin_token_is_throttled_and_the_right_token_then_waits_too(client: TestClient) -> None:
    """Ten wrong tokens from one client, then 429 for a minute, even with the right one (a guess learns nothing)."""
    wrong = {"Authorization": "Bearer not-the-token"}
    assert [client.get("/admin/status", headers=wrong).status_code for _ in range(10)] == [401] * 10
    refused = client.get("/admin/status", headers=AUTH)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_failures"


def test_a_destination_error_quoting_an_email_is_stored_and_shown_masked(runtime: Runtime, client: TestClient) -> None:
    """Platforms quote the address they refused; recapture keeps and shows the error without it."""
    from recapture.adapters.storage.schema import deliveries
    from recapture.domain.delivery import DeliveryEvent, DeliveryProfile

    event = DeliveryEvent(shop=SHOP, metric="Cart Abandoned - Recaptured", unique_id="u-1", time=runtime.clock.now(),
                          profile=DeliveryProfile(email="ann.lee@example.com"), properties={})
    delivery_id = runtime.outbox.enqueue("klaviyo", event, runtime.clock.now())
    assert delivery_id is not None
    runtime.outbox.reschedule(delivery_id, None, '400: {"detail": "invalid email ann.lee@example.com"}')
    with runtime.engine.connect() as conn:
        stored = conn.execute(deliveries.select()).one().last_error
    status = client.get("/admin/status", headers=AUTH).text
    for text in (stored, status):
        assert "ann.lee@example.com" not in text
        assert "a***@e***.com" in text


def test_an_event_that_fails_processing_is_set_aside_and_the_queue_goes_on(
    runtime: Runtime, client: TestClient, monkeypatch  # type: ignore[no-untyped-def]
) -> None:
    """One poison event: its batch is retried one by one, the event is set aside with a scrubbed reason, the rest
    are processed, and the status and metrics count it."""
    for name in ("good-1", "poison", "good-2"):
        event = pixel_event(event_id=name, client_id=f"device-{name}")
        assert client.post("/collect/shopify", content=json.dumps(envelope(event)), headers=JSON).status_code == 200
    resolver = runtime.processor._resolver
    resolve = resolver.resolve
    poisoned = {"device-poison"}

    def failing(event):  # type: ignore[no-untyped-def]
        if any(i.value in poisoned for i in event.identifiers):
            raise ValueError("cannot handle ann@example.com")
        return resolve(event)

    monkeypatch.setattr(resolver, "resolve", failing)
    result = runtime.processor.run_once()
    assert result.processed == 2
    [(_, reason)] = result.failures
    assert reason.startswith("ValueError: cannot handle")
    assert "ann@example.com" not in reason
    runtime.metrics.record_processing(result)
    status = client.get("/admin/status", headers=AUTH).json()
    assert status["events"]["set_aside"] == 1
    assert status["queues"]["processing"]["depth"] == 0
    assert "recapture_events_set_aside_total 1.0" in client.get("/metrics").text
