"""The Klaviyo client against the fake Klaviyo on a real socket, both held to Klaviyo's official OpenAPI spec."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from recapture.adapters.destinations.fake_klaviyo import (
    PACKAGED_SPEC,
    FakeKlaviyo,
    FakeKlaviyoServer,
    Fault,
    KlaviyoSpec,
    build_fake_klaviyo,
    free_port,
)
from recapture.adapters.destinations.klaviyo import (
    BULK_CREATE_EVENTS,
    CREATE_EVENT,
    OPERATIONS,
    REQUIRED_SCOPES,
    SCOPE_PROBE_BODY,
    SCOPE_PROBES,
    KlaviyoDestination,
    bulk_payload,
    event_payload,
    missing_scopes_message,
    profile_import_payload,
    subscription_payload,
)
from recapture.application.delivery_errors import (
    DuplicateUniqueIdError,
    TerminalDeliveryError,
    TransientDeliveryError,
)
from recapture.domain.delivery import DeliveryEvent, DeliveryProfile
from recapture.domain.rate_limit import parse_rate
from tests.support import SHARED

SPEC_PATH = SHARED / "contracts" / "klaviyo" / "openapi-stable.json"
KEY = "pk_test_4f1c2b9e8d7a6f5e4d3c2b1a0f9e8d7c6b"
HEADERS = {"Authorization": f"Klaviyo-API-Key {KEY}", "revision": "2026-07-15",
           "accept": "application/vnd.api+json", "content-type": "application/vnd.api+json"}
NOW = datetime(2026, 10, 5, 10, 0, tzinfo=UTC)


class ManualClock:
    """One clock for the client and the fake; the client's sleep moves it, so pacing is deterministic."""

    def __init__(self, start: float) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@dataclass
class Running:
    fake: FakeKlaviyo
    url: str


# Every test runs on the official spec and on the subset the package ships (installs without shared/ use it).
SPECS = {"official": SPEC_PATH, "packaged-subset": PACKAGED_SPEC}


@pytest.fixture(scope="module", params=sorted(SPECS))
def spec_path(request: pytest.FixtureRequest) -> Path:
    path = SPECS[request.param]
    if not path.is_file():
        pytest.fail(f"Klaviyo's OpenAPI spec is missing at {path}", pytrace=False)
    return path


@pytest.fixture(scope="module")
def spec(spec_path: Path) -> KlaviyoSpec:
    return KlaviyoSpec.load(spec_path)


@pytest.fixture
def serve(spec: KlaviyoSpec, spec_path: Path) -> Iterator[Any]:
    servers: list[FakeKlaviyoServer] = []

    def start(**options: Any) -> Running:
        options.setdefault("keys", {KEY: spec.all_scopes})
        fake = build_fake_klaviyo(spec_path, **options)
        server = FakeKlaviyoServer(fake).__enter__()
        servers.append(server)
        return Running(fake, server.url)

    yield start
    for server in servers:
        server.__exit__(None, None, None)


@pytest.fixture
def klaviyo(serve: Any) -> Running:
    running: Running = serve()
    return running


def profile(**overrides: Any) -> DeliveryProfile:
    values: dict[str, Any] = {"email": "lee@example.com", "phone_number": "+14155550123",
                              "exchange_id": "01HKX-exchange-id", "external_id": "shopify:7701"}
    values.update(overrides)
    return DeliveryProfile(**values)


def event(unique_id: str = "abandon-1", **overrides: Any) -> DeliveryEvent:
    values: dict[str, Any] = {
        "shop": "demo-store.myshopify.com", "metric": "Checkout Abandoned - Recaptured", "unique_id": unique_id,
        "time": NOW, "profile": profile(),
        "properties": {"CheckoutURL": "https://demo-store.example/checkouts/c1", "ItemNames": ["Tea", "Cup"],
                       "Items": [{"Title": "Tea", "Price": Decimal("12.50"), "Quantity": 2}], "$extra": {"n": 1}},
        "value": Decimal("25.00"), "value_currency": "EUR",
    }
    values.update(overrides)
    return DeliveryEvent(**values)


def destination(url: str, **options: Any) -> KlaviyoDestination:
    return KlaviyoDestination(url, options.pop("key", KEY), **options)


