"""POST /collect/shopify on both databases: what the pixel sends is stored, bad input is refused clearly."""

from __future__ import annotations

import json

from starlette.testclient import TestClient

from recapture.wiring import Runtime
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
