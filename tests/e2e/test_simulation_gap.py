"""`recapture simulate` prints the truth it generated beside recapture's gap report, on both databases."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from rich.console import Console

from recapture.simulation.cli import simulate_on
from recapture.simulation.driver import EmbeddedService, Target
from recapture.simulation.report import render
from recapture.simulation.truth import ALL_STAGES

SHOP = "sim-store.myshopify.com"


@pytest.fixture
def service(database_url: str) -> Iterator[Target]:
    with EmbeddedService(shop=SHOP, database_url=database_url) as target:
        yield target


def test_the_report_counts_the_sessions_and_klaviyos_share_the_simulation_generated(service: Target) -> None:
    """Every true session is seen once, Klaviyo's own share is exact, recapture names no more than the oracle."""
    simulation, report = simulate_on(service, seed=3, visitors=40, days=2, read_back=False)
    assert report.truth_vs_report is not None
    assert report.report_range is not None
    assert report.report_range["since"].startswith(simulation.start.date().isoformat())
    rows = {row.stage: row for row in report.truth_vs_report}
    assert set(rows) == {"session", "browse", "cart", "checkout", ALL_STAGES}
    assert rows[ALL_STAGES].seen.truth == report.abandonment_truth[ALL_STAGES].sessions > 0
    for row in rows.values():
        assert row.seen.difference == 0, row
        assert row.native.difference == 0, row
        assert row.recapture_only.report <= row.recapture_only.truth, row
        assert row.delivered == 0  # the embedded service has no destination
    document = json.loads(report.to_json())
    assert document["truth_vs_report"][-1]["difference"]["seen"] == 0
    assert document["abandonment_truth"][ALL_STAGES]["sessions"] == rows[ALL_STAGES].seen.truth
    console = Console(width=220, record=True)
    console.print(render(report))
    assert "the truth beside recapture's report" in console.export_text()