def test_every_payload_the_client_builds_is_valid_per_the_official_spec(spec: KlaviyoSpec, klaviyo: Running) -> None:
    """Events, bulk events, profile imports and subscriptions validate against the spec, and the fake takes them."""
    full = profile(first_name="Lee", last_name="Park", city="Lyon", region="ARA", properties={"Tier": "gold"})
    only_kx = profile(email=None, phone_number=None, external_id=None)
    events = [event("a-1"), event("a-2", profile=only_kx, value=None, value_currency=None, properties={}),
              event("a-3", time=NOW.replace(tzinfo=None, microsecond=123))]
    built = [("create_event", event_payload(item)) for item in events] + [
        ("bulk_create_events", bulk_payload([event(f"b-{n}", metric=f"Metric {n % 2}") for n in range(4)]
                                            + [event("b-kx", profile=only_kx)])),
        ("create_or_update_profile", profile_import_payload(full)),
        ("create_or_update_profile", profile_import_payload(only_kx)),
        ("bulk_subscribe_profiles", subscription_payload([full, profile(email="ann@example.com")], "Y6nRLr")),
    ]
    for operation, payload in built:
        assert spec.validate(operation, payload) == [], (operation, payload)
    assert event_payload(events[0])["data"]["attributes"]["profile"]["data"]["attributes"]["_kx"] == "01HKX-exchange-id"

    with destination(klaviyo.url) as client:
        for item in events:
            client.send_event(item)
        client.send_events([event(f"b-{n}", metric=f"Metric {n % 2}") for n in range(4)] + [event("b-kx", profile=only_kx)])
        profile_id = client.import_profile(full)
        client.subscribe([full, profile(email="ann@example.com")], "Y6nRLr")
    assert klaviyo.fake.count(status=400) == 0
    assert klaviyo.fake.count() == klaviyo.fake.count(status=202) + klaviyo.fake.count(status=200)
    assert {e.unique_id for e in klaviyo.fake.accepted_events} == {"a-1", "a-2", "a-3", "b-0", "b-1", "b-2", "b-3", "b-kx"}
    stored = klaviyo.fake.profiles[str(profile_id)]
    assert stored.attributes["location"] == {"city": "Lyon", "region": "ARA"}
    assert stored.identifiers["_kx"] == "01HKX-exchange-id"
    assert [(s.email, s.list_id) for s in klaviyo.fake.subscriptions] == [("lee@example.com", "Y6nRLr"),
                                                                          ("ann@example.com", "Y6nRLr")]
    assert klaviyo.fake.subscriptions[0].channels == {"email": {"marketing": {"consent": "SUBSCRIBED"}}}


def test_a_malformed_request_gets_klaviyos_400_and_the_same_verdict_from_the_validator(
    spec: KlaviyoSpec, klaviyo: Running
) -> None:
    """A misnamed attribute and a missing one are refused with Klaviyo's error shape and JSON pointers."""
    body = event_payload(event())
    attributes = body["data"]["attributes"]
    del attributes["properties"]
    profile_attributes = attributes["profile"]["data"]["attributes"]
    profile_attributes["exchange_id"] = profile_attributes.pop("_kx")
    response = httpx.post(klaviyo.url + "/api/events", json=body, headers=HEADERS)
    assert response.status_code == 400
    errors = response.json()["errors"]
    for error in errors:
        assert {"id", "status", "code", "title", "detail", "source"} <= set(error)
        assert error["status"] == 400
        assert error["code"] == "invalid"
    pointers = {error["source"]["pointer"]: error["detail"] for error in errors}
    assert pointers == {v.pointer: v.detail for v in spec.validate("create_event", body)}
    assert "/data/attributes/profile/data/attributes/exchange_id" in pointers
    assert "'exchange_id' is not a valid field" in pointers["/data/attributes/profile/data/attributes/exchange_id"]
    assert "/data/attributes/properties" in pointers
    assert klaviyo.fake.accepted_events == []


def test_429_with_retry_after_is_transient_and_carries_the_wait(klaviyo: Running) -> None:
    """A throttled send raises TransientDeliveryError with Klaviyo's Retry-After in seconds."""
    klaviyo.fake.inject(Fault(kind="throttle", retry_after=7))
    with destination(klaviyo.url) as client, pytest.raises(TransientDeliveryError) as caught:
        client.send_event(event())
    assert caught.value.status == 429
    assert caught.value.retry_after == 7.0
    assert "throttled" in caught.value.detail


