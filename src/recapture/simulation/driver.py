"""Plays a simulation to a running recapture over HTTP, then reads back whom each event was attributed to.

Only the public interfaces are used: `POST /collect/shopify` (one request per pixel flush), signed
`POST /webhooks/shopify`, the manual clock `POST /admin/clock` (advanced hour by hour of simulated time), then
`GET /admin/status` until the processing queue is empty, `GET /admin/attributions` page by page and
`GET /admin/persons/{id}` for the contacts each reachable person holds (masked).

`EmbeddedService` starts `recapture serve` as a subprocess on a fresh database with the manual clock and
generated secrets, for `recapture simulate` without `--target`.
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from recapture.simulation.journeys import PIXEL, WEBHOOK, Delivery, Simulation

ATTRIBUTION_PAGE = 5000
RETRIES = 6
# The service clamps events more than 7 days older than its clock: the driver never lets its clock run that far.
MAX_CLOCK_LEAD = timedelta(days=6)


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
        self._set_clock(_ceil_hour(moment))

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

    def wait_drained(self, expected_stored: int | None = None) -> dict[str, Any]:
        """Poll until every queue is empty (and, when given, at least that many events are stored): bounded."""
        deadline = time.monotonic() + self.drain_timeout
        while True:
            status = self.status()
            queues = status.get("queues", {})
            # Attributions need the events stored and resolved; later queues (deliveries) are not waited for.
            depths = [int(queues.get(name, {}).get("depth", 0)) for name in ("ingest", "processing")]
            stored = int(status.get("events", {}).get("stored", 0))
            if all(d == 0 for d in depths) and (expected_stored is None or stored >= expected_stored):
                return status
            if time.monotonic() > deadline:
                raise DriverError(f"the service did not finish processing within {self.drain_timeout:.0f}s: {queues}")
            time.sleep(0.2)

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
        self, simulation: Simulation, on_sent: Callable[[int], None] | None = None,
        on_stage: Callable[[str], None] | None = None,
    ) -> Observed:
        began = time.monotonic()
        acknowledged: set[str] = set()
        rejected: dict[str, str] = {}
        baseline = int(self.status().get("events", {}).get("stored", 0))
        for delivery in simulation.deliveries:
            self.send(delivery, acknowledged, rejected)
            if on_sent is not None:
                on_sent(1)
        self.advance(max(simulation.end, simulation.deliveries[-1].at if simulation.deliveries else simulation.end))
        if on_stage is not None:
            on_stage("waiting for the worker")
        status = self.wait_drained(baseline + len(acknowledged))
        if on_stage is not None:
            on_stage("reading attributions")
        attributions = self.attributions(set(simulation.events))
        persons: dict[int, PersonRecord] = {}
        wanted = {a.person for a in attributions.values() if a.person is not None and a.reachable}
        wanted |= {a.probable_person for a in attributions.values() if a.probable_person is not None}
        for person in sorted(wanted):
            record = self.person(person)
            if record is not None:
                persons[person] = record
        return Observed(
            acknowledged=frozenset(acknowledged), rejected=rejected, attributions=attributions, persons=persons,
            status=status, seconds=time.monotonic() - began,
        )


# -- recapture serve as a subprocess ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def recapture_executable() -> str:
    """The `recapture` script installed beside this Python (the virtual environment's bin/)."""
    return str(Path(sys.executable).with_name("recapture"))


class EmbeddedService:
    """`recapture serve` on a fresh database (a temporary SQLite file unless given), manual clock, new secrets."""

    def __init__(self, *, shop: str, database_url: str | None = None, startup_timeout: float = 60.0,
                 extra_env: Mapping[str, str] | None = None) -> None:
        self.shop = shop
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
        port = free_port()
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
