"""The accuracy harness's ground truth: deterministic per seed, faithful to its rates, Klaviyo's cookie modelled."""

from __future__ import annotations

import base64
import json
from collections import Counter
from datetime import timedelta
from typing import Any

import phonenumbers
import pytest
from email_validator import validate_email

from recapture.domain.events import IdentifierType
from recapture.domain.identity.policy import DEFAULT_POLICY
from recapture.domain.masking import mask_email
from recapture.simulation.driver import Attributed, Observed, PersonRecord
from recapture.simulation.journeys import (
    CART_TOKEN,
    CHECKOUT_TOKEN,
    DEFAULT_START,
    EMAIL,
    PIXEL,
    WEBHOOK,
    BrowserKind,
    Simulation,
    Source,
    Store,
    VisitPlan,
    generate,
)
from recapture.simulation.parameters import DEFAULT_PARAMETERS
from recapture.simulation.report import build_report


@pytest.fixture(scope="module")
def large() -> Simulation:
    return generate(seed=11, visitors=3000, days=7)


def _cookie(simulation: Simulation, key: str) -> dict[str, Any] | None:
    delivery = next(d for d in simulation.deliveries if key in d.events)
    body = json.loads(delivery.body)
    envelopes = body.get("batch", [body])
    envelope = envelopes[delivery.events.index(key)]
    raw = envelope["cookies"].get("__kla_id")
    return json.loads(base64.b64decode(raw)) if raw else None


def test_the_same_seed_gives_the_same_store_and_another_seed_another() -> None:
    """generate() is a pure function of its arguments: same bodies, same truth; a new seed changes the traffic."""
    first, again = generate(seed=5, visitors=120, days=3), generate(seed=5, visitors=120, days=3)
    assert [d.body for d in first.deliveries] == [d.body for d in again.deliveries]
    assert first.events == again.events
    assert first.sessions == again.sessions
    other = generate(seed=6, visitors=120, days=3)
    assert [d.body for d in other.deliveries] != [d.body for d in first.deliveries]


def test_the_namespace_changes_ids_but_not_behaviour() -> None:
    """A rerun on the same service uses new ids and emails, yet the same visits and funnel."""
    first = generate(seed=5, visitors=120, days=3, namespace="a")
    second = generate(seed=5, visitors=120, days=3, namespace="b")
    assert [(s.person, s.start, s.source) for s in first.sessions] == [(s.person, s.start, s.source) for s in second.sessions]
    assert not {p.email for p in first.persons} & {p.email for p in second.persons}
    assert not set(first.events) & set(second.events)


def test_rates_are_respected_over_a_large_sample(large: Simulation) -> None:
    """Device mix, ad blockers, Klaviyo's prior knowledge and the funnel follow the parameters (within noise)."""
    p = DEFAULT_PARAMETERS
    persons = large.persons
    own = [b for b in large.browsers if len(b.users) == 1 and b.kind not in (BrowserKind.INSTAGRAM_IN_APP, BrowserKind.FACEBOOK_IN_APP)]
    main_by_person: dict[int, list[Any]] = {}
    for browser in own:
        main_by_person.setdefault(browser.users[0], []).append(browser)
    first_devices = [browsers[0] for browsers in main_by_person.values()]
    assert sum(b.mobile for b in first_devices) / len(first_devices) == pytest.approx(p.mobile_share, abs=0.03)
    assert sum(len(b) == 2 for b in main_by_person.values()) / len(persons) == pytest.approx(p.cross_device_share, abs=0.03)
    desktops = [b for b in own if not b.mobile]
    assert sum(b.klaviyo_blocked for b in desktops) / len(desktops) == pytest.approx(p.desktop_ad_blocker_share, abs=0.03)
    assert sum(x.known_to_klaviyo for x in persons) / len(persons) == pytest.approx(p.known_to_klaviyo_share, abs=0.03)
    assert sum(x.account_id is not None for x in persons) / len(persons) == pytest.approx(p.customer_account_share, abs=0.03)
    names = Counter(e.name for e in large.events.values())
    carts = names["product_added_to_cart"]
    assert carts > 300
    assert 1 - names["checkout_completed"] / carts == pytest.approx(p.cart_abandonment, abs=0.08)
    phone_sessions = [s for s in large.sessions if s.browser in (BrowserKind.IPHONE_SAFARI, BrowserKind.ANDROID_CHROME,
                                                                 BrowserKind.INSTAGRAM_IN_APP, BrowserKind.FACEBOOK_IN_APP)]
    in_app = sum(s.browser in (BrowserKind.INSTAGRAM_IN_APP, BrowserKind.FACEBOOK_IN_APP) for s in phone_sessions)
    # Email and recovery visits open the phone's own browser, so in-app visits are a little under the rate.
    assert 0.6 * p.in_app_browser_share < in_app / len(phone_sessions) <= p.in_app_browser_share + 0.03
    visits = Counter(s.person for s in large.sessions)
    assert 1.3 < sum(visits.values()) / len(persons) < 1 / (1 - p.repeat_visit_rate) + 0.1