def test_server_errors_and_cloudflare_challenges_are_transient(klaviyo: Running) -> None:
    """A 500 and an HTML 403 challenge are retryable; the retry is then recorded once."""
    klaviyo.fake.inject(Fault(kind="error", status=500), Fault(kind="challenge", retry_after=3))
    with destination(klaviyo.url) as client:
        with pytest.raises(TransientDeliveryError) as server_error:
            client.send_event(event())
        with pytest.raises(TransientDeliveryError) as challenge:
            client.send_event(event())
        client.send_event(event())
    assert server_error.value.status == 500
    assert (challenge.value.status, challenge.value.retry_after) == (403, 3.0)
    assert "Cloudflare" in challenge.value.detail
    assert len(klaviyo.fake.accepted_events) == 1


def test_json_401_and_400_are_terminal_with_klaviyos_detail(klaviyo: Running) -> None:
    """A wrong key and a payload Klaviyo refuses are dead letters, explained by Klaviyo's own detail."""
    wrong_key = "pk_test_wrong0000000000000000000000000"
    with destination(klaviyo.url, key=wrong_key) as client, pytest.raises(TerminalDeliveryError) as unauthorized:
        client.send_event(event())
    assert unauthorized.value.status == 401
    assert "Incorrect authentication credentials" in unauthorized.value.detail
    assert wrong_key not in str(unauthorized.value)

    with destination(klaviyo.url) as client, pytest.raises(TerminalDeliveryError) as invalid:
        client.send_event(event(profile=profile(phone_number="0612345678")))
    assert invalid.value.status == 400
    assert "E.164" in invalid.value.detail
    assert "/phone_number" in invalid.value.detail


def test_timeouts_and_refused_connections_are_transient_and_a_retry_is_recorded_once(klaviyo: Running) -> None:
    """A send that timed out may still land at Klaviyo: retrying it with the same unique_id records it once."""
    klaviyo.fake.inject(Fault(kind="slow", delay=1.5, operation="create_event"))
    with destination(klaviyo.url, timeout=0.5) as impatient, pytest.raises(TransientDeliveryError) as timed_out:
        impatient.send_event(event())
    assert timed_out.value.status is None
    assert "timed out" in timed_out.value.detail
    with destination(klaviyo.url) as client:
        client.send_event(event())
    deadline = time.monotonic() + 10
    while klaviyo.fake.count(operation=CREATE_EVENT) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert klaviyo.fake.count(status=202, operation=CREATE_EVENT) == 2
    assert len(klaviyo.fake.accepted_events) == 1

    with destination(f"http://127.0.0.1:{free_port()}") as nowhere, pytest.raises(TransientDeliveryError) as refused:
        nowhere.send_event(event())
    assert refused.value.status is None
    assert "could not reach Klaviyo" in refused.value.detail


def test_sending_the_same_event_twice_records_it_once(klaviyo: Running) -> None:
    """Same profile, metric and unique_id: both sends get 202, Klaviyo keeps the first."""
    with destination(klaviyo.url) as client:
        client.send_event(event("same"))
        client.send_event(event("same", properties={"changed": True}))
        client.send_event(event("same", metric="Another Metric"))
    kept = klaviyo.fake.accepted_events
    assert [(e.metric, e.unique_id) for e in kept] == [("Checkout Abandoned - Recaptured", "same"),
                                                      ("Another Metric", "same")]
    assert kept[0].properties["CheckoutURL"].startswith("https://")
    assert klaviyo.fake.stats()["duplicates_dropped"] == 1


def test_the_fake_keeps_one_event_per_profile_metric_and_second_without_unique_id(klaviyo: Running) -> None:
    """Without unique_id Klaviyo silently keeps one event per profile+metric per second."""
    for when in ("2026-10-05T10:00:00+00:00", "2026-10-05T10:00:00.600000+00:00", "2026-10-05T10:00:01+00:00"):
        body = event_payload(event())
        del body["data"]["attributes"]["unique_id"]
        body["data"]["attributes"]["time"] = when
        assert httpx.post(klaviyo.url + "/api/events", json=body, headers=HEADERS).status_code == 202
    assert [e.time for e in klaviyo.fake.accepted_events] == ["2026-10-05T10:00:00+00:00", "2026-10-05T10:00:01+00:00"]


