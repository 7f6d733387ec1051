"""Plays a simulation to a running recapture over HTTP, then reads back whom each event was attributed to.

Only the public interfaces are used: `POST /collect/shopify` (one request per pixel flush), signed
`POST /webhooks/shopify`, the manual clock `POST /admin/clock` (advanced hour by hour of simulated time), then
`GET /admin/status` until the processing queue is empty, `GET /admin/attributions` page by page and
`GET /admin/persons/{id}` for the contacts each reachable person holds (masked).

A real store's clock moves at one second per second; the driver's jumps, so two guards keep it from deciding a
session before its last event (which would split one visit in two): the clock stays below the point where a visit
not yet sent in full could fall due (`visit_caps`), and before it moves the driver waits until the worker has
processed everything a decision at the new time could depend on (`SAFE_LEAD`). After the last request it moves the
clock past every hold window, waits for the decisions and the deliveries, and reads the gap report
(`GET /admin/report`) for the simulated range.

`EmbeddedService` starts `recapture serve` as a subprocess on a fresh database with the manual clock and
generated secrets, for `recapture simulate` and `recapture demo` without `--target`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from bisect import bisect_right
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from recapture.domain.abandonment import DEFAULT_ABANDONMENT_POLICY
from recapture.domain.sessions import DEFAULT_INACTIVITY
from recapture.simulation.journeys import PIXEL, WEBHOOK, Delivery, Simulation
from recapture.simulation.truth import true_sessions

ATTRIBUTION_PAGE = 5000
RETRIES = 6
# The service clamps events more than 7 days older than its clock: the driver never lets its clock run that far.
MAX_CLOCK_LEAD = timedelta(days=6)
# A session falls due a hold window after its last activity, and its next event comes within the inactivity gap:
# while every event older than (clock - SAFE_LEAD) is processed, no session is decided before its last event.
MIN_HOLD = min(DEFAULT_ABANDONMENT_POLICY.holds.values())
SAFE_LEAD = MIN_HOLD - DEFAULT_INACTIVITY
# After the last request the clock moves on by the longest hold window, so that every session is decided.
SETTLE = max(DEFAULT_ABANDONMENT_POLICY.holds.values())
POLL_SECONDS = 0.2
CATCH_UP_POLL_SECONDS = 0.02
REPORT_PERIOD = "week"

Progress = Callable[[int, int], None]  # (done, total) of the current stage


class DriverError(RuntimeError):
    """The service refused or lost what the driver sent, or did not finish processing in time."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    url: str
    shop: str
    webhook_secret: str
    admin_token: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Attributed:
    id: int
    key: str  # "<source>:<source_event_id>"
    kind: str
    person: int | None
    reachable: bool
    probable_person: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PersonRecord:
    """What the admin API shows of a person: its contact identifiers (masked) and the events that attached them."""

    person: int
    contacts: tuple[tuple[str, str], ...]  # (type, masked value)
    attached_by: tuple[str, ...]  # source_event_ids of the events whose evidence attached a contact


@dataclass(frozen=True, slots=True, kw_only=True)
class Observed:
    """What the service said: acknowledgements, attributions and the persons behind them."""

    acknowledged: frozenset[str]
    rejected: Mapping[str, str]
    attributions: Mapping[str, Attributed]
    persons: Mapping[int, PersonRecord]
    status: Mapping[str, Any]
    seconds: float
    settled_at: datetime | None = None  # the service's clock once every hold window of the simulation had ended
    gap_report: Mapping[str, Any] | None = None  # GET /admin/report for [simulation start, settled_at)


@dataclass(slots=True)
class _Sent:
    """What the service acknowledged so far, and when (simulated time) each acknowledged event was sent."""

    acknowledged: set[str] = field(default_factory=set)
    rejected: dict[str, str] = field(default_factory=dict)
    times: list[datetime] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)  # acknowledged events sent at or before times[i]

    def record(self, delivery: Delivery) -> None:
        self.times.append(delivery.at)
        self.counts.append(len(self.acknowledged))

    def acknowledged_by(self, moment: datetime) -> int:
        index = bisect_right(self.times, moment)
        return self.counts[index - 1] if index else 0


