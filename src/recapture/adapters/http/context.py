"""What the HTTP routes need, handed over once by the wiring."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from recapture.adapters.observability.metrics import Metrics
from recapture.adapters.web.auth import LoginThrottle
from recapture.adapters.web.services import DashboardServices
from recapture.application.collector import Collector
from recapture.application.gap_report import GapReportService
from recapture.application.ports import EventStore
from recapture.settings import Settings, ShopSettings


class Readiness(Protocol):
    def check(self) -> dict[str, bool]: ...


class PersonExplainer(Protocol):
    def explain(self, person: int) -> dict[str, Any] | None: ...

    def attributions(self, shop: str, after: int, limit: int) -> list[dict[str, Any]]: ...


class StatusSource(Protocol):
    def status(self) -> dict[str, object]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpContext:
    settings: Settings
    shops: dict[str, ShopSettings]
    collector: Collector
    store: EventStore
    metrics: Metrics
    readiness: Readiness
    status: StatusSource
    people: PersonExplainer
    pixel_script: str
    allowed_origins: frozenset[str] = field(default_factory=frozenset)
    # The dashboard at /dashboard (None: not wired, the page says so).
    dashboard: DashboardServices | None = None
    # GET /admin/report (None: not wired, the endpoint answers 503).
    reports: GapReportService | None = None
    # Failed admin-token guesses per client, shared by /admin/* and /dashboard: guessing on one counts on both.
    token_guesses: LoginThrottle = field(default_factory=LoginThrottle)
