"""`recapture`: serve the collector, print the pixel, migrate, inspect."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from recapture.cli.demo import demo
from recapture.cli.fake_klaviyo import fake_klaviyo
from recapture.cli.report import report as gap_report
from recapture.simulation.cli import simulate

if TYPE_CHECKING:
    from recapture.settings import Settings

app = typer.Typer(
    name="recapture",
    help="Server-side collection and abandonment recovery for Shopify + Klaviyo. "
    "Settings come from RECAPTURE_* environment variables (see the README).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals would print secrets
)
console = Console(stderr=True)


def _settings() -> Settings:
    # Imported here so that `recapture --help` stays fast and never reads configuration.
    from recapture.settings import load_settings

    return load_settings()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[
        bool, typer.Option(help="Run the processing and delivery workers in this process (else: `recapture worker`).")
    ] = True,
) -> None:
    """Run the collector HTTP service (SQLite ./recapture.db unless RECAPTURE_DATABASE_URL says otherwise)."""
    import uvicorn

    from recapture.adapters.observability.logging import configure_logging
    from recapture.wiring import ConfigurationError, build_web_app, tune_garbage_collector

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    try:
        web_app = build_web_app(settings, worker=workers)
    except ConfigurationError as error:
        console.print(f"[red]configuration error:[/red] {error}")
        raise typer.Exit(2) from error
    shops = ", ".join(s.domain for s in settings.all_shops()) or "none (set RECAPTURE_SHOP_DOMAIN)"
    console.print(f"recapture listening on http://{host}:{port}  shops: {shops}")
    tune_garbage_collector()
    uvicorn.run(web_app, host=host, port=port, log_level="warning", access_log=False, proxy_headers=False)


@app.command()
def worker() -> None:
    """Run the processing and delivery workers alone, beside `recapture serve --no-workers` (two processes)."""
    import asyncio

    from recapture.adapters.observability.logging import configure_logging
    from recapture.wiring import build_runtime

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    runtime = build_runtime(settings, follow_clock=True)
    console.print("recapture worker running (Ctrl-C stops it)")
    try:
        asyncio.run(runtime.run_workers())
    except KeyboardInterrupt:
        console.print("stopped")


@app.command()
def pixel() -> None:
    """Print the custom pixel to paste into Shopify admin → Settings → Customer events."""
    from recapture.adapters.pixel import render_pixel

    settings = _settings()
    shops = settings.all_shops()
    typer.echo(render_pixel(settings.public_url, shops[0].domain if len(shops) == 1 else None))


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema."""
    from recapture.adapters.storage.database import make_engine
    from recapture.adapters.storage.database import migrate as run_migrations

    run_migrations(make_engine(_settings().database_url))
    console.print("database is at the newest schema")


@app.command()
def status() -> None:
    """Print event counts and queue depths as JSON."""
    from recapture.wiring import build_runtime

    runtime = build_runtime(_settings())
    typer.echo(json.dumps(runtime.status(), indent=2))


