"""The dashboard's pure parts: SVG charts, the funnel and lift panels from a hand-made gap report, sessions, masking."""

from __future__ import annotations

import ipaddress
import itertools
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recapture.adapters.web import auth
from recapture.adapters.web.auth import SESSION_SECONDS, LoginThrottle, SessionSigner, throttle_key
from recapture.adapters.web.charts import (
    PALETTE,
    Series,
    funnel_chart,
    label_stride,
    line_chart,
    nice_ticks,
    stacked_bar_chart,
    text_width,
)
from recapture.adapters.web.panels import format_lift, format_revenue, funnel_panel, lift_panel, period_label
from recapture.adapters.web.read_model import _Link, explain_resolution, person_label
from recapture.adapters.web.routes import from_trusted_proxy, report_window, safe_next
from recapture.domain.events import IdentifierType
from recapture.domain.masking import scrub_contacts

SVG = "{http://www.w3.org/2000/svg}"
DAYS = ["Oct 1", "Oct 2", "Oct 3", "Oct 4"]


def parse(markup: str) -> ET.Element:
    """The chart is well-formed XML (an SVG document), or this raises."""
    return ET.fromstring(markup)  # noqa: S314 - our own markup, parsed to check that it is well-formed


def texts(root: ET.Element) -> list[str]:
    return ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]


# -- axes ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("maximum", "expected"), [
    (0, [0.0, 1.0]),
    (3, [0.0, 1.0, 2.0, 3.0]),
    (4, [0.0, 1.0, 2.0, 3.0, 4.0]),
    (7, [0.0, 2.0, 4.0, 6.0, 8.0]),
    (150, [0.0, 50.0, 100.0, 150.0]),
    (0.35, [0.0, 0.1, 0.2, 0.3, 0.4]),
])
def test_ticks_are_round_and_reach_the_maximum(maximum: float, expected: list[float]) -> None:
    assert nice_ticks(maximum) == expected


@given(st.floats(min_value=1e-6, max_value=1e9, allow_nan=False))
def test_ticks_always_cover_the_data_in_a_few_even_steps(maximum: float) -> None:
    ticks = nice_ticks(maximum)
    assert ticks[0] == 0
    assert ticks[-1] >= maximum * (1 - 1e-9)
    assert 2 <= len(ticks) <= 6
    steps = {round(b - a, 9) for a, b in itertools.pairwise(ticks)}
    assert len({round(s / max(steps), 6) for s in steps}) == 1


def test_x_labels_are_thinned_so_that_they_never_overlap() -> None:
    thirty = [f"Oct {d}" for d in range(1, 31)]
    assert label_stride(thirty[:7], 600) == 1
    stride = label_stride(thirty, 300)
    assert stride > 1
    shown = len(range(0, 30, stride))
    assert shown * (max(text_width(x) for x in thirty) + 8) <= 300


# -- the charts ------------------------------------------------------------------------------------------------------


def test_line_chart_has_axes_legend_and_a_point_per_known_value() -> None:
    chart = line_chart(DAYS, [Series("Cart", [10.0, 20.0, 35.0, 40.0]), Series("Checkout", [5.0, 5.0, 5.0, 5.0])],
                       title="Lift by stage", y_label="lift", x_label="day", unit="%")
    root = parse(chart)
    assert root.get("role") == "img"
    assert root.find(f"{SVG}title") is not None
    labels = texts(root)
    assert {"Cart", "Checkout"} <= set(labels), "a legend entry per series"
    assert {"0%", "40%"} <= set(labels), "a y axis in the unit"
    assert set(DAYS) <= set(labels)
    assert {"lift", "day"} <= set(labels), "axis titles"
    assert len(root.findall(f"{SVG}circle")) == 8
    assert len(root.findall(f"{SVG}path")) == 2
    tips = ["".join(t.itertext()) for c in root.iter(f"{SVG}circle") for t in c.iter(f"{SVG}title")]
    assert "Cart, Oct 3: 35%" in tips


def test_a_missing_value_breaks_the_line() -> None:
    root = parse(line_chart(DAYS, [Series("Cart", [10.0, None, 30.0, 40.0])], title="t"))
    [path] = root.findall(f"{SVG}path")
    assert path.get("d", "").count("M") == 2, "two segments: before and after the gap"
    assert len(root.findall(f"{SVG}circle")) == 3