def test_a_bulk_with_a_repeated_unique_id_is_refused_before_sending_and_by_the_fake(klaviyo: Running) -> None:
    """The client never sends a bulk that repeats a unique_id; Klaviyo (the fake) would reject it whole."""
    with destination(klaviyo.url) as client, pytest.raises(DuplicateUniqueIdError) as caught:
        client.send_events([event("x-1"), event("x-2"), event("x-1", properties={"other": 1})])
    assert caught.value.unique_ids == ("x-1",)
    assert isinstance(caught.value, TerminalDeliveryError)
    assert klaviyo.fake.count() == 0

    body = bulk_payload([event("x-1"), event("x-2")])
    events = body["data"]["attributes"]["events-bulk-create"]["data"][0]["attributes"]["events"]["data"]
    events[1]["attributes"]["unique_id"] = "x-1"
    response = httpx.post(klaviyo.url + "/api/event-bulk-create-jobs", json=body, headers=HEADERS)
    assert response.status_code == 400
    assert "repeated" in response.json()["errors"][0]["detail"]
    assert klaviyo.fake.accepted_events == []


def test_the_client_paces_a_burst_within_the_documented_limit(serve: Any) -> None:
    """25 bulk requests at once: unpaced, the fake throttles (10/s); paced, it never answers 429."""
    unpaced = serve(clock=ManualClock(NOW.timestamp()))  # a clock that stands still: no refill during the burst
    with destination(unpaced.url, pace=False) as client:
        refusals: list[TransientDeliveryError] = []
        for n in range(25):
            try:
                client.send_events([event(f"u-{n}")])
            except TransientDeliveryError as error:
                refusals.append(error)
    assert len(refusals) == 15
    assert {(error.status, error.retry_after) for error in refusals} == {(429, 1.0)}
    assert unpaced.fake.count(status=429) == len(refusals)

    clock = ManualClock(NOW.timestamp())
    paced = serve(clock=clock)
    with destination(paced.url, clock=clock, sleep=clock.sleep) as client:
        for n in range(25):
            client.send_events([event(f"p-{n}")])
    assert paced.fake.count(status=429) == 0
    assert len(paced.fake.accepted_events) == 25
    assert clock.slept
    assert max(clock.slept) < 1.0


def test_a_wait_longer_than_max_sleep_becomes_a_retry_after(serve: Any) -> None:
    """Once the steady bucket (sized to stay inside Klaviyo's fixed 1-minute window) runs dry, a wait longer than
    max_sleep is raised as retry_after instead of slept."""
    clock = ManualClock(NOW.timestamp())
    running = serve(clock=clock)
    sent = 0
    client = destination(running.url, clock=clock, sleep=clock.sleep, max_sleep=0.2)
    paced: TransientDeliveryError | None = None
    with client:
        for n in range(400):
            try:
                client.send_events([event(f"s-{n}")])
            except TransientDeliveryError as error:
                paced = error
                break
            sent += 1
    assert paced is not None
    assert sent >= 2
    assert paced.status is None
    assert paced.retry_after is not None
    assert paced.retry_after > 0.2
    assert max(clock.slept) <= 0.2
    assert running.fake.count(status=429) == 0
    assert running.fake.count(operation=BULK_CREATE_EVENTS) == sent


def test_the_client_limits_never_exceed_the_limits_in_the_spec(spec: KlaviyoSpec) -> None:
    """Each operation's pacing is at most what `x-klaviyo-ratelimit` documents, window by window."""
    for operation_id, (method, path, rates) in OPERATIONS.items():
        operation, _ = spec.match(method, path)
        assert operation is not None
        assert operation.operation_id == operation_id
        documented = {parse_rate(rate)[1]: parse_rate(rate)[0] for rate in operation.rate_limits}
        for rate in rates:
            count, window = parse_rate(rate)
            assert count <= documented[window], (operation_id, rate)


