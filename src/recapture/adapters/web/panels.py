"""The identification funnel and the lift panels, from the gap report's JSON (docs/report.md).

Both take the report as the plain dict `GET /admin/report` returns, so they depend on its contract only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from markupsafe import Markup

from recapture.adapters.web.charts import PALETTE, Series, funnel_chart, line_chart, stacked_bar_chart

STAGES = ("session", "browse", "cart", "checkout")
FUNNEL_STEPS = (
    ("seen", "Abandonments seen"),
    ("native", "Identified natively by Klaviyo"),
    ("recapture_only", "Identified by recapture only"),
    ("delivered", "Delivered by recapture"),
)
# The funnel's colours (its steps in palette order) mean the same in the other charts.
NATIVE_COLOUR, RECAPTURE_COLOUR = PALETTE[1], PALETTE[2]
STAGE_COLOURS = {"session": PALETTE[4], "browse": PALETTE[3], "cart": PALETTE[0], "checkout": PALETTE[5]}
# Charts are drawn twice: wide for a laptop, narrow for a phone (CSS shows one), so text keeps a legible size.
WIDE, NARROW = 640, 360


@dataclass(frozen=True, slots=True)
class Responsive:
    """One chart at two widths."""

    wide: Markup
    narrow: Markup


@dataclass(frozen=True, slots=True)
class StageRow:
    stage: str
    seen: int
    native: int
    recapture_only: int
    delivered: int
    lift: str


@dataclass(frozen=True, slots=True)
class FunnelPanel:
    chart: Responsive
    rows: list[StageRow]
    lift: str
    recovered_orders: int
    recovered_revenue: str
    latency: str
    suppressed: list[tuple[str, int]]


@dataclass(frozen=True, slots=True)
class LiftPanel:
    lift_chart: Responsive
    identified_chart: Responsive
    period: str


def format_lift(lift: object) -> str:
    """The report's lift (recaptured deliveries over native identifications) as a signed percentage."""
    if not isinstance(lift, int | float) or isinstance(lift, bool):
        return "—"
    return f"{lift:+.0%}"


def format_revenue(revenue: object) -> str:
    if not isinstance(revenue, Mapping) or not revenue:
        return "—"
    parts = []
    for currency, amount in sorted(revenue.items()):
        try:
            exact = Decimal(str(amount))
        except InvalidOperation:
            continue
        if not exact.is_finite():
            continue
        # Cents at least, and every digit the amount has beyond them (3-decimal currencies): never rounded.
        places = max(2, -int(exact.as_tuple().exponent))
        parts.append(f"{exact:,.{places}f} {currency}")
    return ", ".join(parts) or "—"


def format_seconds(seconds: object) -> str:
    if not isinstance(seconds, int | float):
        return "—"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _count(row: Mapping[str, Any], key: str) -> int:
    value = row.get(key, 0)
    return int(value) if isinstance(value, int | float) else 0


def funnel_panel(report: Mapping[str, Any]) -> FunnelPanel:
    totals: Mapping[str, Any] = report.get("totals") or {}
    everything: Mapping[str, Any] = totals.get("all") or {}
    steps = [(label, _count(everything, key)) for key, label in FUNNEL_STEPS]
    title = "Identification funnel"
    rows = [
        StageRow(stage=stage.capitalize(), seen=_count(row, "seen"), native=_count(row, "native"),
                 recapture_only=_count(row, "recapture_only"), delivered=_count(row, "delivered"),
                 lift=format_lift(row.get("lift")))
        for stage in report.get("stages") or STAGES
        if (row := totals.get(stage)) is not None
    ]
    latency = everything.get("latency_seconds")
    suppressed = everything.get("suppressed") or {}
    return FunnelPanel(
        chart=Responsive(funnel_chart(steps, title=title, width=WIDE, css_class="chart-wide"),
                         funnel_chart(steps, title=title, width=NARROW, css_class="chart-narrow")),
        rows=rows,
        lift=format_lift(everything.get("lift")),
        recovered_orders=_count(everything, "recovered_orders"),
        recovered_revenue=format_revenue(everything.get("recovered_revenue")),
        latency=format_seconds(latency.get("p50") if isinstance(latency, Mapping) else None),
        suppressed=sorted(((reason.replace("_", " "), int(n)) for reason, n in suppressed.items() if n),
                          key=lambda item: -item[1]),
    )


def period_label(period_start: str, period: str) -> str:
    """`2026-10-05` -> `Oct 5` (a week is named by its first day)."""
    try:
        day = date.fromisoformat(period_start[:10])
    except ValueError:
        return period_start
    return f"{day:%b} {day.day}"


def lift_panel(report: Mapping[str, Any]) -> LiftPanel:
    period = str(report.get("period") or "day")
    rows: Sequence[Mapping[str, Any]] = report.get("series") or []
    starts = sorted({str(r.get("period_start", "")) for r in rows})
    labels = [period_label(s, period) for s in starts]
    index = {start: i for i, start in enumerate(starts)}
    stages = [s for s in (report.get("stages") or STAGES) if any(r.get("stage") == s for r in rows)]
    lifts: dict[str, list[float | None]] = {stage: [None] * len(starts) for stage in stages}
    native = [0.0] * len(starts)
    recaptured = [0.0] * len(starts)
    for row in rows:
        at = index[str(row.get("period_start", ""))]
        lift = row.get("lift")
        if row.get("stage") in lifts and isinstance(lift, int | float):
            lifts[str(row["stage"])][at] = float(lift) * 100
        native[at] += _count(row, "native")
        recaptured[at] += _count(row, "recapture_only")
    # A stage Klaviyo identified nobody in has no lift at all: left out rather than drawn as an empty legend entry.
    lines = [Series(stage.capitalize(), lifts[stage], STAGE_COLOURS.get(stage))
             for stage in stages if any(v is not None for v in lifts[stage])]
    bars = [Series("Native (Klaviyo)", native, NATIVE_COLOUR), Series("Recapture only", recaptured, RECAPTURE_COLOUR)]
    x_label = "week starting" if period == "week" else "day"

    def lift_chart(width: int, css_class: str) -> Markup:
        return line_chart(labels, lines, title="Lift by stage", y_label="lift over native", x_label=x_label,
                          unit="%", width=width, css_class=css_class)

    def identified_chart(width: int, css_class: str) -> Markup:
        return stacked_bar_chart(labels, bars, title="Identified abandonments", y_label="abandonments",
                                 x_label=x_label, width=width, css_class=css_class)

    return LiftPanel(
        lift_chart=Responsive(lift_chart(WIDE, "chart-wide"), lift_chart(NARROW, "chart-narrow")),
        identified_chart=Responsive(identified_chart(WIDE, "chart-wide"), identified_chart(NARROW, "chart-narrow")),
        period=period,
    )
