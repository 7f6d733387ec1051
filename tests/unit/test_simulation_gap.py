"""The abandonment truth of a simulated store, the gap report as the harness reads it, and the two side by side."""

from __future__ import annotations

import json
from dataclasses import asdict, fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

from recapture.simulation.driver import Driver, Target, visit_caps
from recapture.simulation.gap import GapRow, compare, lift_table, render_comparison, render_lift_table
from recapture.simulation.journeys import DEFAULT_START, BrowserKind, Store, VisitPlan
from recapture.simulation.parameters import DEFAULT_PARAMETERS, Parameters
from recapture.simulation.truth import ALL_STAGES, abandonment_truth

STAGES = ["session", "browse", "cart", "checkout"]


def _row(seen: int = 0, native: int = 0, recapture_only: int = 0, delivered: int = 0,
         suppressed: dict[str, int] | None = None) -> dict[str, Any]:
    """One ROW of the report's JSON contract (docs/report.md)."""
    return {"seen": seen, "native": native, "recapture_only": recapture_only, "delivered": delivered,
            "suppressed": {"purchased": 0, "stronger_stage": 0, "cool_down": 0, "no_consent": 0, "native": 0,
                           "not_identifiable": 0} | (suppressed or {}),
            "incomplete": 0, "latency_seconds": None, "recovered_orders": 0, "recovered_revenue": {},
            "lift": delivered / native if native else None}


def _report(totals: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"shop": "sim-store.myshopify.com", "since": "2026-10-05T00:00:00+00:00",
            "until": "2026-10-08T02:00:00+00:00", "period": "week", "generated_at": "2026-10-08T02:00:00+00:00",
            "stages": STAGES, "totals": totals, "series": []}


def _store() -> Store:
    """Ana browses, then buys hours later; Dan browses logged in, then starts a checkout on his laptop; Ben, known to
    Klaviyo by his cookie, leaves a cart; Cy browses once, anonymously. Everyone allows marketing."""
    everyone_consents = replace(DEFAULT_PARAMETERS, marketing_consent_share=1.0)
    store = Store(start=DEFAULT_START, days=3, seed=9, parameters=everyone_consents)
    ana, ben, cy = store.add_person(first="ana"), store.add_person(first="ben"), store.add_person(first="cy")
    dan = store.add_person(first="dan", account=True)
    laptop = store.add_browser(BrowserKind.DESKTOP_CHROME, [ana.id])
    ben_phone = store.add_browser(BrowserKind.ANDROID_CHROME, [ben.id])
    cy_phone = store.add_browser(BrowserKind.IPHONE_SAFARI, [cy.id])
    dan_phone = store.add_browser(BrowserKind.ANDROID_CHROME, [dan.id])
    dan_laptop = store.add_browser(BrowserKind.DESKTOP_CHROME, [dan.id])
    assert store.prime_klaviyo_cookie(ben_phone, ben, DEFAULT_START - timedelta(days=1))
    at = DEFAULT_START + timedelta(hours=9)
    store.visit(ana, laptop, at, VisitPlan(products=2))
    store.visit(dan, dan_phone, at + timedelta(minutes=5), VisitPlan(products=1, logged_in=True))
    store.visit(dan, dan_laptop, at + timedelta(minutes=40), VisitPlan(
        products=1, add_to_cart=True, checkout=True, contact=True, logged_in=True))
    store.visit(ana, laptop, at + timedelta(hours=3), VisitPlan(
        products=1, add_to_cart=True, checkout=True, contact=True, purchase=True))
    store.visit(ben, ben_phone, at + timedelta(hours=4), VisitPlan(products=1, add_to_cart=True, view_cart=True))
    store.visit(cy, cy_phone, at + timedelta(hours=5), VisitPlan(products=1))
    return store