def test_networks_share_addresses_like_offices_and_carrier_nat(large: Simulation) -> None:
    """Households get their own /24; offices and carrier NAT put many shoppers behind one address."""
    people_per_ip: dict[str, set[int]] = {}
    for session in large.sessions:
        people_per_ip.setdefault(session.ip, set()).add(session.person)
    crowded = [ip for ip, people in people_per_ip.items() if len(people) > 25]
    assert crowded, "carrier NAT and office addresses should each carry more than 25 shoppers"
    homes = {s.ip.rsplit(".", 1)[0] for s in large.sessions if len(people_per_ip[s.ip]) <= 2}
    assert len(homes) > 1000


def test_generated_contacts_are_valid_and_never_placeholders(large: Simulation) -> None:
    """Every email passes email-validator (no reserved TLD) and no identity guard; every phone is a valid number."""
    for person in large.persons[:500]:
        assert validate_email(person.email, check_deliverability=False).normalized.lower() == person.email
        assert not DEFAULT_POLICY.is_blocked(IdentifierType.EMAIL, person.email)
        if person.phone:
            assert phonenumbers.is_valid_number(phonenumbers.parse(person.phone, "US"))
    assert len({p.email for p in large.persons}) == len(large.persons)
    phones = [p.phone for p in large.persons if p.phone]
    assert len(set(phones)) == len(phones)


def test_every_event_records_its_true_person_and_purchases_tie_pixel_and_webhook(large: Simulation) -> None:
    """checkout_completed and orders/create share the checkout and cart tokens, and both name the buyer."""
    sessions = {s.id: s for s in large.sessions}
    for event in large.events.values():
        assert event.session is not None
        assert event.person == sessions[event.session].person
    orders = [e for e in large.events.values() if e.name == "orders/create"]
    completed = {dict(e.identifiers)[CHECKOUT_TOKEN]: e for e in large.events.values() if e.name == "checkout_completed"}
    assert orders
    for order in orders:
        tokens = dict(order.identifiers)
        pixel = completed[tokens[CHECKOUT_TOKEN]]
        assert pixel.person == order.person
        assert (CART_TOKEN, tokens[CART_TOKEN]) in pixel.identifiers
        assert (EMAIL, large.persons[order.person].email) in order.identifiers


def test_deliveries_are_in_time_order_and_webhooks_are_signed_resources(large: Simulation) -> None:
    """The driver sends in this order; each pixel flush is one page of one browser, each webhook one resource."""
    moments = [d.at for d in large.deliveries]
    assert moments == sorted(moments)
    assert sum(len(d.events) for d in large.deliveries) == len(large.events)
    for delivery in large.deliveries[:2000]:
        body = json.loads(delivery.body)
        if delivery.channel == "webhook":
            assert delivery.topic in ("checkouts/create", "checkouts/update", "orders/create")
            assert large.events[delivery.events[0]].source == WEBHOOK
        else:
            envelopes = body.get("batch", [body])
            assert len({e["event"]["clientId"] for e in envelopes}) == 1
            assert all(large.events[k].source == PIXEL for k in delivery.events)
            assert len(delivery.body) < 32_768