def sign(body: bytes, secret: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ceil_hour(moment: datetime) -> datetime:
    floor = moment.replace(minute=0, second=0, microsecond=0)
    return floor if floor == moment else floor + timedelta(hours=1)


class Driver:
    def __init__(self, target: Target, client: httpx.Client | None = None, *, drain_timeout: float = 900.0) -> None:
        self.target = target
        self._own_client = client is None
        self.client = client or httpx.Client(
            base_url=target.url, timeout=httpx.Timeout(30.0, connect=5.0),
            limits=httpx.Limits(max_keepalive_connections=4, max_connections=4),
        )
        self._admin = {"Authorization": f"Bearer {target.admin_token}"}
        self._clock: datetime | None = None
        self.drain_timeout = drain_timeout
        self._sent: _Sent | None = None
        self._visit_caps: list[datetime | None] = []
        self._next = 0  # index of the delivery about to be sent (past the end: everything was sent)
        self._stored_baseline = self._processed_baseline = 0
        self._processed_seen = 0

    def close(self) -> None:
        if self._own_client:
            self.client.close()

    def __enter__(self) -> Driver:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- HTTP with bounded retries --------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Retries transport errors and 503 (nothing stored) a bounded number of times."""
        error: Exception | None = None
        for attempt in range(RETRIES):
            try:
                response = self.client.request(method, path, **kwargs)
            except httpx.TransportError as failure:
                error = failure
            else:
                if response.status_code != 503:
                    return response
                error = DriverError(f"{method} {path}: 503 {response.text[:200]}")
            time.sleep(min(0.1 * 2**attempt, 3.0))
        raise DriverError(f"{method} {path} failed {RETRIES} times: {error}")

    # -- the clock ------------------------------------------------------------------------------------------

    def start_at(self, wanted: datetime) -> datetime:
        """Set the service's clock to `wanted`, or, when it is already later, to the next midnight after it.

        A fresh service accepts any start (its manual clock follows system time until first set), so a given
        seed gives the same simulation; a service that already ran a simulation continues after it.
        """
        response = self._request("POST", "/admin/clock", json={"now": _iso(wanted)}, headers=self._admin)
        if response.status_code == 200:
            self._clock = wanted
            return wanted
        error = response.json().get("error", {}) if response.status_code == 409 else {}
        if "now" not in error:  # not a manual clock, a bad token, or no admin at all
            raise DriverError(f"POST /admin/clock: {response.status_code} {response.text[:300]} "
                              "(the target needs RECAPTURE_CLOCK=manual and the admin token)")
        current = datetime.fromisoformat(error["now"])
        start = (current + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        self._set_clock(start)
        return start

    def _set_clock(self, moment: datetime) -> None:
        response = self._request("POST", "/admin/clock", json={"now": _iso(moment)}, headers=self._admin)
        if response.status_code != 200:
            raise DriverError(f"POST /admin/clock {moment}: {response.status_code} {response.text[:300]}")
        self._clock = moment

    def advance(self, moment: datetime) -> None:
        """Keep the service's clock at or after the time of what is sent next (to the next whole hour)."""
        if self._clock is not None and moment <= self._clock:
            if self._clock - moment > MAX_CLOCK_LEAD:
                raise DriverError(f"the service's clock ({self._clock}) is far ahead of the simulation ({moment})")
            return
        target = _ceil_hour(moment)
        cap = self._visit_caps[self._next] if self._next < len(self._visit_caps) else None
        if cap is not None:
            target = max(moment, min(target, cap))
        self._catch_up(target)
        self._set_clock(target)

    def _catch_up(self, clock: datetime) -> None:
        """Before the clock moves to `clock`: wait until every event sent before `clock - SAFE_LEAD` is processed."""
        if self._sent is None:
            return
        required = self._sent.acknowledged_by(clock - SAFE_LEAD)
        if self._processed_seen >= required:
            return
        deadline = time.monotonic() + self.drain_timeout
        while True:
            self._processed_seen = int(self.status().get("events", {}).get("processed", 0)) - self._processed_baseline
            if self._processed_seen >= required:
                return
            if time.monotonic() > deadline:
                raise DriverError(f"the worker did not catch up within {self.drain_timeout:.0f}s")
            time.sleep(CATCH_UP_POLL_SECONDS)

    # -- sending --------------------------------------------------------------------------------------------

    def send(self, delivery: Delivery, acknowledged: set[str], rejected: dict[str, str]) -> None:
        self.advance(delivery.at)
        if delivery.channel == "pixel":
            self._send_pixel(delivery, acknowledged, rejected)
        else:
            self._send_webhook(delivery, acknowledged, rejected)

    def _send_pixel(self, delivery: Delivery, acknowledged: set[str], rejected: dict[str, str]) -> None:
        headers = {"content-type": "text/plain;charset=UTF-8"}
        if delivery.user_agent:
            headers["user-agent"] = delivery.user_agent
        if delivery.ip:
            headers["x-forwarded-for"] = delivery.ip
        response = self._request("POST", "/collect/shopify", content=delivery.body, headers=headers)
        if response.status_code not in (200, 207, 422):
            for key in delivery.events:
                rejected[key] = f"http_{response.status_code}"
            return
        payload = response.json()
        results = payload.get("results")
        if not isinstance(results, list):  # a single envelope refused whole: {"error": {...}}
            for key in delivery.events:
                rejected[key] = str(payload.get("error", {}).get("code", "rejected"))
            return
        for result in results:
            key = delivery.events[int(result["index"])]
            if result["status"] in ("accepted", "duplicate"):
                acknowledged.add(key)
            else:
                rejected[key] = str((result.get("error") or {}).get("code", result["status"]))

    def _send_webhook(self, delivery: Delivery, acknowledged: set[str], rejected: dict[str, str]) -> None:
        assert delivery.topic is not None
        assert delivery.webhook_id is not None
        assert delivery.triggered_at is not None
        headers = {
            "content-type": "application/json",
            "X-Shopify-Topic": delivery.topic,
            "X-Shopify-Shop-Domain": self.target.shop,
            "X-Shopify-Webhook-Id": delivery.webhook_id,
            "X-Shopify-Event-Id": f"ev-{delivery.webhook_id}",
            "X-Shopify-Triggered-At": _iso(delivery.triggered_at),
            "X-Shopify-API-Version": "2026-07",
            "X-Shopify-Hmac-Sha256": sign(delivery.body, self.target.webhook_secret),
            "user-agent": "Shopify-Captain-Hook",
        }
        response = self._request("POST", "/webhooks/shopify", content=delivery.body, headers=headers)
        key = delivery.events[0]
        if response.status_code == 200:
            acknowledged.add(key)
        else:
            try:
                code = str(response.json()["error"]["code"])
            except (ValueError, KeyError, TypeError):
                code = f"http_{response.status_code}"
            rejected[key] = code

    # -- reading back ---------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        response = self._request("GET", "/admin/status", headers=self._admin)
        if response.status_code != 200:
            raise DriverError(f"GET /admin/status: {response.status_code} {response.text[:300]}")
        body: dict[str, Any] = response.json()
        return body

    def wait_drained(self, expected_stored: int | None = None, on_progress: Progress | None = None) -> dict[str, Any]:
        """Poll until every queue is empty (and, when given, at least that many events are stored): bounded."""

        def drained(status: Mapping[str, Any]) -> tuple[bool, int, int]:
            events = status.get("events", {})
            stored, processed = int(events.get("stored", 0)), int(events.get("processed", 0))
            # Attributions need the events stored and resolved; later queues are waited for by settle().
            done = _depth(status, "ingest") == 0 and _depth(status, "processing") == 0 and (
                expected_stored is None or stored >= expected_stored)
            # Progress counts this run's events only (a service may hold earlier runs).
            total = max(stored, expected_stored or 0) - self._stored_baseline
            return done, processed - self._processed_baseline, total

        return self._poll(drained, "processing", on_progress)

    def wait_decided(self, on_progress: Progress | None = None) -> dict[str, Any]:
        """Poll until no session is due for an abandonment decision (the clock set past their hold windows)."""
        first = _depth(self.status(), "abandonment")

        def decided(status: Mapping[str, Any]) -> tuple[bool, int, int]:
            due = _depth(status, "abandonment")
            return due == 0 and _depth(status, "processing") == 0, max(first - due, 0), first

        return self._poll(decided, "abandonment decisions", on_progress)

    def wait_delivered(self, on_progress: Progress | None = None) -> dict[str, Any]:
        """Poll until every due delivery has been sent (retries scheduled for later stay scheduled)."""

        def delivered(status: Mapping[str, Any]) -> tuple[bool, int, int]:
            tallies = [t for t in status.get("destinations", {}).values() if isinstance(t, Mapping)]
            done = sum(int(t.get("delivered", 0)) + int(t.get("dead", 0)) for t in tallies)
            return _depth(status, "delivery") == 0, done, done + _depth(status, "delivery")

        return self._poll(delivered, "deliveries", on_progress)

    def _poll(self, check: Callable[[Mapping[str, Any]], tuple[bool, int, int]], what: str,
              on_progress: Progress | None) -> dict[str, Any]:
        deadline = time.monotonic() + self.drain_timeout
        while True:
            status = self.status()
            finished, done, total = check(status)
            if on_progress is not None:
                on_progress(done, total)
            if finished:
                return status
            if time.monotonic() > deadline:
                raise DriverError(f"the service did not finish its {what} within {self.drain_timeout:.0f}s: "
                                  f"{status.get('queues')}")
            time.sleep(POLL_SECONDS)

    def gap_report(self, since: datetime, until: datetime) -> dict[str, Any] | None:
        """recapture's gap report for the range (None when the service has no /admin/report yet)."""
        response = self._request("GET", "/admin/report", headers=self._admin, params={
            "shop": self.target.shop, "since": _iso(since), "until": _iso(until), "period": REPORT_PERIOD})
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise DriverError(f"GET /admin/report: {response.status_code} {response.text[:300]}")
        body: dict[str, Any] = response.json()
        return body

    def attributions(self, wanted: set[str]) -> dict[str, Attributed]:
        """Every processed event of the shop, page by page; keeps the ones this simulation sent."""
        found: dict[str, Attributed] = {}
        after = 0
        for _ in range(1_000_000):  # bounded: each page moves `after` forward or ends the loop
            response = self._request(
                "GET", "/admin/attributions", params={"after": after, "limit": ATTRIBUTION_PAGE}, headers=self._admin)
            if response.status_code != 200:
                raise DriverError(f"GET /admin/attributions: {response.status_code} {response.text[:300]}")
            page = response.json()
            rows = page.get("attributions", [])
            for row in rows:
                key = f"{row['source']}:{row['source_event_id']}"
                if key in wanted:
                    probable = row.get("probable_person")
                    found[key] = Attributed(
                        id=int(row["id"]), key=key, kind=str(row["kind"]),
                        person=None if row.get("person") is None else int(row["person"]),
                        reachable=bool(row.get("reachable")),
                        probable_person=probable if isinstance(probable, int) else None,
                    )
            following = int(page.get("next", after))
            if not rows or following <= after:
                break
            after = following
        return found

    def person(self, person: int) -> PersonRecord | None:
        response = self._request("GET", f"/admin/persons/{person}", headers=self._admin)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise DriverError(f"GET /admin/persons/{person}: {response.status_code} {response.text[:300]}")
        report = response.json()
        contacts = tuple(
            (str(item["type"]), str(item["value"])) for item in report.get("identifiers", [])
            if item.get("type") in ("email", "phone", "klaviyo_exchange_id")
        )
        attached = tuple(
            str(link["event"]) for link in report.get("evidence", [])
            if link.get("action") == "attach" and link.get("event")
            and str(link.get("identifier") or "").split(":", 1)[0] in ("email", "phone", "klaviyo_exchange_id")
        )
        return PersonRecord(person=int(report.get("person", person)), contacts=contacts, attached_by=attached)

    # -- the whole run --------------------------------------------------------------------------------------

    def run(
        self, simulation: Simulation, on_stage: Callable[[str], None] | None = None,
        on_progress: Progress | None = None, *, read_back: bool = True,
    ) -> Observed:
        """Send everything, let every hold window end, wait for decisions and deliveries, read back the results.

        `read_back=False` skips the attributions and persons (the accuracy scoring needs them; the demo does not).
        """
        began = time.monotonic()

        def stage(name: str) -> None:
            if on_stage is not None:
                on_stage(name)

        baseline = self.status().get("events", {})
        self._stored_baseline = int(baseline.get("stored", 0))
        self._processed_baseline = int(baseline.get("processed", 0))
        self._processed_seen = 0
        sent = self._sent = _Sent()
        self._visit_caps = visit_caps(simulation)
        events_sent = 0
        for index, delivery in enumerate(simulation.deliveries):
            self._next = index
            self.send(delivery, sent.acknowledged, sent.rejected)
            sent.record(delivery)
            events_sent += len(delivery.events)
            if on_progress is not None:
                on_progress(events_sent, len(simulation.events))
        self._next = len(simulation.deliveries)  # every visit was sent in full: the clock may move freely
        self.advance(max(simulation.end, simulation.deliveries[-1].at if simulation.deliveries else simulation.end))
        stage("waiting for processing")
        status = self.wait_drained(self._stored_baseline + len(sent.acknowledged), on_progress)
        settled_at = self.settle(simulation, on_stage=stage, on_progress=on_progress)
        attributions: dict[str, Attributed] = {}
        persons: dict[int, PersonRecord] = {}
        if read_back:
            stage("reading attributions")
            attributions = self.attributions(set(simulation.events))
            persons = self.persons_of(attributions)
        return Observed(
            acknowledged=frozenset(sent.acknowledged), rejected=sent.rejected, attributions=attributions,
            persons=persons, status=status, seconds=time.monotonic() - began, settled_at=settled_at,
            gap_report=self.gap_report(simulation.start, settled_at),
        )

    def settle(self, simulation: Simulation, on_stage: Callable[[str], None] | None = None,
               on_progress: Progress | None = None) -> datetime:
        """Move the clock past every hold window of the simulation; wait for the decisions and the deliveries."""
        last = max([simulation.end, *(d.at for d in simulation.deliveries[-1:])])
        self.advance(last + SETTLE)
        assert self._clock is not None
        if on_stage is not None:
            on_stage("waiting for abandonment decisions")
        self.wait_decided(on_progress)
        if on_stage is not None:
            on_stage("waiting for deliveries")
        self.wait_delivered(on_progress)
        return self._clock

    def persons_of(self, attributions: Mapping[str, Attributed]) -> dict[int, PersonRecord]:
        """The contacts and evidence of every reachable (or probably matched) person among the attributions."""
        wanted = {a.person for a in attributions.values() if a.person is not None and a.reachable}
        wanted |= {a.probable_person for a in attributions.values() if a.probable_person is not None}
        persons: dict[int, PersonRecord] = {}
        for person in sorted(wanted):
            record = self.person(person)
            if record is not None:
                persons[person] = record
        return persons


def visit_caps(simulation: Simulation) -> list[datetime | None]:
    """Per delivery index: the latest clock that decides no visit before all of it has been sent (None: no limit).

    The clock moves to the next whole hour of what is sent; a visit that straddles the hour would see its first
    pages decided as an abandonment before its last ones arrive. So when a request is about to be sent, the clock
    stays before the first event plus the shortest hold window of every visit not yet sent in full — the one under
    way, and the next ones, whose first pages may be older than the request (a pixel flushes a page after it).
    """
    index_of = {key: index for index, delivery in enumerate(simulation.deliveries) for key in delivery.events}
    ending: list[datetime | None] = [None] * len(simulation.deliveries)
    for session in true_sessions(simulation):
        last = max(index_of[event.key] for event in session.events if event.key in index_of)
        cap = session.first + MIN_HOLD - timedelta(microseconds=1)
        earlier = ending[last]
        ending[last] = cap if earlier is None else min(cap, earlier)
    caps: list[datetime | None] = [None] * len(ending)
    following: datetime | None = None
    for index in range(len(ending) - 1, -1, -1):  # the earliest cap of the visits ending at or after each index
        here = ending[index]
        if here is not None and (following is None or here < following):
            following = here
        caps[index] = following
    return caps


def _depth(status: Mapping[str, Any], queue: str) -> int:
    return int(status.get("queues", {}).get(queue, {}).get("depth", 0))


# -- recapture serve as a subprocess ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def recapture_executable() -> str:
    """The `recapture` script installed beside this Python (the virtual environment's bin/)."""
    return str(Path(sys.executable).with_name("recapture"))


class EmbeddedService:
    """`recapture serve` on a fresh database (a temporary SQLite file unless given), manual clock, new secrets.

    `extra_env` adds settings (the demo points Klaviyo delivery at the fake); `port` fixes the port (else a free one).
    """

    def __init__(self, *, shop: str, database_url: str | None = None, startup_timeout: float = 60.0,
                 extra_env: Mapping[str, str] | None = None, port: int | None = None) -> None:
        self.shop = shop
        self._port = port
        self._database_url = database_url
        self._startup_timeout = startup_timeout
        self._extra_env = dict(extra_env or {})
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self.target: Target | None = None
        self.log_path: Path | None = None

    def __enter__(self) -> Target:
        self._tmp = tempfile.TemporaryDirectory(prefix="recapture-sim-")
        folder = Path(self._tmp.name)
        port = self._port or free_port()
        target = Target(
            url=f"http://127.0.0.1:{port}", shop=self.shop, webhook_secret=secrets.token_urlsafe(24),
            admin_token=secrets.token_urlsafe(24),
        )
        # Nothing of the caller's RECAPTURE_* settings leaks in (a Klaviyo key, another database, a config file).
        env = {k: v for k, v in os.environ.items() if not k.startswith("RECAPTURE_")} | {
            "RECAPTURE_DATABASE_URL": self._database_url or f"sqlite:///{folder / 'simulation.db'}",
            "RECAPTURE_SHOP_DOMAIN": self.shop,
            "RECAPTURE_SHOPIFY_WEBHOOK_SECRET": target.webhook_secret,
            "RECAPTURE_ADMIN_TOKEN": target.admin_token,
            "RECAPTURE_SECRET_KEY": secrets.token_hex(16),
            "RECAPTURE_CLOCK": "manual",
            # The driver speaks for many shoppers: it names each request's client in X-Forwarded-For.
            "RECAPTURE_TRUSTED_PROXIES": "127.0.0.1/32",
            "RECAPTURE_LOG_LEVEL": "warning",
        } | self._extra_env
        self.log_path = folder / "serve.log"
        self._log = self.log_path.open("wb")
        self._process = subprocess.Popen(  # noqa: S603 - our own console script, fixed arguments
            [recapture_executable(), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        try:
            self._wait_ready(target.url)
        except BaseException:
            self._stop()
            raise
        self.target = target
        return target

    def _wait_ready(self, url: str) -> None:
        deadline = time.monotonic() + self._startup_timeout
        assert self._process is not None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise DriverError(f"recapture serve exited with {self._process.returncode}: {self.log_tail()}")
            try:
                if httpx.get(url + "/readyz", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise DriverError(f"recapture serve was not ready within {self._startup_timeout:.0f}s: {self.log_tail()}")

    def log_tail(self, size: int = 2000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_bytes()[-size:].decode(errors="replace")

    def _stop(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if self._log is not None:
            self._log.close()
        if self._tmp is not None:
            self._tmp.cleanup()
        self._process = self._log = self._tmp = None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop()


__all__ = [
    "PIXEL", "WEBHOOK", "Attributed", "Driver", "DriverError", "EmbeddedService", "Observed", "PersonRecord", "Target",
    "sign",
]