def test_the_last_x_label_stays_inside_the_chart() -> None:
    root = parse(line_chart(DAYS, [Series("Cart", [1.0, 2.0, 3.0, 4.0])], title="t", width=360))
    last = next(t for t in root.iter(f"{SVG}text") if "".join(t.itertext()) == "Oct 4")
    assert float(last.get("x", "0")) + text_width("Oct 4") / 2 <= 360


def test_stacked_bars_stack_in_proportion_with_their_own_colours() -> None:
    native, recaptured = Series("Native", [2, 2, 0, 1], "#E69F00"), Series("Recapture only", [1, 2, 0, 3], "#009E73")
    root = parse(stacked_bar_chart(DAYS, [native, recaptured], title="Identified"))
    bars = [r for r in root.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]
    assert len(bars) == 6, "no rectangle for a zero"
    heights = {"".join(b.find(f"{SVG}title").itertext()): float(b.get("height", "0")) for b in bars}  # type: ignore[union-attr]
    assert heights["Recapture only, Oct 4: 3"] == pytest.approx(3 * heights["Native, Oct 4: 1"], rel=0.01)
    assert {b.get("fill") for b in bars} == {"#E69F00", "#009E73"}


def test_funnel_bars_are_proportional_and_say_their_share() -> None:
    root = parse(funnel_chart([("Seen", 200), ("Native", 100), ("Recapture only", 50), ("Delivered", 0)], title="f"))
    labels = texts(root)
    assert {"Seen", "200", "100 · 50%", "50 · 25%", "0 · 0%"} <= set(labels)
    bars = [r for r in root.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]
    assert [b.get("fill") for b in bars] == list(PALETTE[:3]), "a zero draws no bar"
    widths = [float(b.get("width", "0")) for b in bars]
    assert widths[0] == pytest.approx(2 * widths[1]) == pytest.approx(4 * widths[2])


def test_labels_from_data_are_escaped() -> None:
    evil = '<script>alert("x")</script>'
    colour = '"/><script>alert(1)</script>'
    for chart in (line_chart([evil], [Series(evil, [1.0], colour)], title=evil),
                  stacked_bar_chart([evil], [Series(evil, [1.0], colour)], title=evil),
                  funnel_chart([(evil, 1)], title=evil)):
        assert "<script>" not in chart
        parse(chart)


def test_no_data_says_so_instead_of_drawing_an_empty_grid() -> None:
    for chart in (line_chart(DAYS, [Series("Cart", [None] * 4)], title="t"),
                  stacked_bar_chart(DAYS, [Series("Native", [0, 0, 0, 0])], title="t"),
                  line_chart([], [], title="t")):
        assert "no data in this period" in texts(parse(chart))


# -- the panels, from the gap report's JSON contract (docs/report.md) ------------------------------------------------


def row(seen: int = 0, native: int = 0, recapture_only: int = 0, delivered: int = 0, lift: float | None = None,
        **extra: Any) -> dict[str, Any]:
    return {"seen": seen, "native": native, "recapture_only": recapture_only, "delivered": delivered,
            "suppressed": extra.get("suppressed", {}), "incomplete": 0, "latency_seconds": extra.get("latency"),
            "recovered_orders": extra.get("orders", 0), "recovered_revenue": extra.get("revenue", {}), "lift": lift}


def report(series: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "shop": "demo.myshopify.com", "since": "2026-10-01T00:00:00+00:00", "until": "2026-10-04T12:00:00+00:00",
        "period": "day", "generated_at": "2026-10-04T12:00:00+00:00", "stages": ["session", "browse", "cart", "checkout"],
        "totals": {
            "session": row(), "browse": row(seen=10), "cart": row(seen=30, native=12, recapture_only=9, delivered=7,
                                                                   lift=0.5),
            "checkout": row(seen=8, native=4, recapture_only=2, delivered=2, lift=0.25),
            "all": row(seen=48, native=16, recapture_only=11, delivered=9, lift=0.4375,
                       suppressed={"native": 16, "purchased": 3, "cool_down": 0},
                       latency={"p50": 3720.0, "p95": 7000.0, "max": 9000.0}, orders=2,
                       revenue={"USD": "120.50", "EUR": "30"}),
        },
        "series": series if series is not None else [
            {"period_start": day, "stage": stage, **row(native=n, recapture_only=r, lift=lift)}
            for day, stage, n, r, lift in [
                ("2026-10-01", "cart", 4, 2, 0.5), ("2026-10-01", "checkout", 2, 1, 0.5),
                ("2026-10-02", "cart", 0, 3, None), ("2026-10-02", "checkout", 1, 0, 0.0),
                ("2026-10-03", "cart", 8, 4, 0.375), ("2026-10-03", "checkout", 1, 1, 0.0),
                ("2026-10-01", "session", 0, 0, None), ("2026-10-02", "session", 0, 0, None),
                ("2026-10-03", "session", 0, 0, None),
            ]
        ],
    }