def _visit(store: Store, person: Any, browser: Any, at: Any, **plan: Any) -> list[str]:
    return list(store.visit(person, browser, at, VisitPlan(**plan)).events)


def test_safari_caps_klaviyos_cookie_at_24_hours_after_an_email_click() -> None:
    """An email click identifies an iPhone for 24 h only; Chrome keeps the identity for the whole window."""
    store = Store(start=DEFAULT_START, days=10, seed=3)
    shopper = store.add_person(known_to_klaviyo=True)
    iphone = store.add_browser(BrowserKind.IPHONE_SAFARI, [shopper.id])
    chrome = store.add_browser(BrowserKind.DESKTOP_CHROME, [shopper.id])
    start = DEFAULT_START + timedelta(hours=9)
    clicked = _visit(store, shopper, iphone, start, source=Source.EMAIL, products=2)
    chrome_click = _visit(store, shopper, chrome, start + timedelta(hours=1), source=Source.EMAIL, products=2)
    next_day = _visit(store, shopper, iphone, start + timedelta(hours=30), products=1)
    chrome_later = _visit(store, shopper, chrome, start + timedelta(days=8), products=1)
    simulation = store.build()
    landing = _cookie(simulation, clicked[0])
    assert landing is not None
    assert "$exchange_id" not in landing  # the landing page is sent before Klaviyo's script identified the browser
    assert (_cookie(simulation, clicked[-1]) or {}).get("$exchange_id") == shopper.exchange_id
    assert "$exchange_id" not in (_cookie(simulation, next_day[0]) or {})
    assert simulation.events[next_day[0]].klaviyo_person is None
    assert simulation.events[chrome_click[-1]].klaviyo_person == shopper.id
    assert simulation.events[chrome_later[0]].klaviyo_person == shopper.id


def test_a_typed_email_identifies_safari_for_seven_days_unless_klaviyo_is_blocked() -> None:
    """Safari's 7-day cap on script-set cookies; an ad blocker means no cookie ever reaches the envelope."""
    store = Store(start=DEFAULT_START, days=20, seed=4)
    shopper = store.add_person()
    safari = store.add_browser(BrowserKind.DESKTOP_SAFARI, [shopper.id])
    blocked = store.add_browser(BrowserKind.DESKTOP_CHROME, [shopper.id], blocked=True)
    start = DEFAULT_START + timedelta(hours=10)
    checkout = {"products": 1, "add_to_cart": True, "checkout": True, "contact": True}
    _visit(store, shopper, safari, start, **checkout)
    _visit(store, shopper, blocked, start + timedelta(hours=1), **checkout)
    blocked_later = _visit(store, shopper, blocked, start + timedelta(days=2), products=1)
    six_days = _visit(store, shopper, safari, start + timedelta(days=6), products=1)
    fourteen_days = _visit(store, shopper, safari, start + timedelta(days=14), products=1)
    sixteen_days = _visit(store, shopper, safari, start + timedelta(days=16), products=1)
    simulation = store.build()
    assert (_cookie(simulation, six_days[0]) or {}).get("$email") == shopper.email
    # The visit on day 6 rewrote the cookie: the cap restarts from there.
    assert simulation.events[fourteen_days[0]].klaviyo_person is None
    assert simulation.events[sixteen_days[0]].klaviyo_person is None
    assert _cookie(simulation, blocked_later[0]) is None
    assert all(simulation.events[k].klaviyo_person is None for k in blocked_later)


