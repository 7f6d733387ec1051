"""Delivery benchmark: `recapture serve` delivering abandonments to the fake Klaviyo on a real socket.

    .venv/bin/python bench/delivery.py [--abandonments N] [--journeys M] [--backends sqlite,postgresql]
                                       [--headrooms shipped,0.97] [--latency K] [--fixed-windows] [--profile DIR]

The fake Klaviyo (`FakeKlaviyo` on `FakeKlaviyoServer`, in this process) validates every request against Klaviyo's
official OpenAPI spec, enforces the spec's rate limits per key (token buckets) with 429 + Retry-After, and records
each event it accepts with the wall-clock time. A thin ASGI layer in front of it logs every request (time, operation,
status) and, with --fixed-windows, also refuses what Klaviyo's *documented* algorithm would: fixed 1-second and
1-minute windows. recapture runs as its own process (`recapture serve`, manual clock, one shop in a TOML file).

The delivery worker sends a due backlog of >= 20 events in bulk (event-bulk-create-jobs, 100 events per request;
limits 10/s and 150/min, i.e. 15,000 events/min) and fewer one by one (create_event; 350/s and 3,500/min). Both
paths are measured, on each backend:

1. Backlog throughput. M logged-in shoppers (Klaviyo blocked in their browsers) add to cart (/collect/shopify);
   the manual clock then jumps past the hold window while Klaviyo does not answer (a port that accepts and never
   replies), so every abandonment is decided by the service and waits in the outbox (decision rate measured).
   With N > M, the outbox is topped up to N with copies of those decided events (own unique_id and email, added
   through the store's `enqueue`), because Klaviyo's per-minute allowance is large: a bulk steady state needs
   ~40,000+ events, and processing that many journeys takes minutes. recapture is restarted against the fake
   (buckets full): the whole backlog is due at once. While it drains, the manual clock follows wall time, so a
   delivery rescheduled after a 429 comes due again as in production. Figures:
   - rate: events accepted in the last 60 s, per minute, against the ceiling of the path the worker used (bulk:
     150 requests/min x 100 events; single: 3,500/min); target >= 95 %. The client paces with token buckets that
     start full (90 % of the limit), so a backlog's first part goes faster: the last minute counts as the steady
     state only when that allowance was spent before it (the client's bucket, replayed over the requests, was
     empty) or the sender itself set the pace. Otherwise the figure is the rate over the whole run, marked
     "allowance": Klaviyo's limit did not bind, the sender's speed did.
   - sender speed over the first part of the backlog (before a per-minute bucket can bind).
   - 429 share of the event requests; target <= 1 %. Most requests in any 1 s / 60 s against the documented
     per-window counts (Klaviyo documents fixed windows; the fake and the client use token buckets).
   - integrity: every abandonment recorded exactly once, none dead.
   The run is repeated for each --headrooms value ("shipped" = the client's DEFAULT_HEADROOM, or a fraction set per
   shop as `klaviyo_headroom`), on the same database with new shoppers.
2. Latency after the hold window ends (first headroom; the one-by-one path). K shoppers (default 100) whose hold
   windows end 20 s of manual time apart; the clock steps over one due time every 0.4 s of wall time. For each
   abandonment, wall time from the clock request that passed its due time to the fake's acceptance of its event.
   p50/p99; target p99 <= 2 s.

PostgreSQL: a database `recapture_bench_<random>` is created on 127.0.0.1:5432 (user postgres) and dropped after.
Everything talks to 127.0.0.1 only; every loop is bounded in count and in time.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import common  # noqa: E402
from common import free_port, postgres_database, stop_process  # noqa: E402
from tests.support import (  # noqa: E402
    ADMIN_TOKEN,
    SECRET_KEY,
    SHARED,
    SHOP,
    WEBHOOK_SECRET,
    envelope,
    pixel_event,
    variant,
)

from recapture.adapters.destinations.fake_klaviyo import FakeKlaviyo, FakeKlaviyoServer, KlaviyoSpec  # noqa: E402
from recapture.adapters.destinations.klaviyo import (  # noqa: E402
    BULK_CREATE_EVENTS,
    CREATE_EVENT,
    DEFAULT_HEADROOM,
    OPERATIONS,
)
from recapture.application import delivery as delivery_worker  # noqa: E402
from recapture.domain.rate_limit import RateLimit, parse_rate  # noqa: E402

RECAPTURE = Path(sys.executable).with_name("recapture")
SPEC_PATH = SHARED / "contracts" / "klaviyo" / "openapi-stable.json"
KEY = "pk_bench_delivery_0001"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
START = datetime(2026, 10, 5, 10, 0, tzinfo=UTC)
HOLD = timedelta(minutes=60)            # the default cart hold window
SHOPPERS_PER_REQUEST = 100              # envelopes per POST /collect/shopify
BULK_SIZE: int = getattr(delivery_worker, "BULK_SIZE", 1)   # events per bulk request (1: the worker has no bulk)
PATHS = {"/api/events": CREATE_EVENT, "/api/event-bulk-create-jobs": BULK_CREATE_EVENTS}
EVENTS_PER_REQUEST = {CREATE_EVENT: 1, BULK_CREATE_EVENTS: BULK_SIZE}
WINDOW_S = 60.0                         # the steady window: the last minute of the run
THROUGHPUT_TARGET = 0.95
THROTTLE_TARGET = 0.01
P99_TARGET_S = 2.0
LATENCY_STAGGER = timedelta(seconds=20)  # manual time between two consecutive due times
LATENCY_STEP_S = 0.4                      # wall time between two clock steps


def documented(operation: str) -> tuple[tuple[float, float], tuple[float, float]]:
    """((burst count, window s), (steady count, window s)) of an operation, as recapture's client knows them."""
    burst, steady = OPERATIONS[operation][2]
    return parse_rate(burst), parse_rate(steady)


