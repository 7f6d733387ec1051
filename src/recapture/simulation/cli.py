"""`recapture simulate`: generate a store's traffic, play it to recapture, and report accuracy against the truth.

Beside the accuracy of identity resolution it prints, per abandonment stage, the truth the simulation generated
next to recapture's own gap report for the simulated range, with the differences: anyone can check the report.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer
from rich.console import Console

from recapture.simulation.driver import Driver, DriverError, EmbeddedService, Observed, Progress, Target
from recapture.simulation.journeys import DEFAULT_SHOP, DEFAULT_START, Simulation, generate
from recapture.simulation.progress import StageBars
from recapture.simulation.report import Report, build_report, render


def namespace_for(seed: int, start_stamp: str) -> str:
    """Ids, tokens and emails carry the seed and start, so that a second run on one service never collides."""
    return f"s{seed}t{start_stamp}"


def run_simulation(
    target: Target, simulation: Simulation, *, on_stage: Callable[[str], None] | None = None,
    on_progress: Progress | None = None, drain_timeout: float = 900.0,
) -> Report:
    """Play a prepared simulation (its start must be accepted by the service's clock) and report on it."""
    with Driver(target, drain_timeout=drain_timeout) as driver:
        started = driver.start_at(simulation.start)
        if started != simulation.start:
            raise DriverError(f"the service's clock is past {simulation.start.isoformat()}: use a fresh service")
        observed = driver.run(simulation, on_stage=on_stage, on_progress=on_progress)
    return build_report(simulation, observed)


def play(
    target: Target, *, seed: int, visitors: int, days: float, progress: bool = False, drain_timeout: float = 900.0,
    read_back: bool = True,
) -> tuple[Simulation, Observed]:
    """Generate traffic starting at the service's clock (the default start on a fresh service) and play it.

    `progress` draws a bar per stage on stderr; `read_back=False` skips reading attributions back (no accuracy
    scoring; the gap report and the abandonment truth remain).
    """
    with Driver(target, drain_timeout=drain_timeout) as driver:
        start = driver.start_at(DEFAULT_START)
        simulation = generate(seed=seed, visitors=visitors, days=days, start=start, shop=target.shop,
                              namespace=namespace_for(seed, start.strftime("%y%m%d%H")))
        if not progress:
            return simulation, driver.run(simulation, read_back=read_back)
        with StageBars(Console(stderr=True)) as bars:
            bars.stage(f"sending {len(simulation.events)} events")
            observed = driver.run(simulation, on_stage=bars.stage, on_progress=bars.progress, read_back=read_back)
    return simulation, observed


def simulate_on(
    target: Target, *, seed: int, visitors: int, days: float, progress: bool = False, drain_timeout: float = 900.0,
    read_back: bool = True,
) -> tuple[Simulation, Report]:
    """`play`, then score what the service answered against the truth."""
    simulation, observed = play(target, seed=seed, visitors=visitors, days=days, progress=progress,
                                drain_timeout=drain_timeout, read_back=read_back)
    return simulation, build_report(simulation, observed)


def simulate(
    target: Annotated[str | None, typer.Option(
        help="URL of a running recapture (RECAPTURE_CLOCK=manual, RECAPTURE_TRUSTED_PROXIES covering this machine). "
             "Without it the simulation starts its own (--embedded).")] = None,
    shop: Annotated[str, typer.Option(help="The shop domain the target serves.")] = DEFAULT_SHOP,
    webhook_secret: Annotated[str | None, typer.Option(
        envvar="RECAPTURE_SHOPIFY_WEBHOOK_SECRET", show_envvar=True, help="The target's webhook secret.")] = None,
    admin_token: Annotated[str | None, typer.Option(
        envvar="RECAPTURE_ADMIN_TOKEN", show_envvar=True, help="The target's admin token.")] = None,
    days: Annotated[float, typer.Option(min=0.1, max=60, help="Simulated days.")] = 7,
    visitors: Annotated[int, typer.Option(min=1, max=100_000, help="Simulated shoppers.")] = 300,
    seed: Annotated[int, typer.Option(help="Seed of the random traffic (same seed, same traffic).")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
    embedded: Annotated[bool, typer.Option(
        "--embedded", help="Start `recapture serve` on a temporary SQLite database (the default without --target).",
    )] = False,
    database_url: Annotated[str | None, typer.Option(
        help="--embedded only: the database to run on (default: a temporary SQLite file).")] = None,
    probabilistic: Annotated[bool, typer.Option(
        "--probabilistic", help="--embedded only: turn on probabilistic re-identification and report its precision.",
    )] = False,
    drain_timeout: Annotated[float, typer.Option(help="Seconds to wait for the worker to finish.")] = 900,
) -> None:
    """Simulate shoppers, play their events to recapture, and check identity resolution and the gap report
    against the truth."""
    console = Console(stderr=True)
    if target is not None and embedded:
        console.print("[red]give either --target or --embedded[/red]")
        raise typer.Exit(2)
    try:
        if target is None:
            extra = {"RECAPTURE_PROBABILISTIC_MATCHING": "true"} if probabilistic else {}
            with EmbeddedService(shop=shop, database_url=database_url, extra_env=extra) as service:
                _, report = simulate_on(service, seed=seed, visitors=visitors, days=days, progress=not as_json,
                                        drain_timeout=drain_timeout)
        else:
            if not webhook_secret or not admin_token:
                console.print("[red]--target needs --webhook-secret and --admin-token[/red]")
                raise typer.Exit(2)
            remote = Target(url=target.rstrip("/"), shop=shop.strip().lower(), webhook_secret=webhook_secret,
                            admin_token=admin_token)
            _, report = simulate_on(remote, seed=seed, visitors=visitors, days=days, progress=not as_json,
                                    drain_timeout=drain_timeout)
    except DriverError as error:
        console.print(f"[red]simulation failed:[/red] {error}")
        raise typer.Exit(1) from error
    if as_json:
        typer.echo(report.to_json())
    else:
        Console().print(render(report))
    if sum(report.rejected.values()) or report.missing:
        console.print(f"[red]events lost: {sum(report.rejected.values())} rejected, {report.missing} acknowledged "
                      "but missing from /admin/attributions[/red]")
        raise typer.Exit(1)
