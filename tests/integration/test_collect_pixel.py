"""POST /collect/shopify on both databases: what the pixel sends is stored, bad input is refused clearly."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from recapture.adapters.storage.schema import event_identifiers, events
from recapture.wiring import Runtime, build_runtime
from tests.conftest import LiveServer
from tests.support import SHOP, envelope, pixel_event

JSON = {"content-type": "application/json", "Origin": f"https://{SHOP}"}


def test_single_envelope_is_stored_and_acknowledged(client: TestClient, runtime: Runtime) -> None:
    """An accepted envelope is in the database by the time the 200 arrives."""
    response = client.post("/collect/shopify", content=json.dumps(envelope()), headers=JSON)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
    assert runtime.store.counts().stored == 1


def test_mixed_batch_keeps_good_items_and_reports_each(client: TestClient, runtime: Runtime) -> None:
    """One bad envelope never drops its good neighbours; each item gets its own result."""
    batch = {"batch": [envelope(pixel_event(event_id="a")), {"shop": SHOP, "event": {"name": "x"}},
                       envelope(pixel_event(event_id="b"))]}
    response = client.post("/collect/shopify", content=json.dumps(batch), headers=JSON)
    assert response.status_code == 207
    body = response.json()
    assert [r["status"] for r in body["results"]] == ["accepted", "rejected", "accepted"]
    assert body["results"][1]["error"]["code"] == "missing_field"
    assert runtime.store.counts().stored == 2


def _post(client: TestClient, payload: object, **headers: str) -> object:
    return client.post("/collect/shopify", content=json.dumps(payload), headers=JSON | headers)


def test_wrong_content_type_is_415(client: TestClient, runtime: Runtime) -> None:
    """Form posts and other media types are refused before the body is read."""
    response = client.post("/collect/shopify", content=b"a=b", headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_text_plain_is_accepted_because_the_pixel_avoids_preflights(client: TestClient, runtime: Runtime) -> None:
    """The pixel posts JSON as text/plain (a simple CORS request); that is accepted."""
    response = client.post("/collect/shopify", content=json.dumps(envelope()), headers={"content-type": "text/plain;charset=UTF-8"})
    assert response.status_code == 200
    assert runtime.store.counts().stored == 1


def test_oversize_request_is_413_and_nothing_is_stored(client: TestClient, runtime: Runtime) -> None:
    """A body over 500 KB is refused whole."""
    batch = {"batch": [envelope(pixel_event(event_id=f"e{i}")) for i in range(600)]}
    response = client.post("/collect/shopify", content=json.dumps(batch), headers=JSON)
    assert response.status_code == 413
    assert response.json()["error"]["limit"] == 500_000
    assert runtime.store.counts().stored == 0


def test_oversize_envelope_is_refused_alone(client: TestClient, runtime: Runtime) -> None:
    """An envelope over 32 KB is rejected in its batch; its neighbours are stored."""
    huge = envelope(pixel_event(event_id="huge", name="page_viewed", data={"padding": "x" * 40_000}))
    response = client.post("/collect/shopify", content=json.dumps({"batch": [huge, envelope()]}), headers=JSON)
    assert response.status_code == 207
    assert [r["status"] for r in response.json()["results"]] == ["rejected", "accepted"]
    assert response.json()["results"][0]["error"]["code"] == "envelope_too_large"
    single = client.post("/collect/shopify", content=json.dumps(huge), headers=JSON)
    assert single.status_code == 413


@pytest.mark.parametrize(
    ("body", "code"),
    [(b"{not json", "malformed_json"), (b"[1, 2]", "malformed_json"), (b'{"batch": 7}', "invalid_batch")],
)
def test_unreadable_bodies_are_400_with_a_typed_error(client: TestClient, body: bytes, code: str) -> None:
    """Malformed JSON or a batch that is not a list: a JSON error naming the problem."""
    response = client.post("/collect/shopify", content=body, headers=JSON)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"shop": SHOP}, "missing_field"),
        ({"event": pixel_event()}, "missing_field"),
        (envelope(pixel_event() | {"clientId": ""}), "invalid_field"),
        (envelope(pixel_event() | {"timestamp": None}), "invalid_field"),
        (envelope(pixel_event() | {"data": "not an object"}), "invalid_field"),
    ],
)
def test_missing_or_invalid_fields_are_422(client: TestClient, runtime: Runtime, payload: object, code: str) -> None:
    """Required fields (shop, event.id, name, clientId, timestamp) are checked; the message says which."""
    response = _post(client, payload)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == code
    assert runtime.store.counts().stored == 0


def test_unknown_shop_is_404_alone_and_per_item_in_a_batch(client: TestClient, runtime: Runtime) -> None:
    """Events for a shop this installation does not serve are refused, never stored under another shop."""
    stranger = envelope(shop="stranger.myshopify.com")
    assert _post(client, stranger).status_code == 404
    response = _post(client, {"batch": [stranger, envelope()]})
    assert [r["status"] for r in response.json()["results"]] == ["rejected", "accepted"]
    assert response.json()["results"][0]["error"]["code"] == "unknown_shop"


def test_all_rejected_batch_is_422(client: TestClient) -> None:
    """A batch with no good item says so with 422 and still reports each item."""
    response = _post(client, {"batch": [{"x": 1}, {"y": 2}]})
    assert response.status_code == 422
    assert response.json()["rejected"] == 2


def test_retried_event_is_a_duplicate_not_a_second_row(client: TestClient, runtime: Runtime) -> None:
    """The same event id sent twice (a retried request) is stored once."""
    assert _post(client, envelope()).json()["accepted"] == 1
    again = _post(client, envelope())
    assert again.status_code == 200
    assert again.json()["results"][0]["status"] == "duplicate"
    same_batch = _post(client, {"batch": [envelope(pixel_event(event_id="z")), envelope(pixel_event(event_id="z"))]})
    assert [r["status"] for r in same_batch.json()["results"]] == ["accepted", "duplicate"]
    assert runtime.store.counts().stored == 2


def test_far_future_and_far_past_timestamps_are_accepted_clamped_and_flagged(client: TestClient, runtime: Runtime) -> None:
    """A wrong client clock never loses the event; it is stored at a sane time and flagged."""
    batch = {"batch": [
        envelope(pixel_event(event_id="future", timestamp="2030-01-01T00:00:00Z")),
        envelope(pixel_event(event_id="past", timestamp="2001-01-01T00:00:00Z")),
    ]}
    results = _post(client, batch).json()["results"]
    assert results[0]["flags"] == ["timestamp_clamped_future"]
    assert results[1]["flags"] == ["timestamp_clamped_past"]
    occurred = [e.occurred_at for e in runtime.store.pending(10)]
    assert occurred[0] == runtime.clock.now()
    assert occurred[1] == runtime.clock.now() - timedelta(days=7)


def test_client_ip_and_user_agent_are_recorded(client: TestClient, runtime: Runtime) -> None:
    """Without trusted proxies X-Forwarded-For is ignored: the peer address is the shopper's IP."""
    _post(client, envelope(), **{"User-Agent": "Mozilla/5.0 Test", "X-Forwarded-For": "203.0.113.9"})
    with runtime.engine.connect() as conn:
        row = conn.execute(select(events.c.ip, events.c.user_agent)).one()
    assert row.user_agent == "Mozilla/5.0 Test"
    assert row.ip != "203.0.113.9"