def test_funnel_panel_reads_the_totals() -> None:
    panel = funnel_panel(report())
    assert panel.lift == "+44%"
    assert panel.recovered_orders == 2
    assert panel.recovered_revenue == "30.00 EUR, 120.50 USD"
    assert panel.latency == "62 min"
    assert panel.suppressed == [("native", 16), ("purchased", 3)]
    assert [(r.stage, r.seen, r.native, r.recapture_only, r.delivered, r.lift) for r in panel.rows] == [
        ("Session", 0, 0, 0, 0, "—"), ("Browse", 10, 0, 0, 0, "—"), ("Cart", 30, 12, 9, 7, "+50%"),
        ("Checkout", 8, 4, 2, 2, "+25%")]
    desc = "".join(parse(panel.chart.wide).find(f"{SVG}desc").itertext())  # type: ignore[union-attr]
    assert desc == ("Abandonments seen: 48; Identified natively by Klaviyo: 16; Identified by recapture only: 11; "
                    "Delivered by recapture: 9")
    assert 'viewBox="0 0 360 ' in panel.chart.narrow


def test_lift_panel_draws_a_line_per_stage_that_has_a_lift_and_bars_per_day() -> None:
    panel = lift_panel(report())
    lines = parse(panel.lift_chart.wide)
    assert {"Cart", "Checkout"} <= set(texts(lines))
    assert "Session" not in texts(lines), "Klaviyo identified no session: no lift to draw"
    assert {"Oct 1", "Oct 2", "Oct 3"} <= set(texts(lines))
    tips = ["".join(t.itertext()) for t in lines.iter(f"{SVG}title")]
    assert "Cart, Oct 3: 38%" in tips, "the lift ratio (0.375) shown as a percentage"
    assert not any(t.startswith("Cart, Oct 2") for t in tips), "no lift where Klaviyo identified nobody"
    bars = parse(panel.identified_chart.wide)
    bar_tips = ["".join(t.itertext()) for t in bars.iter(f"{SVG}title")]
    assert "Native (Klaviyo), Oct 3: 9" in bar_tips, "summed over the stages"
    assert "Recapture only, Oct 2: 3" in bar_tips


def test_an_empty_report_draws_empty_charts() -> None:
    empty = report(series=[])
    panel = lift_panel(empty)
    assert "no data in this period" in panel.lift_chart.wide
    assert funnel_panel({}).lift == "—"


@pytest.mark.parametrize(("lift", "shown"), [(0.38, "+38%"), (0, "+0%"), (1.5, "+150%"), (None, "—"), ("x", "—"),
                                             (True, "—")])
def test_lift_is_a_signed_percentage(lift: object, shown: str) -> None:
    assert format_lift(lift) == shown


def test_small_formatters() -> None:
    assert format_revenue({"USD": "1234.5"}) == "1,234.50 USD"
    assert format_revenue({"KWD": "1.234", "JPY": "1000"}) == "1,000.00 JPY, 1.234 KWD", "never rounded away"
    assert format_revenue({}) == "—"
    assert period_label("2026-10-05", "day") == "Oct 5"
    assert period_label("garbage", "day") == "garbage"