def test_the_truth_applies_the_abandonment_rules_to_the_true_journeys() -> None:
    """Each session gets the decision docs/abandonment.md describes, from what the store knew at the time."""
    simulation = _store().build()
    truth = abandonment_truth(simulation, frozenset(simulation.events))
    browse, cart, checkout = truth["browse"], truth["cart"], truth["checkout"]
    # Ana's browse waits for her to be identified, and by then she has bought; Dan's checkout began within the
    # hold of his browse; Cy stays anonymous.
    assert (browse.sessions, browse.purchased, browse.stronger_stage, browse.unidentifiable) == (3, 1, 1, 1)
    assert (checkout.sessions, checkout.purchased, checkout.abandoned_native, checkout.klaviyo_knew) == (2, 1, 1, 2)
    assert (cart.sessions, cart.klaviyo_knew, cart.abandoned_native, cart.identifiable_missed) == (1, 1, 1, 0)
    everything = truth[ALL_STAGES]
    assert everything.sessions == 6
    assert everything.identifiable_missed == 1  # Ana's browse: Klaviyo never saw it, her email names it later
    assert everything.abandoned == everything.abandoned_native + everything.no_consent + everything.to_send + (
        everything.unidentifiable)


def test_a_session_is_a_browsers_events_until_thirty_minutes_of_inactivity() -> None:
    """Two visits of one browser 20 minutes apart are one session; its stage is the strongest of both."""
    store = Store(start=DEFAULT_START, days=1, seed=10)
    ana = store.add_person(first="ana")
    laptop = store.add_browser(BrowserKind.DESKTOP_CHROME, [ana.id])
    first = store.visit(ana, laptop, DEFAULT_START + timedelta(hours=9), VisitPlan(products=0))
    store.visit(ana, laptop, first.end + timedelta(minutes=20), VisitPlan(products=1, add_to_cart=True))
    simulation = store.build()
    truth = abandonment_truth(simulation, frozenset(simulation.events))
    assert truth[ALL_STAGES].sessions == 1
    assert truth["cart"].sessions == 1


def test_the_lift_table_reads_the_reports_totals_in_stage_order() -> None:
    """Stages in the report's order, then all; `abandoned` and `could_send` derive from the suppressions."""
    report = _report({
        "checkout": _row(4, 3, 1, 1, {"purchased": 2}), "browse": _row(10, 2, 3, 2, {"stronger_stage": 1}),
        "session": _row(), "cart": _row(), "all": _row(14, 5, 4, 3, {"purchased": 2, "stronger_stage": 1}),
    })
    rows = lift_table(report)
    assert [row.stage for row in rows] == [*STAGES, ALL_STAGES]
    assert rows[-1] == GapRow.of(ALL_STAGES, report["totals"]["all"])
    assert rows[-1].abandoned == 11
    assert rows[-1].lift == pytest.approx(3 / 5)
    assert rows[3].could_send == 1  # without `sent` (beyond the contract) a report's sends are its deliveries
    Console(width=200, file=None, record=True).print(render_lift_table(rows, "lift"))


def test_truth_beside_report_gives_each_difference_as_report_minus_truth() -> None:
    """The report's figures are compared with the truth's, stage by stage, including all stages."""
    simulation = _store().build()
    truth = abandonment_truth(simulation, frozenset(simulation.events))
    report = _report({
        "session": _row(), "browse": _row(3, 0, 0, 0, {"stronger_stage": 1}),
        "cart": _row(1, 1, 0, 0, {"native": 1}), "checkout": _row(1, 1, 0, 0, {"purchased": 1}),
        "all": _row(5, 2, 0, 0, {"purchased": 1, "stronger_stage": 1, "native": 1}),
    })
    rows = {row.stage: row for row in compare(truth, report)}
    assert rows["browse"].seen.truth == 3
    assert rows["browse"].seen.difference == 0
    assert rows["cart"].native.difference == 0
    assert (rows[ALL_STAGES].seen.truth, rows[ALL_STAGES].seen.difference) == (6, -1)
    assert rows[ALL_STAGES].abandoned.difference == 0
    document = rows["cart"].as_json()
    assert document["truth"]["seen"] == 1
    assert document["report"]["delivered"] == 0
    assert rows["checkout"].seen.difference == -1
    console = Console(width=200, record=True)
    console.print(render_comparison(list(rows.values()), "truth beside report"))
    assert "2 / 1 (-1)" in console.export_text()


