"""Probabilistic re-identification of a returning device, through HTTP, on both databases."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

from recapture.settings import Settings
from recapture.wiring import build_runtime
from tests.conftest import LiveServer
from tests.support import AUTH, checkout, envelope, pixel_event

INSTAGRAM = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
             "Mobile/15E148 Instagram 309.0.0.0.1 (iPhone14,5; iOS 17_1; en_US)")
SAFARI = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/17.1 Mobile/15E148 Safari/604.1")


def _send(server: LiveServer, item: dict[str, Any], ip: str, agent: str) -> None:
    headers = {"content-type": "application/json", "X-Forwarded-For": ip, "User-Agent": agent}
    assert httpx.post(server.url + "/collect/shopify", content=json.dumps(item), headers=headers).status_code == 200


def _attributions(server: LiveServer) -> dict[str, dict[str, Any]]:
    rows = httpx.get(server.url + "/admin/attributions", headers=AUTH).json()["attributions"]
    return {r["source_event_id"]: r for r in rows}


def _journey(make_settings: Callable[..., Settings], neighbours: int = 0, **overrides: Any) -> dict[str, Any]:
    """Mia buys in Instagram's browser at home, then her phone's Safari visits anonymously from the same network.

    `neighbours` other devices on the same /24 the same day make it a shared network (carrier NAT, an office).
    """
    settings = make_settings(trusted_proxies="127.0.0.1/32", **overrides)
    runtime = build_runtime(settings)
    with LiveServer(settings, runtime, worker=False) as server:
        bought = envelope(pixel_event(name="checkout_started", event_id="ig-checkout", client_id="instagram",
                                      data={"checkout": checkout(email="mia@example.com")}))
        _send(server, bought, "198.51.100.20", INSTAGRAM)
        for n in range(neighbours):
            _send(server, envelope(pixel_event(event_id=f"nat-{n}", client_id=f"stranger-{n}")),
                  "198.51.100.77", SAFARI)
        runtime.processor.run_once()
        _send(server, envelope(pixel_event(event_id="safari-view", client_id="safari",
                                           timestamp="2026-10-05T09:59:50Z")), "198.51.100.20", SAFARI)
        runtime.processor.run_once()
        found = _attributions(server)
    runtime.engine.dispose()
    return found


def test_probabilistic_matching_is_off_by_default(make_settings) -> None:  # type: ignore[no-untyped-def]
    """Without the per-shop switch no guess is ever made."""
    found = _journey(make_settings)
    assert found["safari-view"]["probable_person"] is None
    assert found["safari-view"]["reachable"] is False


def test_in_app_browser_handing_over_to_safari_is_guessed_when_enabled(make_settings) -> None:  # type: ignore[no-untyped-def]
    """Same phone, same household network: Safari's anonymous visit is linked (not merged) to the Instagram buyer."""
    found = _journey(make_settings, probabilistic_matching=True)
    assert found["safari-view"]["probable_person"] == found["ig-checkout"]["person"]
    assert found["safari-view"]["person"] != found["ig-checkout"]["person"]


def test_shared_networks_are_never_used_for_guessing(make_settings) -> None:  # type: ignore[no-untyped-def]
    """An office or carrier NAT prefix with many devices that day yields no guess."""
    crowded = _journey(make_settings, neighbours=8, probabilistic_matching=True)
    assert crowded["safari-view"]["probable_person"] is None


def test_erasure_removes_device_sightings_too(make_settings) -> None:  # type: ignore[no-untyped-def]
    """Network prefixes and device traits are personal data: erasing the customer deletes their sightings."""
    from sqlalchemy import select

    from recapture.adapters.storage.schema import device_sightings
    from recapture.domain.events import Identifier, IdentifierType

    settings = make_settings(trusted_proxies="127.0.0.1/32", probabilistic_matching=True)
    runtime = build_runtime(settings)
    with LiveServer(settings, runtime, worker=False) as server:
        _send(server, envelope(pixel_event(name="checkout_started", event_id="c", client_id="instagram",
                                           data={"checkout": checkout(email="mia@example.com")})),
              "198.51.100.20", INSTAGRAM)
        runtime.processor.run_once()
    with runtime.engine.connect() as conn:
        assert conn.execute(select(device_sightings)).first() is not None
    runtime.processor.erase_on_request(settings.all_shops()[0].domain,
                                       [Identifier(type=IdentifierType.EMAIL, value="mia@example.com")])
    with runtime.engine.connect() as conn:
        assert conn.execute(select(device_sightings)).first() is None
    runtime.engine.dispose()