# -- sessions, CSRF and the login throttle ---------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_cookie_is_signed_expires_and_can_be_revoked() -> None:
    clock = Clock()
    signer = SessionSigner("admin-token", now=clock)
    cookie, session = signer.issue()
    assert signer.verify(cookie) == session
    expires, nonce, mac = cookie.split(".")
    assert signer.verify(f"{int(expires) + 1000}.{nonce}.{mac}") is None, "the expiry is signed"
    assert signer.verify(f"{expires}.{nonce}.{mac[:-2]}AA") is None
    assert SessionSigner("another-token", now=clock).verify(cookie) is None, "a new admin token signs everyone out"
    for junk in (None, "", "a.b", "x.y.z", "1.2.3.4"):
        assert signer.verify(junk) is None
    clock.now += SESSION_SECONDS
    assert signer.verify(cookie) is None
    cookie, session = signer.issue()
    signer.revoke(session)
    assert signer.verify(cookie) is None


def test_the_csrf_token_belongs_to_its_session() -> None:
    signer = SessionSigner("admin-token")
    _, first = signer.issue()
    _, second = signer.issue()
    token = signer.csrf_token(first)
    assert signer.csrf_valid(first, token)
    assert not signer.csrf_valid(second, token)
    assert not signer.csrf_valid(first, "")
    assert not signer.csrf_valid(first, None)


def fail(throttle: LoginThrottle, client: str, times: int) -> None:
    for _ in range(times):
        throttle.failed(client)


def test_failed_sign_ins_are_throttled_per_client() -> None:
    clock = Clock()
    throttle = LoginThrottle(now=clock)
    fail(throttle, "10.0.0.1", 9)
    assert not throttle.blocked("10.0.0.1"), "ten failures are allowed"
    fail(throttle, "10.0.0.1", 1)
    assert throttle.blocked("10.0.0.1")
    assert not throttle.blocked("10.0.0.2"), "another client has its own allowance"
    clock.now += 6
    assert not throttle.blocked("10.0.0.1"), "then one more every 6 seconds"
    fail(throttle, "10.0.0.1", 1)
    assert throttle.blocked("10.0.0.1")


def test_an_ipv6_client_is_counted_by_its_64_not_by_each_address() -> None:
    """One subscriber holds a whole /64: a fresh address per guess must not mean a fresh allowance."""
    throttle = LoginThrottle(now=Clock())
    for host in range(10):
        throttle.failed(f"2001:db8:1:2::{host + 1:x}")
    assert throttle.blocked("2001:db8:1:2:ffff::9")
    assert not throttle.blocked("2001:db8:1:3::1")
    assert throttle_key("garbage") == throttle_key(None) == "unknown"
    assert throttle_key("::ffff:192.0.2.7") == "192.0.2.7", "IPv4 clients of a dual-stack socket stay apart"


def test_a_flood_of_new_clients_never_resets_a_guesser(monkeypatch: pytest.MonkeyPatch) -> None:
    """The table is bounded, but making room forgets idle clients and then the oldest failures, never everyone."""
    monkeypatch.setattr(auth, "MAX_TRACKED_CLIENTS", 20)
    throttle = LoginThrottle(now=Clock())
    fail(throttle, "10.0.0.1", 10)
    for host in range(100):
        throttle.failed(f"192.0.2.{host}")
        fail(throttle, "10.0.0.1", 1)  # the guesser keeps guessing, so it keeps its place
    assert throttle.blocked("10.0.0.1")
    assert len(throttle._buckets) <= 20


def test_a_cookie_or_csrf_token_with_non_ascii_characters_is_refused_not_an_error() -> None:
    """`hmac.compare_digest` raises TypeError on non-ASCII str: a crafted cookie must not be a 500."""
    signer = SessionSigner("admin-token")
    cookie, session = signer.issue()
    expires, nonce, _ = cookie.split(".")
    assert signer.verify(f"{expires}.{nonce}.\u00e9t\u00e9") is None
    assert signer.verify(f"\u00b2.{nonce}.x") is None
    assert not signer.csrf_valid(session, "\u00e9")


@pytest.mark.parametrize(("target", "safe"), [
    ("/dashboard?days=30", "/dashboard?days=30"), ("/dashboard", "/dashboard"), ("//evil.com", "/dashboard"),
    ("https://evil.com/dashboard", "/dashboard"), ("/admin/status", "/dashboard"), (None, "/dashboard"),
    ("/dashboard\\..\\x", "/dashboard"),
])
def test_after_login_only_the_dashboard_itself(target: str | None, safe: str) -> None:
    assert safe_next(target) == safe