def test_forwarded_for_is_honoured_from_a_trusted_proxy(make_settings, database_url: str) -> None:  # type: ignore[no-untyped-def]
    """Behind a configured proxy (here: the loopback peer), the client address comes from X-Forwarded-For."""
    settings = make_settings(trusted_proxies="127.0.0.1/32")
    runtime = build_runtime(settings)
    with LiveServer(settings, runtime, worker=False) as server:
        headers = JSON | {"X-Forwarded-For": "198.51.100.7, 203.0.113.9"}
        assert httpx.post(server.url + "/collect/shopify", content=json.dumps(envelope()), headers=headers).is_success
    with runtime.engine.connect() as conn:
        assert conn.execute(select(events.c.ip)).scalar_one() == "203.0.113.9"
    runtime.engine.dispose()


def test_contact_data_is_encrypted_at_rest(client: TestClient, runtime: Runtime) -> None:
    """The shopper's email appears nowhere in the database in plaintext."""
    from tests.support import checkout

    event = pixel_event(name="checkout_started", event_id="chk", data={"checkout": checkout(email="Jane.Doe@Example.com")})
    assert _post(client, envelope(event)).status_code == 200
    with runtime.engine.connect() as conn:
        dump = " ".join(str(row) for table in (events, event_identifiers) for row in conn.execute(select(table)))
    assert "jane.doe" not in dump.lower()
    [stored] = runtime.store.pending(10)
    assert ("email", "jane.doe@example.com") in {(i.type.value, i.value) for i in stored.identifiers}


def test_cors_allows_the_shop_and_the_pixel_sandbox_and_refuses_others(client: TestClient, runtime: Runtime) -> None:
    """Preflights answer the shop's origin and Shopify's sandbox (Origin: null); a foreign origin gets 403."""
    for origin in (f"https://{SHOP}", "null"):
        preflight = client.options("/collect/shopify", headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
        assert preflight.headers["access-control-allow-origin"] == origin
        posted = client.post("/collect/shopify", content=json.dumps(envelope(pixel_event(event_id=origin))),
                             headers={"content-type": "text/plain", "Origin": origin})
        assert posted.headers["access-control-allow-origin"] == origin
    foreign = client.post("/collect/shopify", content=json.dumps(envelope()), headers={"content-type": "text/plain", "Origin": "https://evil.example"})
    assert foreign.status_code == 403
    assert "access-control-allow-origin" not in foreign.headers
    assert runtime.store.counts().stored == 2


def test_oversize_chunked_body_without_length_is_413(client: TestClient, runtime: Runtime) -> None:
    """A streamed body with no Content-Length is measured as it arrives and refused past the limit."""

    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(60):
            yield b" " * 10_000

    response = client.post("/collect/shopify", content=chunks(), headers=JSON)
    assert response.status_code == 413
    assert runtime.store.counts().stored == 0