def test_a_shared_tablet_carries_the_previous_users_cookie() -> None:
    """Klaviyo's cookie names whoever identified the tablet last; the truth still names who is holding it."""
    store = Store(start=DEFAULT_START, days=3, seed=5)
    ana = store.add_person(first="ana")
    ben = store.add_person(household=ana.household, first="ben")
    tablet = store.add_browser(BrowserKind.TABLET_SAFARI, [ana.id, ben.id])
    start = DEFAULT_START + timedelta(hours=8)
    _visit(store, ana, tablet, start, products=1, add_to_cart=True, checkout=True, contact=True, purchase=True)
    bens = _visit(store, ben, tablet, start + timedelta(hours=5), products=2)
    simulation = store.build()
    assert all(simulation.events[k].person == ben.id for k in bens)
    assert all(simulation.events[k].klaviyo_person == ana.id for k in bens)
    assert (EMAIL, ana.email) in simulation.events[bens[0]].identifiers


def _perfect(simulation: Simulation, merge: tuple[int, int] | None = None) -> Observed:
    """What a flawless resolver would answer (optionally with two true persons merged into one)."""
    attributions = {}
    for index, (key, event) in enumerate(simulation.events.items()):
        person = event.person + 1000
        if merge and event.person == merge[1]:
            person = merge[0] + 1000
        attributions[key] = Attributed(id=index + 1, key=key, kind=event.name, person=person, reachable=True)
    persons = {}
    for person in simulation.persons:
        contacts = (("email", mask_email(person.email)),)
        attached = tuple(e.source_event_id for e in simulation.events.values()
                         if e.person == person.id and (EMAIL, person.email) in e.identifiers)
        persons[person.id + 1000] = PersonRecord(person=person.id + 1000, contacts=contacts, attached_by=attached)
    if merge:
        kept, gone = (persons[merge[0] + 1000], persons[merge[1] + 1000])
        persons[merge[0] + 1000] = PersonRecord(person=kept.person, contacts=kept.contacts + gone.contacts,
                                                attached_by=kept.attached_by + gone.attached_by)
    return Observed(acknowledged=frozenset(simulation.events), rejected={}, attributions=attributions,
                    persons=persons, status={}, seconds=0.0)


def _identified_store() -> Simulation:
    store = Store(start=DEFAULT_START, days=2, seed=8)
    ana = store.add_person(first="ana")
    ben = store.add_person(first="ben")
    ana_phone = store.add_browser(BrowserKind.ANDROID_CHROME, [ana.id])
    ana_laptop = store.add_browser(BrowserKind.DESKTOP_CHROME, [ana.id], blocked=True)
    ben_phone = store.add_browser(BrowserKind.IPHONE_SAFARI, [ben.id])
    start = DEFAULT_START + timedelta(hours=9)
    purchase = {"products": 1, "add_to_cart": True, "checkout": True, "contact": True, "purchase": True}
    _visit(store, ana, ana_laptop, start, products=2)
    _visit(store, ana, ana_laptop, start + timedelta(hours=1), **purchase)
    _visit(store, ana, ana_phone, start + timedelta(hours=2), products=3)
    _visit(store, ben, ben_phone, start + timedelta(hours=3), **purchase)
    return store.build()


def test_the_report_scores_a_flawless_resolver_perfectly() -> None:
    """Perfect attributions: every session the oracle allows is identified, precision 1, no wrong person."""
    simulation = _identified_store()
    report = build_report(simulation, _perfect(simulation))
    assert report.outcomes["correct"] == report.events == report.attributed
    assert report.pair_precision == 1.0
    assert report.wrong_person_rate == 0.0
    # Ana's phone session shares nothing deterministic with her laptop: not in the oracle, yet "identified".
    assert report.oracle_sessions == 3
    assert report.recall == 1.0
    assert report.klaviyo_sessions == 1  # Ben's phone, after he typed his email (the blocked laptop never)


def test_the_report_counts_a_wrong_merge_against_precision_and_as_wrong_person() -> None:
    """Merging Ben into Ana makes every reachable event of both `mixed` or wrong, and pairs across them wrong."""
    simulation = _identified_store()
    report = build_report(simulation, _perfect(simulation, merge=(0, 1)))
    assert report.pair_precision is not None
    assert report.pair_precision < 1.0
    assert report.merged_people == 1
    assert report.outcomes["mixed"] == report.events
    assert report.wrong_person_rate == 1.0
    assert report.recall == 0.0
    assert sum(report.outcomes.values()) == report.attributed