def test_only_a_trusted_proxy_may_say_the_request_was_https() -> None:
    proxies = [ipaddress.ip_network("10.0.0.0/8")]
    assert from_trusted_proxy("10.1.2.3", proxies)
    assert not from_trusted_proxy("192.0.2.1", proxies)
    assert not from_trusted_proxy("testclient", proxies)


def test_the_report_window_is_whole_utc_days() -> None:
    now = datetime(2026, 10, 5, 15, 30, tzinfo=UTC)
    since, until = report_window(now, 7)
    assert since == datetime(2026, 9, 29, tzinfo=UTC)
    assert until == now


# -- masking and explanations ----------------------------------------------------------------------------------------


def test_contacts_inside_free_text_are_masked() -> None:
    text = "Invalid profile Ann.Lee+shop@Example.co.uk / +1 (415) 555-2671; order 123456789 on 2026-10-05"
    scrubbed = scrub_contacts(text)
    assert "Ann.Lee" not in scrubbed
    assert "555" not in scrubbed
    assert "a***@e***.uk" in scrubbed
    assert "+14*****71" in scrubbed
    assert "order 123456789 on 2026-10-05" in scrubbed, "ids and dates are left alone"


@pytest.mark.parametrize("refused", [
    "ann@example", "ann@exämple.com", "ann%40example.com", "ann@@example.com", "ann.lee@localhost",
])
def test_a_malformed_email_a_platform_quotes_back_is_masked_too(refused: str) -> None:
    """The emails a platform refuses are the malformed ones; a pattern for valid addresses would show them."""
    scrubbed = scrub_contacts(f'400: {{"detail": "Invalid email \'{refused}\'"}}')
    assert "ann" not in scrubbed
    assert "a***@" in scrubbed


@given(st.emails())
def test_no_email_survives_scrubbing(email: str) -> None:
    scrubbed = scrub_contacts(f"refused {email} today")
    assert email not in scrubbed
    assert re.search(r"\*\*\*@", scrubbed)


class Held:
    def __init__(self, kind: IdentifierType, value: str, day: int) -> None:
        self.type, self.value, self.last_seen = kind, value, datetime(2026, 10, day, tzinfo=UTC)


def test_a_person_is_named_by_their_latest_contact_masked() -> None:
    held = [Held(IdentifierType.EMAIL, "old@example.com", 1), Held(IdentifierType.EMAIL, "new@example.com", 3),
            Held(IdentifierType.PHONE, "+14155552671", 4), Held(IdentifierType.CLIENT_ID, "abc", 5)]
    assert person_label(7, held) == "#7 · n***@e***.com"
    assert person_label(7, held[2:]) == "#7 · +14*****71"
    assert person_label(7, [Held(IdentifierType.KLAVIYO_EXCHANGE_ID, "KX.1", 1)]) == "#7 · Klaviyo profile"
    assert person_label(7, held[3:]) == "#7 · anonymous"


def link(action: str, kind: str | None = None, other: int | None = None, confidence: float = 1.0,
         rule: str = "checkout_started") -> _Link:
    return _Link(action=action, rule=rule, confidence=confidence, identifier_type=kind, other_person=other)


def test_a_resolution_is_explained_from_the_evidence_the_event_left() -> None:
    assert explain_resolution([], [], processed=False, has_person=False) == ("waiting to be resolved", "", None)
    assert explain_resolution([], ["client_id"], processed=True, has_person=True) == (
        "known client id", "existing link", 1.0)
    assert explain_resolution([], [], processed=True, has_person=False) == ("no identifiers", "", None)
    merged = [link("attach", "email"), link("attach", "cart_token"), link("merge", other=4)]
    assert explain_resolution(merged, [], processed=True, has_person=True) == (
        "new email, cart token; merged #4", "checkout_started", 1.0)
    guess = [link("probabilistic", other=9, confidence=0.86, rule="probabilistic")]
    assert explain_resolution(guess, [], processed=True, has_person=True) == (
        "probably person #9", "probabilistic", 0.86)
    shared = [link("move", "client_id", other=3), link("conflict")]
    assert explain_resolution(shared, [], processed=True, has_person=True)[0] == (
        "shared client id moved here; conflict recorded")