def ceiling_per_min(operation: str) -> float:
    """Events per minute at the documented steady limit of the operation."""
    count, window = documented(operation)[1]
    return count * 60 / window * EVENTS_PER_REQUEST[operation]


# -- the shoppers ---------------------------------------------------------------------------------------------------


def shopper(tag: str, n: int, cart_at: datetime) -> list[dict[str, Any]]:
    """Shopper n, logged in to the store (Klaviyo blocked in their browser), adds to cart at `cart_at`."""
    device = f"device-{tag}-{n}"
    line = {"quantity": 1, "merchandise": variant(price=20.0),
            "cost": {"totalAmount": {"amount": 20.0, "currencyCode": "USD"}}}
    customer = {"id": f"gid://shopify/Customer/{(zlib.crc32(tag.encode()) % 10**6 + 1) * 10**7 + n}",
                "email": email_of(tag, n)}
    return [
        envelope(pixel_event(name="product_added_to_cart", event_id=f"c-{tag}-{n}", client_id=device,
                             timestamp=cart_at.isoformat(), data={"cartLine": line}), customer=customer),
    ]


def email_of(tag: str, n: int) -> str:
    return f"shopper-{tag}-{n}@example.com"


def shopper_of(email: str) -> tuple[str, int]:
    tag, n = email.split("@")[0].removeprefix("shopper-").rsplit("-", 1)
    return tag, int(n)


# -- the service ----------------------------------------------------------------------------------------------------


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) the process has used."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Service:
    """`recapture serve` with a manual clock, one shop, Klaviyo at the fake; configured by a TOML file."""

    def __init__(self, database_url: str, klaviyo_url: str, workdir: Path, headroom: float | None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "serve.log"
        config = workdir / f"recapture-{secrets.token_hex(3)}.toml"
        lines = ["[[shops]]", f'domain = "{SHOP}"', f'webhook_secrets = ["{WEBHOOK_SECRET}"]',
                 f'klaviyo_private_key = "{KEY}"']
        if headroom is not None:
            lines.append(f"klaviyo_headroom = {headroom!r}")
        config.write_text("\n".join(lines) + "\n")
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("RECAPTURE_")}
        self.env = inherited | {
            "RECAPTURE_CONFIG": str(config), "RECAPTURE_DATABASE_URL": database_url,
            "RECAPTURE_ADMIN_TOKEN": ADMIN_TOKEN, "RECAPTURE_SECRET_KEY": SECRET_KEY, "RECAPTURE_CLOCK": "manual",
            "RECAPTURE_KLAVIYO_BASE_URL": klaviyo_url, "RECAPTURE_LOG_LEVEL": "warning",
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=self.url, headers=AUTH, timeout=30)

    def __enter__(self) -> Service:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([str(RECAPTURE), "serve", "--port", str(self.port)], env=self.env,
                                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: self.http.get("/readyz").status_code == 200, 60, "recapture serve to be ready", self)
        return self

    def __exit__(self, *_: object) -> None:
        self.http.close()
        stop_process(self.process, signal.SIGTERM, grace=30)

    def alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"recapture serve exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")

    def cpu(self) -> float:
        return process_cpu(self.process.pid) if self.process is not None else 0.0

    def clock(self, when: datetime) -> None:
        response = self.http.post("/admin/clock", json={"now": when.isoformat()})
        if response.status_code != 200:
            raise RuntimeError(f"/admin/clock answered {response.status_code}: {response.text}")

    def collect(self, items: list[dict[str, Any]]) -> None:
        response = self.http.post("/collect/shopify", json={"batch": items},
                                  headers={"content-type": "application/json", "Origin": f"https://{SHOP}"})
        if response.status_code != 200:
            raise RuntimeError(f"/collect/shopify answered {response.status_code}: {response.text[:500]}")

    def status(self) -> dict[str, Any]:
        return self.http.get("/admin/status").json()  # type: ignore[no-any-return]

    def settled(self) -> bool:
        return all(q["depth"] == 0 for q in self.status()["queues"].values())


