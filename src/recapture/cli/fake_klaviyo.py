"""`recapture fake-klaviyo`: a local stand-in for Klaviyo's API, for the demo, benchmarks and end-to-end tests."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def fake_klaviyo(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8011,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    key: Annotated[
        list[str] | None,
        typer.Option(help="A private key to accept, with every scope (repeatable). Default: any key starting pk_."),
    ] = None,
    spec: Annotated[
        Path | None,
        typer.Option(help="Klaviyo's OpenAPI spec (default: $RECAPTURE_KLAVIYO_SPEC or ../shared/contracts/..., "
                          "else the subset shipped in the package)."),
    ] = None,
    rate_limits: Annotated[bool, typer.Option(help="Answer 429 past the documented rate limits.")] = True,
) -> None:
    """Serve a fake Klaviyo that validates requests against the official spec and records what it accepted.

    Point recapture at it with base URL http://HOST:PORT; read what arrived at /_fake/events, /_fake/profiles,
    /_fake/subscriptions and /_fake/stats; queue faults with POST /_fake/faults.
    """
    # Imported here so that `recapture --help` stays fast.
    from recapture.adapters.destinations.fake_klaviyo import KlaviyoSpec, serve_fake_klaviyo

    try:
        loaded = KlaviyoSpec.load(spec)
    except FileNotFoundError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    keys = dict.fromkeys(key, loaded.all_scopes) if key else None
    typer.echo(f"fake Klaviyo (revision {loaded.revision}) on http://{host}:{port}", err=True)
    serve_fake_klaviyo(host, port, keys=keys, spec_path=spec, rate_limits=rate_limits)
