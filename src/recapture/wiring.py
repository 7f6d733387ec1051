"""The one place that builds the application from the settings: storage, clock, services, HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from starlette.applications import Starlette

from recapture.adapters.clock import ManualClock, SystemClock
from recapture.adapters.destinations.klaviyo import DEFAULT_HEADROOM, KlaviyoDestination, missing_scopes_message
from recapture.adapters.destinations.webhook import WebhookDestination
from recapture.adapters.http.app import build_app
from recapture.adapters.http.context import HttpContext
from recapture.adapters.observability.metrics import Metrics
from recapture.adapters.pixel import render_pixel
from recapture.adapters.storage.abandonment_store import SqlAbandonmentStore
from recapture.adapters.storage.database import make_engine, migrate
from recapture.adapters.storage.device_sightings import SqlDeviceSightings
from recapture.adapters.storage.event_store import SqlEventStore
from recapture.adapters.storage.group_commit import GroupCommitWriter
from recapture.adapters.storage.identity_graph import SqlIdentityGraph
from recapture.adapters.storage.report_store import SqlReportStore
from recapture.adapters.storage.sealing import Sealer
from recapture.adapters.storage.transactions import Transactions
from recapture.adapters.web.read_model import SqlDashboardReadModel
from recapture.adapters.web.services import DashboardServices
from recapture.application.abandonment import AbandonmentService, ShopDelivery
from recapture.application.collector import Collector
from recapture.application.delivery import DeliveryWorker, Destination
from recapture.application.delivery_errors import DeliveryError
from recapture.application.gap_report import GapReportService
from recapture.application.identity import IdentityResolver
from recapture.application.processing import EventProcessor
from recapture.application.reidentify import DeviceMatcher
from recapture.domain.abandonment import AbandonmentPolicy
from recapture.domain.gap_report import Period
from recapture.domain.identity.policy import DEFAULT_POLICY, IdentityPolicy
from recapture.domain.identity.probabilistic import ProbabilisticPolicy
from recapture.domain.sessions import Stage
from recapture.settings import Settings, ShopSettings

log = structlog.get_logger("recapture")
IDLE_POLL_SECONDS = 0.2
SHARED_BATCH = 25  # events per processing transaction while the same process is busy acknowledging events
DEFAULT_HOLDS = {Stage.CHECKOUT: 60, Stage.CART: 60, Stage.BROWSE: 60, Stage.SESSION: 120}
NO_DELIVERY = ShopDelivery(policy=AbandonmentPolicy(), destinations=())


class ConfigurationError(RuntimeError):
    """A setting is missing or wrong; the message says which and how to fix it."""


def secret_key(settings: Settings) -> str:
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value()
    if not settings.is_sqlite:
        raise ConfigurationError("RECAPTURE_SECRET_KEY is required with PostgreSQL (e.g. `openssl rand -hex 32`)")
    # The embedded default keeps its key beside its database, so a first run needs no setup.
    database = make_url(settings.database_url).database
    key_path = Path(database + ".key") if database and database != ":memory:" else None
    if key_path is None:
        return secrets.token_hex(32)
    if not key_path.exists():
        key_path.write_text(secrets.token_hex(32))
        key_path.chmod(0o600)
        log.warning("secret_key_created", path=str(key_path), hint="back it up: sealed data is unreadable without it")
    return key_path.read_text().strip()


@dataclass(slots=True)
class Runtime:
    """Everything that lives as long as the process."""

    settings: Settings
    engine: Engine
    store: SqlEventStore
    graph: SqlIdentityGraph
    clock: SystemClock | ManualClock
    writer: GroupCommitWriter
    processor: EventProcessor
    metrics: Metrics
    abandonment: AbandonmentService
    outbox: SqlAbandonmentStore
    delivery: DeliveryWorker
    klaviyo: dict[str, KlaviyoDestination] = field(default_factory=dict)
    missing_scopes: dict[str, list[str]] = field(default_factory=dict)
    worker: asyncio.Task[None] | None = None
    sender: asyncio.Task[None] | None = None
    started: dict[str, bool] = field(default_factory=dict)
    # Set when there may be new work (events committed, the manual clock moved): workers wake at once instead of
    # at their next poll. A worker in another process only polls.
    processing_wanted: asyncio.Event = field(default_factory=asyncio.Event)
    delivery_wanted: asyncio.Event = field(default_factory=asyncio.Event)
    _loop: asyncio.AbstractEventLoop | None = None

    def wake_workers(self) -> None:
        self.processing_wanted.set()
        self.delivery_wanted.set()

    def wake_workers_threadsafe(self) -> None:
        # The manual clock is set from a request handler thread or the loop; Event.set must run on the loop.
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.wake_workers)

    def record_commit(self, events: int, seconds: float) -> None:
        self.metrics.record_commit(events, seconds)
        self.processing_wanted.set()

    def check(self) -> dict[str, bool]:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            database = True
        except Exception:
            database = False
        return {"database": database, "writer": self.started.get("writer", False)}

    def status(self) -> dict[str, object]:
        counts = self.store.counts()
        now = self.clock.now()
        sessions = self.outbox.count_sessions(now)
        outbox = self.outbox.count_deliveries(now)
        return {
            "clock": {"mode": self.clock.mode, "now": self.clock.now().isoformat()},
            "events": {
                "received": self.metrics.total(self.metrics.received),
                "rejected": self.metrics.total(self.metrics.rejected),
                "duplicates": self.metrics.total(self.metrics.duplicates),
                "stored": counts.stored,
                "processed": counts.processed,
                "set_aside": counts.set_aside,
            },
            "queues": {
                "ingest": {"depth": self.writer.waiting},
                "processing": {"depth": counts.pending},
                "abandonment": {"depth": sessions["due"]},
                "delivery": {"depth": outbox["due"]},
            },
            "scheduled": {
                "abandonment_timers": sessions["timers"],
                "awaiting_identity": sessions["awaiting_identity"],
                "delivery_retries": outbox["retries"],
            },
            "destinations": self.outbox.delivery_health(now),
            "klaviyo_missing_scopes": self.missing_scopes,
        }

    async def run_worker(self) -> None:
        self._loop = asyncio.get_running_loop()
        ingest_busy = False
        while True:
            commits, started = self.writer.commits, time.perf_counter()
            # While ingest is busy in this process, small batches: a batch's transaction holds SQLite's write lock,
            # which every acknowledgement waits for.
            if await self._work_once(SHARED_BATCH if ingest_busy else None) == 0:
                await _idle(self.processing_wanted)
                continue
            self.delivery_wanted.set()  # decisions may have queued deliveries
            ingest_busy = self.writer.commits != commits
            if ingest_busy:
                # And at least as much time as the batch took: acknowledging events must stay fast, processing may
                # lag (hold windows are an hour long).
                await asyncio.sleep(time.perf_counter() - started)

    async def _work_once(self, limit: int | None = None) -> int:
        try:
            result = await asyncio.to_thread(self.processor.run_once, limit)
            decided = await asyncio.to_thread(self.abandonment.run_due, self.clock.now())
        except Exception:
            log.exception("processing_failed")
            return 0
        self.metrics.record_processing(result)
        for event_id, reason in result.failures:  # the reason carries no contact data (scrubbed)
            log.error("event_set_aside", event_id=event_id, reason=reason)
        self.metrics.record_abandonments(decided)
        return result.processed + sum(decided.values())

    def check_klaviyo_scopes(self) -> None:
        """At start-up: name any scope a shop's Klaviyo key lacks (events, profiles, lists, subscriptions:write)."""
        for shop, destination in self.klaviyo.items():
            try:
                missing = destination.check_scopes()
            except DeliveryError as error:
                log.warning("klaviyo_scopes_unchecked", shop=shop, reason=str(error))
                continue
            self.missing_scopes[shop] = missing
            if missing:
                log.error("klaviyo_key_missing_scopes", shop=shop, message=missing_scopes_message(missing))

    async def run_workers(self) -> None:
        """The processing worker and the delivery worker, without the HTTP service (`recapture worker`)."""
        scopes = asyncio.create_task(asyncio.to_thread(self.check_klaviyo_scopes))
        await asyncio.gather(self.run_worker(), self.run_sender(), scopes)

    async def run_sender(self) -> None:
        while True:
            try:
                sent = await asyncio.to_thread(self.delivery.run_once)
            except Exception:
                log.exception("delivery_failed")
                sent = Counter()
            self.metrics.record_deliveries(sent)
            if not sent:
                await _idle(self.delivery_wanted)


