"""`recapture demo`: a simulated week of a small store through the real service, the lift it gives, the dashboard.

With nothing but the package installed: `recapture serve` on a temporary SQLite database with the manual clock,
Klaviyo delivery pointed at the fake Klaviyo (in this process, validating every request against Klaviyo's spec:
the full one when a checkout's shared/ folder is found, else the subset shipped in the package), and the
accuracy harness's shoppers played through the public endpoints (pixel envelopes, signed webhooks). Then the gap
report's lift table, what the fake Klaviyo received, and the dashboard's address, served until Ctrl-C.
"""

from __future__ import annotations

import json
import secrets
import signal
import socket
import time
from collections import Counter
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from recapture.cli.report import LIFT_MEANING
from recapture.simulation.cli import play
from recapture.simulation.driver import DriverError, EmbeddedService, Observed
from recapture.simulation.gap import GapRow, lift_table, render_lift_table
from recapture.simulation.journeys import DEFAULT_SHOP, Simulation
from recapture.simulation.truth import abandonment_truth

if TYPE_CHECKING:
    from recapture.adapters.destinations.fake_klaviyo import FakeKlaviyo

DEFAULT_PORT = 8000
# A small store's week: about 70 sessions a day (docs/accuracy.md, "The demo's store"), and fast enough to watch.
DEFAULT_VISITORS = 300
DEFAULT_DAYS = 7.0
COLUMNS_MEANING = (
    "abandoners seen: sessions whose hold window ended, whatever followed (an order, Klaviyo's own flow, a send); "
    "Klaviyo native: of those, the ones Klaviyo's own tracking identified; recapture only: the ones only "
    "recapture could name; delivered: abandonment events Klaviyo accepted from recapture."
)


def demo(
    days: Annotated[float, typer.Option(min=0.5, max=28, help="Simulated days.")] = DEFAULT_DAYS,
    visitors: Annotated[int, typer.Option(min=1, max=20_000, help="Simulated shoppers.")] = DEFAULT_VISITORS,
    seed: Annotated[int, typer.Option(help="Seed of the random traffic (same seed, same store).")] = 1,
    port: Annotated[int | None, typer.Option(
        help=f"Port of the service and its dashboard (default {DEFAULT_PORT}, or a free one if it is taken).")] = None,
    serve: Annotated[bool, typer.Option(help="Keep serving the dashboard until Ctrl-C (--no-serve exits).")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print a machine-readable summary on stdout.")] = False,
    database_url: Annotated[str | None, typer.Option(
        help="The database to run on (an empty or migrated one; default: a temporary SQLite file).")] = None,
) -> None:
    """Simulate a week of a small Shopify store through recapture and the fake Klaviyo; show the lift."""
    # Imported here so that `recapture --help` stays fast.
    from recapture.adapters.destinations.fake_klaviyo import FakeKlaviyo, FakeKlaviyoServer, KlaviyoSpec

    console = Console(stderr=True)
    spec = KlaviyoSpec.load()
    key = f"pk_demo_{secrets.token_hex(12)}"
    fake = FakeKlaviyo(spec, keys={key: spec.all_scopes})
    began = time.monotonic()
    with FakeKlaviyoServer(fake) as klaviyo:
        settings = {"RECAPTURE_KLAVIYO_PRIVATE_KEY": key, "RECAPTURE_KLAVIYO_BASE_URL": klaviyo.url}
        try:
            with EmbeddedService(shop=DEFAULT_SHOP, database_url=database_url, extra_env=settings,
                                 port=port or _default_port()) as service:
                database = "a temporary SQLite database" if database_url is None else "the given database"
                console.print(f"recapture on {service.url} ({database}, manual clock), fake Klaviyo on "
                              f"{klaviyo.url}; simulating {visitors} shoppers over {days:g} days")
                simulation, observed = play(service, seed=seed, visitors=visitors, days=days, progress=not as_json,
                                            read_back=False)
                summary = _summary(simulation, observed, fake, service.url, service.admin_token,
                                   time.monotonic() - began)
                _print(summary, as_json)
                if serve:
                    _serve_until_interrupted(console, service.url)
        except DriverError as error:
            console.print(f"[red]demo failed:[/red] {error}")
            raise typer.Exit(1) from error


def _default_port() -> int:
    """8000 when it is free, else any free port (another service may run on 8000)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", DEFAULT_PORT))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve_until_interrupted(console: Console, url: str) -> None:
    """Until Ctrl-C (or SIGTERM): either way the service stops and the temporary database is removed."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    console.print(f"serving {url} until Ctrl-C")
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        console.print("stopped")


def _summary(simulation: Simulation, observed: Observed, fake: FakeKlaviyo, url: str, admin_token: str,
             seconds: float) -> dict[str, Any]:
    report = observed.gap_report
    if report is None:
        raise DriverError("the service has no gap report (GET /admin/report)")
    metrics = Counter(event.metric for event in fake.accepted_events)
    return {
        "visitors": len(simulation.persons), "days": (simulation.end - simulation.start).total_seconds() / 86400,
        "seed": simulation.seed, "events": len(simulation.events), "sessions": len(simulation.sessions),
        "acknowledged": len(observed.acknowledged), "rejected": len(observed.rejected),
        "since": report["since"], "until": report["until"],
        "lift_table": [asdict(row) for row in lift_table(report)],
        "klaviyo": {"events_by_metric": dict(sorted(metrics.items())), "profiles": len(fake.profiles),
                    "subscriptions": len(fake.subscriptions), "requests": fake.stats()["statuses"]},
        "truth": {stage: asdict(truth) for stage, truth in
                  abandonment_truth(simulation, observed.acknowledged).items()},
        "gap_report": report,
        "dashboard": f"{url}/dashboard", "admin_token": admin_token, "service": url,
        "seconds": round(seconds, 1),
    }


def _print(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    rows = [GapRow(**row) for row in summary["lift_table"]]
    title = (f"What recapture added to Klaviyo's abandonment flows: {summary['visitors']} shoppers, "
             f"{summary['days']:g} days ({summary['since'][:10]} to {summary['until'][:10]})")
    klaviyo = summary["klaviyo"]
    received: Any = Text("Klaviyo (the fake) received no abandonment event: try more --visitors or --days")
    if klaviyo["events_by_metric"]:
        received = Table(title="What Klaviyo (the fake) received: the backup flows' triggers")
        received.add_column("metric")
        received.add_column("events", justify="right")
        for metric, count in klaviyo["events_by_metric"].items():
            received.add_row(metric, str(count))
    Console().print(Group(
        render_lift_table(rows, title), Text(COLUMNS_MEANING, style="dim"), Text(LIFT_MEANING, style="dim"), Text(),
        received, Text(f"profiles: {klaviyo['profiles']}, list subscriptions: {klaviyo['subscriptions']}"), Text(),
        Text.assemble(("dashboard: ", "bold"), summary["dashboard"], "  (admin token: ", summary["admin_token"], ")"),
        Text(f"finished in {summary['seconds']:g} s", style="dim"),
    ))
