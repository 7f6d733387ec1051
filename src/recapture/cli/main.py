"""`recapture`: serve the collector, print the pixel, migrate, inspect."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

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
    workers: Annotated[bool, typer.Option(help="Run the processing worker in this process.")] = True,
) -> None:
    """Run the collector HTTP service (SQLite ./recapture.db unless RECAPTURE_DATABASE_URL says otherwise)."""
    import uvicorn

    from recapture.adapters.observability.logging import configure_logging
    from recapture.wiring import ConfigurationError, build_web_app

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    try:
        web_app = build_web_app(settings, worker=workers)
    except ConfigurationError as error:
        console.print(f"[red]configuration error:[/red] {error}")
        raise typer.Exit(2) from error
    shops = ", ".join(s.domain for s in settings.all_shops()) or "none (set RECAPTURE_SHOP_DOMAIN)"
    console.print(f"recapture listening on http://{host}:{port}  shops: {shops}")
    uvicorn.run(web_app, host=host, port=port, log_level="warning", access_log=False, proxy_headers=False)


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


def run() -> None:
    app()