async def _idle(wanted: asyncio.Event) -> None:
    """Wait until someone says there may be work, or the poll interval ends (work from another process)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(wanted.wait(), IDLE_POLL_SECONDS)
    wanted.clear()


def abandonment_policy(shop: ShopSettings) -> AbandonmentPolicy:
    holds = {stage: timedelta(minutes=shop.hold_minutes.get(stage.name.lower(), DEFAULT_HOLDS[stage]))
             for stage in Stage}
    return AbandonmentPolicy(
        holds=holds, cool_down=timedelta(days=shop.cool_down_days), metric_suffix=shop.metric_suffix,
        send_when_native=shop.send_when_native, deliver_probabilistic=shop.deliver_probabilistic,
        mode=shop.delivery_mode,
    )


def destinations_of(shop: ShopSettings, settings: Settings) -> dict[str, Destination]:
    found: dict[str, Destination] = {}
    if shop.klaviyo_private_key is not None:
        headroom = DEFAULT_HEADROOM if shop.klaviyo_headroom is None else shop.klaviyo_headroom
        found["klaviyo"] = KlaviyoDestination(settings.klaviyo_base_url, shop.klaviyo_private_key.get_secret_value(),
                                              headroom=headroom)
    if shop.webhook_url and shop.webhook_secret:
        found["webhook"] = WebhookDestination(shop.webhook_url, shop.webhook_secret.get_secret_value())
    return found


def identity_policy(shop: ShopSettings) -> IdentityPolicy:
    return IdentityPolicy(
        limits=DEFAULT_POLICY.limits,
        identity_window=timedelta(days=shop.identity_window_days),
        blocked_values=frozenset(v.strip().lower() for v in shop.blocked_identifiers),
        blocked_email_domains=frozenset(d.strip().lower() for d in shop.blocked_email_domains),
    )


def tune_garbage_collector() -> None:
    """After start-up: freeze what is loaded and collect less often (measured: p99 at 2,000 req/s 61 -> 25 ms)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