def wait_for(condition: Callable[[], bool], seconds: float, what: str, service: Service | None = None,
             interval: float = 0.1) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if service is not None:
            service.alive()
        with contextlib.suppress(httpx.HTTPError):
            if condition():
                return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {seconds:.0f} s waiting for {what}")


def ingest(service: Service, tag: str, cart_times: list[datetime]) -> float:
    """Send the shoppers' journeys and wait until they are processed and their old sessions decided."""
    started = time.monotonic()
    for first in range(0, len(cart_times), SHOPPERS_PER_REQUEST):
        chunk = range(first, min(first + SHOPPERS_PER_REQUEST, len(cart_times)))
        service.collect([item for n in chunk for item in shopper(tag, n, cart_times[n])])
    wait_for(service.settled, 120 + len(cart_times) / 10, "the journeys to be processed", service)
    return time.monotonic() - started


# -- Klaviyo's front door: a request log, and optionally the documented fixed windows ----------------------------------


class Front:
    """ASGI in front of the fake: logs (time answered, operation, status) of every event request, and with
    `fixed_windows` refuses what Klaviyo's documented algorithm would: per operation, fixed 1-second and 1-minute
    windows (aligned to the epoch here; Klaviyo does not say how its windows align) holding the documented counts.
    What passes goes on to the fake, whose token buckets apply as well. A refusal is Klaviyo's 429 with Retry-After
    = the whole seconds left in the full window (at least 1)."""

    def __init__(self, fake: FakeKlaviyo, fixed_windows: bool) -> None:
        self.fake = fake
        self.fixed_windows = fixed_windows
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.log: list[tuple[float, str, int]] = []
            self._windows: dict[tuple[str, float, int], int] = {}
            self.refused = 0

    def requests(self) -> list[tuple[float, str, int]]:
        with self._lock:
            return list(self.log)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        operation = PATHS.get(scope.get("path", "").rstrip("/")) if scope["type"] == "http" else None
        if operation is None or scope["method"] != "POST":
            await self.fake(scope, receive, send)
            return
        if self.fixed_windows:
            wait = self._take(operation, time.time())
            if wait:
                await _throttled(send, wait)
                self._note(operation, 429)
                return
        status = 0

        async def watch(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        await self.fake(scope, receive, watch)
        self._note(operation, status)

    def _note(self, operation: str, status: int) -> None:
        with self._lock:
            self.log.append((time.time(), operation, status))
            if len(self.log) > 2_000_000:
                raise RuntimeError("the request log is unbounded")

    def _take(self, operation: str, now: float) -> int:
        """0 and count the request, or the whole seconds until the full window ends."""
        with self._lock:
            keys = [((operation, window, int(now // window)), count) for count, window in documented(operation)]
            for (_, window, index), count in keys:
                if self._windows.get((operation, window, index), 0) >= count:
                    self.refused += 1
                    return max(1, math.ceil((index + 1) * window - now))
            for key, _ in keys:
                self._windows[key] = self._windows.get(key, 0) + 1
            if len(self._windows) > 1000:
                self._windows = {k: v for k, v in self._windows.items() if k[2] >= int(now // k[1]) - 1}
        return 0


async def _throttled(send: Any, wait: int) -> None:
    body = json.dumps({"errors": [{"id": secrets.token_hex(8), "status": 429, "code": "throttled",
                                   "title": "Request was throttled.",
                                   "detail": f"Request was throttled. Expected available in {wait} "
                                             f"second{'' if wait == 1 else 's'}."}]}).encode()
    await send({"type": "http.response.start", "status": 429, "headers": [
        (b"content-type", b"application/vnd.api+json"), (b"retry-after", str(wait).encode()),
        (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


# -- throughput -----------------------------------------------------------------------------------------------------


@dataclass
class Throughput:
    headroom: float
    n: int
    journeys: int
    ingest_s: float = 0.0
    decide_s: float = 0.0                               # clock jump -> every abandonment decided (M of them)
    clone_s: float = 0.0
    t0: float = 0.0                                     # wall time the sending service was started
    times: list[float] = field(default_factory=list)    # when the fake accepted each event, from t0
    via: dict[str, int] = field(default_factory=dict)   # events per operation
    requests: list[tuple[float, str, int]] = field(default_factory=list)  # (t from t0, operation, status)
    distinct: int = 0
    duplicates: int = 0
    dead: int = 0
    server_cpu_s: float = 0.0
    timed_out: bool = False
    depths: list[int] = field(default_factory=list)
    profile: str = ""

    @property
    def operation(self) -> str:
        """The path most events took."""
        return max(self.via, key=lambda op: self.via[op]) if self.via else CREATE_EVENT

    @property
    def ceiling(self) -> float:
        return ceiling_per_min(self.operation)

    @property
    def duration(self) -> float:
        return self.times[-1] - self.times[0] if len(self.times) > 1 else 0.0

    def answers(self) -> dict[str, dict[int, int]]:
        found: dict[str, dict[int, int]] = {}
        for _, operation, status in self.requests:
            found.setdefault(operation, {}).setdefault(status, 0)
            found[operation][status] += 1
        return found

    def throttled(self) -> tuple[int, int]:
        """(429 answers, event requests)."""
        return sum(1 for r in self.requests if r[2] == 429), len(self.requests)

    def window(self) -> tuple[float, int]:
        """(start, events) of the last WINDOW_S seconds of the run."""
        if not self.times:
            return 0.0, 0
        start = self.times[-1] - WINDOW_S
        return start, sum(1 for t in self.times if t > start)

    def window_per_min(self) -> float:
        """Events/min in the last WINDOW_S seconds, from the accepted requests of the main operation there:
        (k - 1) requests' events over the time from the first to the last (no bias from where the edge falls)."""
        accepted = [t for t, operation, status in self.requests if operation == self.operation and 200 <= status < 300]
        if len(accepted) < 2:
            return 0.0
        inside = [t for t in accepted if t > accepted[-1] - WINDOW_S]
        if len(inside) < 2 or inside[-1] <= inside[0]:
            return 0.0
        return (len(inside) - 1) * EVENTS_PER_REQUEST[self.operation] * 60 / (inside[-1] - inside[0])

    def over_run_per_min(self) -> float:
        return (len(self.times) - 1) * 60 / self.duration if self.duration else 0.0

    def sender_rate(self) -> tuple[float, int]:
        """(events/s, events) over the first part of the backlog: before the client's per-minute bucket can bind
        (a third of its capacity), so only the sender's speed, or the client's burst bucket, sets the pace."""
        capacity = math.floor(documented(self.operation)[1][0] * self.headroom)
        k = min(len(self.times), max(20, capacity // 3 * EVENTS_PER_REQUEST[self.operation]))
        if k < 20:
            return 0.0, k
        return (k - 1) / max(self.times[k - 1] - self.times[0], 1e-9), k

    def client_tokens(self, at: float) -> float:
        """Tokens left at `at` in the client's steady bucket for the main operation, replaying its requests."""
        bucket = RateLimit.of(OPERATIONS[self.operation][2][1], headroom=self.headroom).buckets[0]
        for t, operation, _ in self.requests:
            if t > at:
                break
            if operation == self.operation:
                bucket.try_acquire(t)
        return float(bucket.available(at))

    def steady(self) -> tuple[bool, str]:
        if len(self.times) < self.n:
            return False, "not every event arrived"
        if self.duration < WINDOW_S * 1.25:
            return False, f"the run lasted {self.duration:.0f} s: too short for a steady minute"
        start, _ = self.window()
        capacity = RateLimit.of(OPERATIONS[self.operation][2][1], headroom=self.headroom).buckets[0].capacity
        at_start, at_end = self.client_tokens(start), self.client_tokens(self.times[-1])
        if at_start <= max(0.1 * capacity, 1.0):
            return True, f"the client's bucket was empty at the window's start ({at_start:.0f}/{capacity:.0f}): pacing binds"
        if at_start - at_end <= max(0.05 * capacity, 1.0):
            return True, (f"the client's bucket was not draining in the window ({at_start:.0f} -> {at_end:.0f} of "
                          f"{capacity:.0f}): the sender binds")
        return False, (f"the client was still spending its initial allowance in the window ({at_start:.0f} -> "
                       f"{at_end:.0f} of {capacity:.0f} tokens): raise --abandonments")

    def max_requests_in_any(self, seconds: float) -> int:
        """Most accepted or refused requests of the main operation within any `seconds` (sliding)."""
        times = [t for t, operation, _ in self.requests if operation == self.operation]
        best, first = 0, 0
        for last, t in enumerate(times):
            while t - times[first] >= seconds:
                first += 1
            best = max(best, last - first + 1)
        return best

    def timeline(self, step: float = 10.0) -> str:
        if not self.times:
            return "(no events)"
        first = self.times[0]
        bins = [0] * (int((self.times[-1] - first) // step) + 1)
        for t in self.times:
            bins[int((t - first) // step)] += 1
        return " ".join(f"{b * 60 / step:,.0f}" for b in bins)


def run_throughput(open_service: Callable[[str], Service], klaviyo_url: str, fake: FakeKlaviyo, front: Front,
                   n: int, journeys: int, headroom: float, tag: str, base: datetime, database_url: str,
                   profile: Path | None) -> Throughput:
    result = Throughput(headroom=headroom, n=n, journeys=min(n, journeys))
    due = base + HOLD + timedelta(minutes=1)
    # 1. The backlog: M journeys decided by the service while Klaviyo does not answer (the sender waits on its
    #    first request, 10 s timeout, instead of competing with the decisions); every delivery waits in the outbox.
    with Unresponsive() as klaviyo_down, open_service(klaviyo_down.url) as service:
        service.clock(base)
        result.ingest_s = ingest(service, tag, [base] * result.journeys)
        started = time.monotonic()
        service.clock(due)
        wait_for(lambda: decided(service.status(), result.journeys), 120 + result.journeys / 10,
                 "the abandonments to be decided", service, interval=0.5)
        result.decide_s = time.monotonic() - started
        klaviyo_down.close()  # resets the waiting request, so the service stops at once
    if n > result.journeys:
        started = time.monotonic()
        top_up(database_url, tag, result.journeys, n, due)
        result.clone_s = time.monotonic() - started
    # 2. Klaviyo is back: the whole backlog is due the moment the service starts (its clock stands at `due`).
    fake.reset()
    front.reset()
    result.t0 = time.time()
    sending_from = due + timedelta(minutes=1)  # past the retries of the few deliveries tried while Klaviyo hung
    with open_service(klaviyo_url) as service:
        profiler = start_profiler(service, profile, tag)
        cpu_before = service.cpu()
        service.clock(sending_from)
        deadline = time.monotonic() + n / (BULK_SIZE * 1.0) + n / 50 + 120
        last_status = 0.0
        while True:
            time.sleep(1.0)
            service.alive()
            # the manual clock follows wall time, so a delivery rescheduled after a 429 comes due again
            service.clock(sending_from + timedelta(seconds=time.time() - result.t0))
            if time.monotonic() - last_status >= 2.0:
                last_status = time.monotonic()
                status = service.status()
                result.depths.append(status["queues"]["delivery"]["depth"])
                if fake.stats()["events"] >= n and settled_outbox(status):
                    break
            if time.monotonic() > deadline:
                result.timed_out = True
                break
        result.server_cpu_s = service.cpu() - cpu_before
        if profiler is not None:
            result.profile = finish_profiler(*profiler)
        stats = fake.stats()
        events = [e for e in fake.accepted_events if e.identifiers.get("email", "").startswith(f"shopper-{tag}-")]
        result.times = sorted(e.received_at - result.t0 for e in events)
        for event in events:
            result.via[event.operation] = result.via.get(event.operation, 0) + 1
        result.distinct = len({e.identifiers["email"] for e in events})
        result.duplicates = stats["duplicates_dropped"]
        result.requests = [(t - result.t0, op, status) for t, op, status in front.requests()]
        result.dead = int(service.status()["destinations"].get("klaviyo", {}).get("dead", 0))
    return result


def top_up(database_url: str, tag: str, decided_count: int, n: int, at: datetime) -> None:
    """Fill the outbox up to n deliveries with copies of the decided events: each with its own unique_id, email and
    external id, enqueued through the store as the decision would (one transaction)."""
    from recapture.adapters.storage.abandonment_store import SqlAbandonmentStore
    from recapture.adapters.storage.database import make_engine
    from recapture.adapters.storage.sealing import Sealer
    from recapture.adapters.storage.transactions import Transactions
    from recapture.domain.delivery import DeliveryEvent

    engine = make_engine(database_url)
    try:
        transactions = Transactions(engine)
        store = SqlAbandonmentStore(transactions, Sealer(SECRET_KEY))
        pending = store.due_deliveries(at + timedelta(days=1), decided_count)
        originals = [d for d in pending if d.destination == "klaviyo" and isinstance(d.item, DeliveryEvent)]
        if not originals:
            raise RuntimeError("no decided Klaviyo event in the outbox to copy")
        with transactions.unit():
            for index in range(decided_count, n):
                source = originals[index % len(originals)].item
                assert isinstance(source, DeliveryEvent)
                profile = dataclasses.replace(
                    source.profile, email=email_of(tag, index), exchange_id=None,
                    external_id=f"bench-{tag}-{index}" if source.profile.external_id else None)
                unique = hashlib.sha256(f"{source.unique_id}/{tag}/{index}".encode()).hexdigest()[:40]
                store.enqueue("klaviyo", dataclasses.replace(source, unique_id=unique, profile=profile), at)
    finally:
        engine.dispose()


def decided(status: dict[str, Any], n: int) -> bool:
    """Every abandonment decided, its delivery in the outbox."""
    queues = status["queues"]
    return bool(queues["abandonment"]["depth"] == 0
                and queues["delivery"]["depth"] + status["scheduled"]["delivery_retries"] >= n)


class Unresponsive:
    """A port that accepts TCP connections (the kernel does) but never answers: Klaviyo timing out."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(64)
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"

    def __enter__(self) -> Unresponsive:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._socket.close()


def settled_outbox(status: dict[str, Any]) -> bool:
    queues = status["queues"]
    return bool(queues["abandonment"]["depth"] == 0 and queues["delivery"]["depth"] == 0
                and status["scheduled"]["delivery_retries"] == 0)


PROFILE_SECONDS = 6   # the first seconds of sending, before a per-minute bucket binds


def start_profiler(service: Service, directory: Path | None, tag: str) -> tuple[subprocess.Popen[bytes], Path] | None:
    """py-spy on the service for the first seconds of sending (wall time: idle threads included)."""
    if directory is None or service.process is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / f"sending-{tag}-{service.process.pid}.txt"
    spy = Path(sys.executable).with_name("py-spy")
    process = subprocess.Popen([str(spy), "record", "--pid", str(service.process.pid), "--duration",
                                str(PROFILE_SECONDS), "--rate", "250", "--idle", "--format", "raw", "-o", str(out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.3)  # let it attach
    return process, out


def finish_profiler(process: subprocess.Popen[bytes], out: Path) -> str:
    try:
        _, err = process.communicate(timeout=PROFILE_SECONDS + 30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate(timeout=10)
        return "py-spy did not finish"
    if not out.exists():
        return f"py-spy wrote nothing: {err.decode(errors='replace')[-500:]}"
    return summarize_profile(out)


def summarize_profile(path: Path, top: int = 22) -> str:
    """Where the sender thread's wall time goes: inclusive share per function over its samples."""
    inclusive: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if "application/delivery.py" not in stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        seen: set[str] = set()
        for frame in stack.split(";")[1:]:
            function, _, where = frame.partition(" (")
            where = where.rsplit(":", 1)[0]
            for marker in ("site-packages/", "/src/", "/lib/python3"):
                where = where.split(marker)[-1]
            name = f"{function} ({where})"
            if name not in seen:
                seen.add(name)
                inclusive[name] = inclusive.get(name, 0) + count
    if not total:
        return "no samples of the sender"
    ranked = sorted(inclusive.items(), key=lambda item: -item[1])[:top]
    lines = [f"sender thread, {total} samples ({path}):"]
    lines += [f"      {count / total:6.1%}  {name}" for name, count in ranked]
    return "\n".join(lines)


# -- latency --------------------------------------------------------------------------------------------------------


@dataclass
class Latency:
    delays: list[float]
    expected: int
    negative: int

    def pct(self, p: float) -> float:
        if not self.delays:
            return math.nan
        ordered = sorted(self.delays)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(p * len(ordered)) - 1))]


def run_latency(service: Service, fake: FakeKlaviyo, count: int, tag: str, base: datetime) -> Latency:
    cart_times = [base + i * LATENCY_STAGGER for i in range(count)]
    service.clock(cart_times[-1])  # every journey lies in the past; every hold window ends later
    ingest(service, tag, cart_times)
    fake.reset()
    passed: dict[int, float] = {}
    started = time.monotonic()
    for i, cart_at in enumerate(cart_times):
        delay = started + i * LATENCY_STEP_S - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        passed[i] = time.time()
        service.clock(cart_at + HOLD)  # due_at = last activity + hold; due when due_at <= now
    wait_for(lambda: fake.stats()["events"] >= count, 60, "the last abandonments to reach the fake", service)
    delays, negative = [], 0
    for event in fake.accepted_events:
        event_tag, n = shopper_of(event.identifiers.get("email", "x-0@"))
        if event_tag == tag and n in passed:
            delay = event.received_at - passed[n]
            negative += delay < 0
            delays.append(delay)
    return Latency(delays=delays, expected=count, negative=negative)


# -- report ---------------------------------------------------------------------------------------------------------


@dataclass
class Row:
    figure: str
    value: str
    limit: str = ""
    ratio: str = ""
    verdict: str = ""


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def headroom_label(headroom: float | None) -> str:
    return f"headroom {DEFAULT_HEADROOM:g} (shipped)" if headroom is None else f"headroom {headroom:g}"


def throughput_rows(backend: str, label: str, run: Throughput) -> list[Row]:
    steady, _ = run.steady()
    path = "bulk" if run.operation == BULK_CREATE_EVENTS else "single"
    if steady:
        figure, value = f"rate, last {WINDOW_S:.0f} s ({path})", run.window_per_min()
    else:
        figure, value = f"rate, whole run ({path}; allowance)", run.over_run_per_min()
    ratio = value / run.ceiling
    throttled, requests = run.throttled()
    share = throttled / requests if requests else 0.0
    (burst, _), (minute, _) = documented(run.operation)
    most_1s, most_60s = run.max_requests_in_any(1.0), run.max_requests_in_any(60.0)
    sender, _ = run.sender_rate()
    complete = run.distinct == run.n and run.dead == 0 and not run.timed_out
    prefix = f"{backend}, {label}:"
    return [
        Row(f"{prefix} {figure}", f"{value:,.0f}/min", f">= {THROUGHPUT_TARGET:.0%} of {run.ceiling:,.0f}/min",
            f"{ratio:.1%}", verdict(ratio >= THROUGHPUT_TARGET) + ("" if steady else " (not steady)")),
        Row(f"{prefix} 429 answers", f"{throttled:,} of {requests:,} requests", f"<= {THROTTLE_TARGET:.0%}",
            f"{share:.2%}", verdict(share <= THROTTLE_TARGET)),
        Row(f"{prefix} most {path} requests in any 1 s", f"{most_1s:,}", f"<= {burst:,.0f} (fixed 1-s window)",
            f"{most_1s / burst:.0%}", verdict(most_1s <= burst)),
        Row(f"{prefix} most {path} requests in any 60 s", f"{most_60s:,}", f"<= {minute:,.0f} (fixed 1-min window)",
            f"{most_60s / minute:.0%}", verdict(most_60s <= minute)),
        Row(f"{prefix} sender speed (first part)", f"{sender * 60:,.0f}/min", f"{run.ceiling:,.0f}/min ceiling",
            f"{sender * 60 / run.ceiling:.0%}", ""),
        Row(f"{prefix} abandonments decided", f"{run.journeys / run.decide_s * 60:,.0f}/min" if run.decide_s else "?",
            f"{run.ceiling:,.0f}/min ceiling",
            f"{run.journeys / run.decide_s * 60 / run.ceiling:.0%}" if run.decide_s else "", ""),
        Row(f"{prefix} delivered once, none dead", f"{run.distinct:,} of {run.n:,}", f"{run.n:,}, 0 dead",
            f"{run.distinct / run.n:.0%}", verdict(complete)),
    ]


def describe_throughput(run: Throughput) -> None:
    steady, why = run.steady()
    sender, counted = run.sender_rate()
    throttled, requests = run.throttled()
    decided_rate = run.journeys / run.decide_s if run.decide_s else 0.0
    print(f"    backlog: {run.journeys:,} journeys ingested and processed in {run.ingest_s:.1f} s, decided in "
          f"{run.decide_s:.1f} s ({decided_rate:.0f}/s, Klaviyo not answering)"
          + (f"; topped up to {run.n:,} with copies in {run.clone_s:.1f} s" if run.clone_s else ""))
    if not run.times:
        print("    no event reached the fake")
        return
    print(f"    events by operation {run.via}; requests {run.answers()}; re-sends dropped by unique_id "
          f"{run.duplicates}; dead {run.dead}" + ("; TIMED OUT" if run.timed_out else ""))
    print(f"    first event {run.times[0]:.2f} s after the service started; {len(run.times):,} events over "
          f"{run.duration:.1f} s = {run.over_run_per_min():,.0f}/min; ceiling of the path {run.ceiling:,.0f}/min "
          f"(client paces at {run.headroom:g} of it)")
    print(f"    sender speed over the first {counted:,} events: {sender:,.0f}/s = {sender * 60:,.0f}/min")
    print(f"    last {WINDOW_S:.0f} s: {run.window()[1]:,} events, {run.window_per_min():,.0f}/min between its first and "
          f"last accepted request; "
          f"{'steady' if steady else 'NOT steady'}: {why}")
    (burst, _), (minute, _) = documented(run.operation)
    print(f"    most {run.operation} requests in any 1 s: {run.max_requests_in_any(1.0)} (documented {burst:.0f} per "
          f"fixed second), in any 60 s: {run.max_requests_in_any(60.0)} (documented {minute:.0f} per fixed minute); "
          f"429s {throttled} of {requests}")
    print(f"    server CPU while sending {run.server_cpu_s:.1f} s = {run.server_cpu_s / len(run.times) * 1e3:.2f} ms/event")
    print(f"    delivery queue depth every 10 s: {' '.join(str(d) for d in run.depths[::5])}")
    print(f"    events/min per 10 s: {run.timeline()}")
    if run.profile:
        print(f"    {run.profile}")


def bench_backend(backend: str, database_url: str, args: argparse.Namespace, workdir: Path,
                  headrooms: list[float | None]) -> list[Row]:
    rows: list[Row] = []
    spec = KlaviyoSpec.load(SPEC_PATH)
    fake = FakeKlaviyo(spec, keys={KEY: spec.all_scopes})
    front = Front(fake, fixed_windows=args.fixed_windows)
    base = START
    with FakeKlaviyoServer(cast(FakeKlaviyo, front)) as server:
        for index, headroom in enumerate(headrooms):
            label = headroom_label(headroom)
            effective = DEFAULT_HEADROOM if headroom is None else headroom
            print(f"  -- backlog, {label}: {args.abandonments:,} abandonments")
            run = run_throughput(lambda url, h=headroom: Service(database_url, url, workdir, h), server.url, fake,
                                 front, args.abandonments, args.journeys, effective, f"t{index}", base, database_url,
                                 args.profile / backend if args.profile else None)
            base += timedelta(hours=3)
            describe_throughput(run)
            rows += throughput_rows(backend, label, run)
        if args.latency > 0:
            label = headroom_label(headrooms[0])
            print(f"  -- latency, {label}: {args.latency} abandonments, one due every {LATENCY_STEP_S} s")
            with Service(database_url, server.url, workdir, headrooms[0]) as service:
                latency = run_latency(service, fake, args.latency, "lat", base)
            p50, p99 = latency.pct(0.50), latency.pct(0.99)
            print(f"    {len(latency.delays)} of {latency.expected} delivered; p50 {p50:.3f} s, p90 "
                  f"{latency.pct(0.9):.3f} s, p99 {p99:.3f} s, max {max(latency.delays, default=math.nan):.3f} s, "
                  f"mean {statistics.fmean(latency.delays) if latency.delays else math.nan:.3f} s"
                  + (f"; {latency.negative} NEGATIVE (clock mismatch)" if latency.negative else ""))
            ok = len(latency.delays) == latency.expected and p99 <= P99_TARGET_S
            rows.append(Row(f"{backend}: hold end -> Klaviyo, p50", f"{p50:.2f} s"))
            rows.append(Row(f"{backend}: hold end -> Klaviyo, p99", f"{p99:.2f} s", f"<= {P99_TARGET_S:g} s",
                            f"{p99 / P99_TARGET_S:.0%}", verdict(ok)))
    return rows


def print_table(rows: list[Row]) -> None:
    common.print_table(Row("figure", "value", "limit / target", "ratio", "result"), rows, ["figure", "value", "limit", "ratio", "verdict"])


def load_note() -> str:
    one, five, _ = os.getloadavg()
    note = f"load average {one:.2f} (1 min) / {five:.2f} (5 min)"
    if one > 0.5:
        note += "  <-- other work is running on this machine: figures may be low and noisy"
    return note


def parse_headrooms(text: str) -> list[float | None]:
    found: list[float | None] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if item == "shipped":
            found.append(None)
            continue
        value = float(item)
        if not 0 < value <= 1:
            raise ValueError(f"a headroom is a fraction in (0, 1], got {item}")
        found.append(value)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--abandonments", type=int, default=40_000, help="backlog per run (default 40,000)")
    parser.add_argument("--journeys", type=int, default=2_000,
                        help="of which decided from real journeys; the rest are copies (default 2,000)")
    parser.add_argument("--backends", default="sqlite,postgresql", help="comma-separated: sqlite,postgresql")
    parser.add_argument("--headrooms", default="shipped",
                        help="comma-separated pacing headrooms, one throughput run each: 'shipped' (the client's "
                             "DEFAULT_HEADROOM) or a fraction like 0.97 (default: shipped)")
    parser.add_argument("--latency", type=int, default=100, help="abandonments in the latency run (0: skip)")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help=f"py-spy the service over the first {PROFILE_SECONDS} s of sending; raw stacks to DIR")
    parser.add_argument("--fixed-windows", action="store_true",
                        help="refuse, in front of the fake, what Klaviyo's documented fixed 1-s/1-min windows would")
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if set(backends) - {"sqlite", "postgresql"}:
        parser.error(f"unknown backend(s): {', '.join(sorted(set(backends) - {'sqlite', 'postgresql'}))}")
    try:
        headrooms = parse_headrooms(args.headrooms)
    except ValueError as error:
        parser.error(str(error))
    if args.abandonments < 100 or args.journeys < 20:
        parser.error("--abandonments must be at least 100 and --journeys at least 20")
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress shows when piped
    started = time.monotonic()
    print(f"recapture delivery benchmark — {time.strftime('%Y-%m-%d %H:%M:%S')}")
    print(f"  machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"  Klaviyo limits (spec + rate-limit guide): create_event {' and '.join(OPERATIONS[CREATE_EVENT][2])}, "
          f"bulk_create_events {' and '.join(OPERATIONS[BULK_CREATE_EVENTS][2])} x {BULK_SIZE} events per request "
          f"(worker: bulk from {getattr(delivery_worker, 'BULK_THRESHOLD', '-')} due); client DEFAULT_HEADROOM "
          f"{DEFAULT_HEADROOM:g}; Klaviyo side: {'fixed windows + ' if args.fixed_windows else ''}the fake's buckets")
    print(f"  {load_note()}")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="recapture-bench-delivery-") as tmp:
        workdir = Path(tmp)
        for backend in backends:
            print(f"\n== {backend}")
            try:
                if backend == "sqlite":
                    database_url = f"sqlite:///{workdir / 'delivery.db'}"
                    rows += bench_backend(backend, database_url, args, workdir, headrooms)
                else:
                    with postgres_database() as database_url:
                        rows += bench_backend(backend, database_url, args, workdir, headrooms)
            except Exception:
                log = workdir / "serve.log"
                if log.exists():
                    print(f"  serve.log (tail):\n{log.read_text()[-3000:]}")
                raise
    print(f"\n== summary ({time.monotonic() - started:.0f} s; {load_note()})")
    print_table(rows)


if __name__ == "__main__":
    main()