def test_the_driver_reads_the_report_for_a_range_and_knows_a_service_without_one() -> None:
    """GET /admin/report with the shop, the range and weeks; a 404 (an older service) gives None."""
    asked: list[httpx.Request] = []
    document = _report({"all": _row(1)})

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        if request.url.params.get("shop") == "old-store.myshopify.com":
            return httpx.Response(404, json={"error": {"code": "not_found"}})
        return httpx.Response(200, json=document)

    client = httpx.Client(transport=httpx.MockTransport(answer), base_url="http://recapture.test")
    since, until = DEFAULT_START, DEFAULT_START + timedelta(days=3, hours=2)
    target = Target(url="http://recapture.test", shop="sim-store.myshopify.com", webhook_secret="s", admin_token="t")
    assert Driver(target, client).gap_report(since, until) == document
    params = asked[0].url.params
    assert (params["since"], params["until"], params["period"]) == (
        "2026-10-05T00:00:00.000Z", "2026-10-08T02:00:00.000Z", "week")
    assert asked[0].headers["authorization"] == "Bearer t"
    old = Target(url="http://recapture.test", shop="old-store.myshopify.com", webhook_secret="s", admin_token="t")
    assert Driver(old, client).gap_report(since, until) is None
    assert json.dumps(document)


def test_the_clock_never_decides_a_visit_before_it_was_sent_in_full() -> None:
    """Until a visit's last request, the clock stays below its first event plus the shortest hold window."""
    store = Store(start=DEFAULT_START, days=1, seed=12)
    ana, ben = store.add_person(first="ana"), store.add_person(first="ben")
    laptop = store.add_browser(BrowserKind.DESKTOP_CHROME, [ana.id])
    phone = store.add_browser(BrowserKind.ANDROID_CHROME, [ben.id])
    first = store.visit(ana, laptop, datetime(2026, 10, 5, 9, 58, tzinfo=UTC), VisitPlan(products=4))
    second = store.visit(ben, phone, datetime(2026, 10, 5, 13, 0, tzinfo=UTC), VisitPlan(products=2))
    simulation = store.build()
    caps = visit_caps(simulation)
    assert len(caps) == len(simulation.deliveries)
    sent_first = [i for i, d in enumerate(simulation.deliveries) if set(d.events) & set(first.events)]
    sent_second = [i for i, d in enumerate(simulation.deliveries) if set(d.events) & set(second.events)]
    for index in sent_first:
        assert caps[index] == first.start + timedelta(hours=1) - timedelta(microseconds=1)
    for index in sent_second:
        assert caps[index] == second.start + timedelta(hours=1) - timedelta(microseconds=1)


def test_every_behavioural_rate_is_documented_with_its_source() -> None:
    """Each field of `Parameters` has a row in docs/accuracy.md's table, and that row names a source."""
    table = (Path(__file__).resolve().parents[2] / "docs" / "accuracy.md").read_text(encoding="utf-8")
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    for name in (f.name for f in fields(Parameters)):
        row = next((line for line in rows if f"`{name}`" in line.split("|")[1]), None)
        assert row is not None, f"{name} is not in docs/accuracy.md"
        source = row.rstrip(" |").rsplit("|", 1)[-1].strip()
        assert source, f"{name} has no source in docs/accuracy.md"


def test_the_truth_counts_are_integers_even_for_a_single_session() -> None:
    """A stage with one session still counts 1 and 0, never True and False (the JSON says numbers)."""
    simulation = _store().build()
    cart = abandonment_truth(simulation, frozenset(simulation.events))["cart"]
    assert all(type(value) is int for value in asdict(cart).values() if not isinstance(value, str))