def build_runtime(settings: Settings, *, follow_clock: bool = False) -> Runtime:
    engine = make_engine(settings.database_url)
    migrate(engine)
    sealer = Sealer(secret_key(settings))
    transactions = Transactions(engine)
    store = SqlEventStore(engine, sealer, transactions)
    graph = SqlIdentityGraph(transactions, sealer)
    policies = {shop.domain: identity_policy(shop) for shop in settings.all_shops()}
    resolver = IdentityResolver(graph, lambda shop: policies.get(shop, DEFAULT_POLICY))
    guessing = {shop.domain: ProbabilisticPolicy(enabled=shop.probabilistic_matching) for shop in settings.all_shops()}
    matcher = DeviceMatcher(SqlDeviceSightings(transactions), graph, lambda s: guessing.get(s, ProbabilisticPolicy()))
    clock: SystemClock | ManualClock = (
        ManualClock(engine, follow=follow_clock) if settings.clock == "manual" else SystemClock()
    )
    sending = {shop.domain: destinations_of(shop, settings) for shop in settings.all_shops()}
    deliveries = {
        shop.domain: ShopDelivery(policy=abandonment_policy(shop), destinations=tuple(sending[shop.domain]),
                                  list_id=shop.klaviyo_list_id)
        for shop in settings.all_shops()
    }
    outbox = SqlAbandonmentStore(transactions, sealer)
    abandonment = AbandonmentService(
        outbox, graph, lambda shop: deliveries.get(shop, NO_DELIVERY), transactions.unit
    )
    metrics = Metrics()
    runtime = Runtime(
        settings=settings, engine=engine, store=store, graph=graph, clock=clock,
        writer=GroupCommitWriter(store),
        processor=EventProcessor(store, clock, resolver, graph, transactions.unit, matcher, abandonment),
        metrics=metrics, abandonment=abandonment, outbox=outbox,
        delivery=DeliveryWorker(outbox, {(s, n): d for s, found in sending.items() for n, d in found.items()}, clock),
        klaviyo={s: d for s, found in sending.items() for n, d in found.items() if isinstance(d, KlaviyoDestination)},
    )
    metrics.watch_queue("processing", lambda: store.counts().pending)
    metrics.watch_queue("ingest", lambda: runtime.writer.waiting)
    runtime.writer.on_commit = runtime.record_commit
    if isinstance(clock, ManualClock):
        clock.on_set(runtime.wake_workers_threadsafe)
    return runtime


def gap_reports(runtime: Runtime) -> GapReportService:
    """The gap report (GET /admin/report, `recapture report`), read from the runtime's database."""
    return GapReportService(SqlReportStore(runtime.engine), runtime.clock)


def dashboard_services(runtime: Runtime) -> DashboardServices:
    """What /dashboard reads and does: the gap report, the outbox (its retry is `recapture deliveries retry`)."""
    reports = gap_reports(runtime)

    def gap_report(shop: str, since: datetime, until: datetime, period: str) -> dict[str, Any]:
        return reports.report(reports.scope(shop, since, until, Period(period))).as_json()

    return DashboardServices(
        read_model=SqlDashboardReadModel(Transactions(runtime.engine), runtime.graph),
        retry_dead=runtime.outbox.retry_dead, clock=runtime.clock, gap_report=gap_report,
    )


def build_web_app(settings: Settings, runtime: Runtime | None = None, *, worker: bool = True) -> Starlette:
    runtime = runtime or build_runtime(settings)
    shops = {shop.domain: shop for shop in settings.all_shops()}
    origins = {origin for shop in shops.values() for origin in shop.origins}
    if settings.allow_pixel_sandbox_origin:
        origins.add("null")
    single_shop = next(iter(shops)) if len(shops) == 1 else None
    ctx = HttpContext(
        settings=settings,
        shops=shops,
        collector=Collector(runtime.writer, runtime.clock, {s.domain: s.default_phone_region for s in shops.values()}),
        store=runtime.store,
        metrics=runtime.metrics,
        readiness=runtime,
        status=runtime,
        people=runtime.graph,
        pixel_script=render_pixel(settings.public_url, single_shop),
        allowed_origins=frozenset(origins),
        dashboard=dashboard_services(runtime),
        reports=gap_reports(runtime),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await runtime.writer.start()
        runtime.started["writer"] = True
        if worker:
            scopes = asyncio.create_task(asyncio.to_thread(runtime.check_klaviyo_scopes), name="scopes")
            runtime.worker = asyncio.create_task(runtime.run_worker(), name="processing")
            runtime.sender = asyncio.create_task(runtime.run_sender(), name="delivery")
        try:
            yield
        finally:
            for task in (runtime.worker, runtime.sender, scopes if worker else None):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await runtime.writer.stop()
            runtime.started["writer"] = False

    return build_app(ctx, runtime.clock, lifespan)