@app.command()
def whois(
    value: Annotated[str, typer.Argument(help="An email, phone, clientId, customer id, checkout or cart token.")],
    shop: Annotated[str | None, typer.Option(help="The shop (default: the only configured shop).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the person behind an identifier: identifiers (contact values masked) and the evidence chain."""
    from recapture.application.lookup import candidates
    from recapture.wiring import build_runtime

    settings = _settings()
    shop = _one_shop(settings, shop)
    runtime = build_runtime(settings)
    for identifier in candidates(value):
        stored = runtime.graph.find(shop, identifier)
        if stored is not None:
            report = runtime.graph.explain(stored.person_id)
            if as_json:
                typer.echo(json.dumps(report, indent=2))
            else:
                _print_person(report or {}, f"{identifier.type.value}")
            return
    console.print(f"no person holds {value!r} in {shop}")
    raise typer.Exit(1)


def _print_person(report: dict[str, Any], matched: str) -> None:
    from rich.table import Table

    out = Console()
    out.print(f"[bold]person {report['person']}[/bold]  shop {report['shop']}  matched by {matched}  "
              f"events {report['events']}  identified {report['identified_at'] or 'never'}"
              + (f"  merged {report['merged']}" if report["merged"] else ""))
    identifiers = Table("type", "value", "first seen", "last seen", title="identifiers")
    for item in report["identifiers"]:
        identifiers.add_row(item["type"], item["value"], item["first_seen"], item["last_seen"])
    out.print(identifiers)
    evidence = Table("at", "action", "identifier / person", "rule", "confidence", "event", "detail", title="evidence")
    for link in report["evidence"]:
        subject = link["identifier"] or (f"person {link['other_person']}" if link["other_person"] else "")
        evidence.add_row(link["at"], link["action"], subject, link["rule"], f"{link['confidence']:.2f}",
                         str(link["event"] or ""), json.dumps(link["detail"]) if link["detail"] else "")
    out.print(evidence)


@app.command()
def erase(
    email: Annotated[str | None, typer.Option(help="The customer's email.")] = None,
    phone: Annotated[str | None, typer.Option(help="The customer's phone.")] = None,
    customer_id: Annotated[str | None, typer.Option(help="The Shopify customer id.")] = None,
    shop: Annotated[str | None, typer.Option(help="The shop (default: the only configured shop).")] = None,
) -> None:
    """Erase a customer everywhere: persons, identifiers, evidence and events (like customers/redact)."""
    from recapture.domain.events import Identifier, IdentifierType
    from recapture.domain.identifiers import normalize_email, normalize_phone, shopify_numeric_id
    from recapture.wiring import build_runtime

    given = [
        (IdentifierType.EMAIL, normalize_email(email) if email else None, email),
        (IdentifierType.PHONE, normalize_phone(phone) if phone else None, phone),
        (IdentifierType.SHOPIFY_CUSTOMER_ID, shopify_numeric_id(customer_id) if customer_id else None, customer_id),
    ]
    invalid = [kind.value for kind, normalized, raw in given if raw and not normalized]
    if invalid:
        console.print(f"[red]not a valid {', '.join(invalid)}[/red]")
        raise typer.Exit(2)
    identifiers = [Identifier(type=kind, value=normalized) for kind, normalized, _ in given if normalized]
    if not identifiers:
        console.print("[red]give --email, --phone or --customer-id[/red]")
        raise typer.Exit(2)
    settings = _settings()
    runtime = build_runtime(settings)
    outcome = runtime.processor.erase_on_request(_one_shop(settings, shop), identifiers)
    typer.echo(json.dumps(outcome))


deliveries_app = typer.Typer(help="The delivery outbox: health, and replaying the dead letters.", no_args_is_help=True)
app.add_typer(deliveries_app, name="deliveries")


@deliveries_app.command("status")
def deliveries_status() -> None:
    """Per destination: pending, delivered, dead, oldest undelivered age, last error and a health colour."""
    from recapture.wiring import build_runtime

    runtime = build_runtime(_settings())
    typer.echo(json.dumps(runtime.outbox.delivery_health(runtime.clock.now()), indent=2))


@deliveries_app.command("retry")
def deliveries_retry(
    shop: Annotated[str | None, typer.Option(help="Only this shop's dead letters.")] = None,
) -> None:
    """Put every dead-lettered delivery back in the queue (after fixing what made it fail)."""
    from recapture.wiring import build_runtime

    runtime = build_runtime(_settings())
    count = runtime.outbox.retry_dead(runtime.clock.now(), shop.strip().lower() if shop else None)
    console.print(f"{count} dead-lettered deliveries queued again")


def _one_shop(settings: Settings, shop: str | None) -> str:
    if shop:
        return shop.strip().lower()
    shops = settings.all_shops()
    if len(shops) != 1:
        console.print("[red]several shops are configured: pass --shop[/red]")
        raise typer.Exit(2)
    return shops[0].domain


app.command(name="fake-klaviyo")(fake_klaviyo)
app.command()(simulate)
app.command()(demo)
app.command(name="report")(gap_report)


def run() -> None:
    app()
