"""`recapture report`: the gap report, from the configured database or from a running service (`--target`)."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

LIFT_MEANING = (
    "lift: abandonments recapture delivered for shoppers Klaviyo could not identify ÷ the abandonments Klaviyo "
    "identified itself (+N% = N more abandonment emails for every 100 Klaviyo's own flows could send)"
)
REASON_LABELS = {
    "purchased": "purchased", "stronger_stage": "stronger stage", "cool_down": "cool-down",
    "no_consent": "no consent", "native": "native (Klaviyo's flow)", "not_identifiable": "not identifiable",
    "no_destination": "no destination set", "forwarded": "forwarded (forward mode)",
}


class PeriodChoice(StrEnum):
    DAY = "day"
    WEEK = "week"


def report(
    shop: Annotated[str | None, typer.Option(help="The shop (default: the only configured shop).")] = None,
    since: Annotated[str | None, typer.Option(
        help="First UTC day (YYYY-MM-DD) or an ISO-8601 instant. Default: 27 days before today.")] = None,
    until: Annotated[str | None, typer.Option(
        help="Last UTC day, included (YYYY-MM-DD), or an ISO-8601 instant, excluded. Default: now.")] = None,
    period: Annotated[PeriodChoice, typer.Option(help="Rows of the series: UTC days or ISO weeks.")] = PeriodChoice.DAY,
    attribution_days: Annotated[float, typer.Option(
        min=0, max=90, help="An order counts as recovered if placed this many days after a delivered abandonment.",
    )] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON (docs/report.md).")] = False,
    target: Annotated[str | None, typer.Option(
        help="URL of a running recapture to ask (GET /admin/report) instead of reading the database.")] = None,
    admin_token: Annotated[str | None, typer.Option(
        envvar="RECAPTURE_ADMIN_TOKEN", show_envvar=True, help="--target: the service's admin token.")] = None,
) -> None:
    """The gap report per stage and per day or week: what Klaviyo saw, what recapture added, what it recovered."""
    query = {"shop": shop, "since": since, "until": until, "period": period.value,
             "attribution_days": str(attribution_days)}
    document = _fetch(target, admin_token, query) if target else _read_database(query)
    if as_json:
        typer.echo(json.dumps(document, indent=2))
    else:
        Console().print(render(document))


def _fail(message: str, code: int) -> typer.Exit:
    Console(stderr=True).print(f"[red]{message}[/red]")
    return typer.Exit(code)


def _fetch(target: str, admin_token: str | None, query: dict[str, str | None]) -> dict[str, Any]:
    import httpx

    if not admin_token:
        raise _fail("--target needs --admin-token (or RECAPTURE_ADMIN_TOKEN)", 2)
    params = {key: value for key, value in query.items() if value is not None}
    try:
        response = httpx.get(target.rstrip("/") + "/admin/report", params=params,
                             headers={"Authorization": f"Bearer {admin_token}"}, timeout=300)
    except httpx.HTTPError as error:
        raise _fail(f"{target} did not answer: {error}", 1) from error
    if response.status_code != 200:
        raise _fail(f"{target} answered {response.status_code}: {response.text[:500]}", 1)
    try:
        document: dict[str, Any] = response.json()
    except ValueError as error:  # a proxy's HTML page, say
        raise _fail(f"{target} did not answer with the report's JSON: {response.text[:200]}", 1) from error
    return document


def _read_database(query: dict[str, str | None]) -> dict[str, Any]:
    from recapture.application.gap_report import InvalidReportQueryError
    from recapture.settings import load_settings
    from recapture.wiring import ConfigurationError, build_runtime, gap_reports

    settings = load_settings()
    shops = [s.domain for s in settings.all_shops()]
    shop = (query["shop"] or (shops[0] if len(shops) == 1 else "")).strip().lower()
    if not shop:
        raise _fail("several shops (or none) are configured: pass --shop", 2)
    if shop not in shops:
        # A misspelt shop would otherwise print an empty report, as if nothing had happened.
        raise _fail(f"no shop {shop} is configured (configured: {', '.join(shops) or 'none'})", 2)
    try:
        runtime = build_runtime(settings)
    except ConfigurationError as error:
        raise _fail(f"configuration error: {error}", 2) from error
    try:
        reports = gap_reports(runtime)
        scope = reports.scope_of(shop, query["since"], query["until"], query["period"], query["attribution_days"])
        return reports.report(scope).as_json()
    except InvalidReportQueryError as error:
        raise _fail(str(error), 2) from error
    finally:
        runtime.engine.dispose()


# -- rendering -------------------------------------------------------------------------------------------------------


def lift_text(lift: float | None) -> str:
    return "—" if lift is None else f"{lift:+.0%}"


def duration_text(seconds: float) -> str:
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def revenue_text(revenue: dict[str, str]) -> str:
    return "\n".join(f"{currency} {amount}" for currency, amount in revenue.items()) or "—"


def _latency(row: dict[str, Any], key: str) -> str:
    latency = row["latency_seconds"]
    return "—" if latency is None else duration_text(latency[key])


def _stage_rows(rows: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """The figures as table rows, one column per stage (and all)."""
    reasons = list(rows[-1]["suppressed"])
    undelivered = list(rows[-1].get("undelivered", {}))
    return [
        ("seen server-side", [str(r["seen"]) for r in rows]),
        ("identified by Klaviyo (native)", [str(r["native"]) for r in rows]),
        ("identified by recapture only", [str(r["recapture_only"]) for r in rows]),
        ("delivered", [str(r["delivered"]) for r in rows]),
        *((f"sent, {status}", [str(r["undelivered"].get(status, 0)) for r in rows]) for status in undelivered),
        ("suppressed", [str(sum(r["suppressed"].values())) for r in rows]),
        *((f"  {REASON_LABELS.get(reason, reason)}", [str(r["suppressed"].get(reason, 0)) for r in rows])
          for reason in reasons),
        ("incomplete payloads", [str(r["incomplete"]) for r in rows]),
        *((f"delivery latency {key}", [_latency(r, key) for r in rows]) for key in ("p50", "p95", "max")),
        ("recovered orders", [str(r["recovered_orders"]) for r in rows]),
        ("recovered revenue", [revenue_text(r["recovered_revenue"]) for r in rows]),
        ("lift", [lift_text(r["lift"]) for r in rows]),
    ]


def stage_table(document: dict[str, Any]) -> Table:
    columns = [*document["stages"], "all"]
    table = Table(title="per stage")
    table.add_column("", no_wrap=True)
    for column in columns:
        table.add_column(column, justify="right")
    for label, cells in _stage_rows([document["totals"][c] for c in columns]):
        table.add_row(label, *cells)
    return table


def period_table(document: dict[str, Any]) -> Table:
    table = Table(title=f"per {document['period']} (all stages)")
    table.add_column(document["period"], no_wrap=True)
    for column in ("seen", "native", "recapture only", "delivered", "suppressed", "recovered", "revenue", "lift"):
        table.add_column(column, justify="right")
    for row in document.get("periods", []):
        table.add_row(row["period_start"], str(row["seen"]), str(row["native"]), str(row["recapture_only"]),
                      str(row["delivered"]), str(sum(row["suppressed"].values())), str(row["recovered_orders"]),
                      revenue_text(row["recovered_revenue"]), lift_text(row["lift"]))
    return table


def render(document: dict[str, Any]) -> Group:
    heading = Text.assemble(
        ("gap report", "bold"), f"  {document['shop']}  {document['since']} → {document['until']} (UTC)  "
        f"by {document['period']}  attribution window {document.get('attribution_window_days', 5):g} days")
    return Group(heading, stage_table(document), Text(LIFT_MEANING, style="dim"), period_table(document))