def test_check_scopes_reports_a_missing_scope_without_creating_data(spec: KlaviyoSpec, serve: Any) -> None:
    """A key without lists:write is reported with a clear message; the probes create nothing."""
    limited = serve(keys={KEY: spec.all_scopes - {"lists:write", "lists:read"}})
    with destination(limited.url) as client, structlog.testing.capture_logs() as logs:
        missing = client.check_scopes()
    assert missing == ["lists:write"]
    message = missing_scopes_message(missing)
    assert "lists:write" in message
    assert "Lists" in message
    assert limited.fake.accepted_events == []
    assert limited.fake.profiles == {}
    assert limited.fake.subscriptions == []
    assert limited.fake.count(status=403) == 1
    assert limited.fake.count(status=400) == len(REQUIRED_SCOPES) - 1
    assert KEY not in repr(logs)

    full = serve()
    with destination(full.url) as client:
        assert client.check_scopes() == []
    for method, path in SCOPE_PROBES.values():
        operation, _ = spec.match(method, path)
        assert operation is not None
        assert spec.validate(operation.operation_id, SCOPE_PROBE_BODY) != []


def test_the_private_key_never_appears_in_errors_or_repr(klaviyo: Running) -> None:
    """Even when an answer echoes the key, the error detail, message and repr show it redacted."""
    def echo(request: httpx.Request) -> httpx.Response:
        detail = f"bad header {request.headers['authorization']}"
        return httpx.Response(400, json={"errors": [{"id": "1", "code": "invalid", "title": "t", "detail": detail}]})

    echoing = KlaviyoDestination("https://a.klaviyo.example", KEY, client=httpx.Client(transport=httpx.MockTransport(echo)))
    with pytest.raises(TerminalDeliveryError) as caught:
        echoing.send_event(event())
    assert KEY not in str(caught.value)
    assert KEY not in caught.value.detail
    assert "<redacted>" in caught.value.detail
    assert KEY not in repr(echoing)

    klaviyo.fake.inject(Fault(kind="error", status=503))
    with destination(klaviyo.url) as client, pytest.raises(TransientDeliveryError) as transient:
        client.send_event(event())
    assert KEY not in str(transient.value)
    assert KEY not in repr(transient.value)


def test_the_fake_requires_klaviyos_headers(klaviyo: Running) -> None:
    """No key → 401, no revision → 400, a non-JSON:API body → 415, an unknown route → 404."""
    body = event_payload(event())
    no_key = {k: v for k, v in HEADERS.items() if k != "Authorization"}
    no_revision = {k: v for k, v in HEADERS.items() if k != "revision"}
    assert httpx.post(klaviyo.url + "/api/events", json=body, headers=no_key).status_code == 401
    answer = httpx.post(klaviyo.url + "/api/events", json=body, headers=no_revision)
    assert answer.status_code == 400
    assert answer.json()["errors"][0]["source"] == {"parameter": "revision"}
    text = {**HEADERS, "content-type": "text/plain"}
    assert httpx.post(klaviyo.url + "/api/events", content=b"{}", headers=text).status_code == 415
    assert httpx.post(klaviyo.url + "/api/nothing-here", json=body, headers=HEADERS).status_code == 404
    assert klaviyo.fake.accepted_events == []


def test_out_of_process_tests_can_queue_faults_and_read_what_the_fake_accepted(klaviyo: Running) -> None:
    """`/_fake/faults` queues a fault over HTTP; `/_fake/events` and `/_fake/stats` report what happened."""
    assert httpx.post(klaviyo.url + "/_fake/faults", json=[{"kind": "error", "status": 502}]).status_code == 200
    with destination(klaviyo.url) as client:
        with pytest.raises(TransientDeliveryError):
            client.send_event(event("over-http"))
        client.send_event(event("over-http"))
    events = httpx.get(klaviyo.url + "/_fake/events").json()
    assert [(e["unique_id"], e["identifiers"]["_kx"]) for e in events] == [("over-http", "01HKX-exchange-id")]
    stats = httpx.get(klaviyo.url + "/_fake/stats").json()
    assert stats["operations"]["create_event"] == {"202": 1, "502": 1}
    assert httpx.post(klaviyo.url + "/_fake/reset").status_code == 204
    assert httpx.get(klaviyo.url + "/_fake/events").json() == []


def test_event_times_outside_klaviyos_window_are_refused(klaviyo: Running) -> None:
    """Klaviyo takes event times after 1990 and up to a year ahead; others are a terminal 400."""
    with destination(klaviyo.url) as client, pytest.raises(TerminalDeliveryError) as caught:
        client.send_event(event(time=datetime.now(UTC) + timedelta(days=400)))
    assert caught.value.status == 400
    assert "future" in caught.value.detail
