"""Identity resolution on the in-memory reference graph: stitching, guards and their invariants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count

from hypothesis import given, settings
from hypothesis import strategies as st

from recapture.application.identity import IdentityResolver
from recapture.application.identity_memory import InMemoryIdentityGraph
from recapture.application.ports import PendingEvent
from recapture.domain.events import EventKind, Identifier, IdentifierType
from recapture.domain.identity.policy import DEFAULT_POLICY, IdentityPolicy
from recapture.domain.identity.resolver import ConflictKind

T = IdentifierType
SHOP = "demo-store.myshopify.com"
START = datetime(2026, 10, 5, 10, 0, tzinfo=UTC)
_ids = count(1)


def event(*identifiers: tuple[IdentifierType, str], at: datetime = START) -> PendingEvent:
    return PendingEvent(
        id=next(_ids), shop=SHOP, kind=EventKind.PAGE_VIEWED, occurred_at=at,
        identifiers=tuple(Identifier(type=t, value=v) for t, v in identifiers),
    )


class World:
    def __init__(self, policy: IdentityPolicy = DEFAULT_POLICY) -> None:
        self.graph = InMemoryIdentityGraph()
        self.resolver = IdentityResolver(self.graph, lambda _shop: policy)

    def see(self, *identifiers: tuple[IdentifierType, str], at: datetime = START):  # type: ignore[no-untyped-def]
        return self.resolver.resolve(event(*identifiers, at=at))

    def person_of(self, kind: IdentifierType, value: str) -> int | None:
        entry = self.graph.entries.get(self.graph.key(SHOP, Identifier(type=kind, value=value)))
        return entry.person if entry else None

    def values(self, person: int, kind: IdentifierType) -> set[str]:
        return {e.value for e in self.graph.members(person) if e.type is kind}


def test_anonymous_device_joins_the_person_who_types_an_email_on_it() -> None:
    """Browsing first, email at checkout later: the device's person becomes the identified person."""
    world = World()
    browse = world.see((T.CLIENT_ID, "device-1"))
    checkout = world.see((T.CLIENT_ID, "device-1"), (T.EMAIL, "ann@shop.test"), (T.CHECKOUT_TOKEN, "c1"))
    assert browse.person == checkout.person
    assert checkout.identified


def test_two_devices_with_the_same_email_become_one_person() -> None:
    """Phone and laptop are stitched through the email typed on both."""
    world = World()
    world.see((T.CLIENT_ID, "phone"), (T.EMAIL, "ann@shop.test"))
    world.see((T.CLIENT_ID, "laptop"))
    world.see((T.CLIENT_ID, "laptop"), (T.EMAIL, "ann@shop.test"))
    assert world.person_of(T.CLIENT_ID, "phone") == world.person_of(T.CLIENT_ID, "laptop")


def test_order_webhook_ties_order_checkout_cart_and_customer() -> None:
    """order ↔ checkout token ↔ cart token ↔ customer: the device that carried the cart is the buyer's."""
    world = World()
    world.see((T.CLIENT_ID, "d"), (T.CART_TOKEN, "cart-9"))
    world.see((T.ORDER_ID, "1001"), (T.CHECKOUT_TOKEN, "chk-9"), (T.CART_TOKEN, "cart-9"),
              (T.SHOPIFY_CUSTOMER_ID, "77"), (T.EMAIL, "bob@shop.test"))
    assert world.person_of(T.CLIENT_ID, "d") == world.person_of(T.SHOPIFY_CUSTOMER_ID, "77")


def test_shared_family_tablet_never_merges_two_people() -> None:
    """Mom then Dad check out on one tablet: two persons, a conflict kept; later anonymous visits belong to neither."""
    world = World()
    mom = world.see((T.CLIENT_ID, "tablet"), (T.EMAIL, "mom@family.test"))
    dad = world.see((T.CLIENT_ID, "tablet"), (T.EMAIL, "dad@family.test"), at=START + timedelta(days=1))
    assert mom.person != dad.person
    assert [c.kind for c in dad.conflicts] == [ConflictKind.DISTINCT_PERSONS]
    assert world.person_of(T.CLIENT_ID, "tablet") == dad.person
    assert world.values(mom.person, T.EMAIL) == {"mom@family.test"}  # type: ignore[arg-type]
    later = world.see((T.CLIENT_ID, "tablet"), at=START + timedelta(days=2))
    assert later.person not in (mom.person, dad.person)
    assert world.graph.entries[world.graph.key(SHOP, Identifier(type=T.CLIENT_ID, value="tablet"))].shared


def test_the_previous_users_klaviyo_cookie_never_names_the_typist() -> None:
    """Ben types his email under Ana's Klaviyo cookie: Ben's checkout is Ben's, and no person holds both emails."""
    world = World()
    ana = world.see((T.CLIENT_ID, "tablet"), (T.EMAIL, "ana@x.test"))
    ben = world.see((T.CLIENT_ID, "tablet"), (T.EMAIL, "ben@x.test"), (T.KLAVIYO_KNOWN_EMAIL, "ana@x.test"),
                    at=START + timedelta(days=1))
    assert ben.person != ana.person
    assert ben.identified
    assert world.values(ben.person, T.EMAIL) == {"ben@x.test"}  # type: ignore[arg-type]
    assert world.values(ana.person, T.EMAIL) == {"ana@x.test"}  # type: ignore[arg-type]


def test_klaviyo_cookie_email_links_an_unknown_device_to_its_person() -> None:
    """A new browser whose Klaviyo cookie names Ana (who bought before) is Ana's, as a hint, not a confirmation."""
    world = World()
    ana = world.see((T.CLIENT_ID, "laptop"), (T.EMAIL, "ana@x.test"))
    phone = world.see((T.CLIENT_ID, "phone"), (T.KLAVIYO_KNOWN_EMAIL, "ana@x.test"), at=START + timedelta(days=1))
    assert phone.person == ana.person
    assert not phone.identified


def test_a_second_customer_id_is_a_different_person() -> None:
    """At most one Shopify customer id per person: two accounts on one browser stay two persons."""
    world = World()
    first = world.see((T.CLIENT_ID, "office-pc"), (T.SHOPIFY_CUSTOMER_ID, "1"))
    second = world.see((T.CLIENT_ID, "office-pc"), (T.SHOPIFY_CUSTOMER_ID, "2"))
    assert first.person != second.person
    assert world.values(second.person, T.SHOPIFY_CUSTOMER_ID) == {"2"}  # type: ignore[arg-type]


def test_blocked_placeholder_email_never_links_devices() -> None:
    """Two strangers who both typed test@test.com are not joined."""
    world = World()
    a = world.see((T.CLIENT_ID, "a"), (T.EMAIL, "test@test.com"))
    b = world.see((T.CLIENT_ID, "b"), (T.EMAIL, "test@test.com"))
    assert a.person != b.person
    assert a.blocked == 1
    assert world.person_of(T.EMAIL, "test@test.com") is None


def test_shop_specific_blocked_values() -> None:
    """A shop's own support address is configured as blocked and never becomes an identifier."""
    world = World(IdentityPolicy(blocked_values=frozenset({"support@acme.test"})))
    a = world.see((T.CLIENT_ID, "a"), (T.EMAIL, "support@acme.test"))
    b = world.see((T.CLIENT_ID, "b"), (T.EMAIL, "support@acme.test"))
    assert a.person != b.person


def test_merge_cap_limits_persons_joined_by_one_event() -> None:
    """An event naming twelve separate devices joins at most `max_persons_per_merge` persons."""
    world = World(IdentityPolicy(max_persons_per_merge=4))
    for n in range(12):
        world.see((T.CART_TOKEN, f"cart-{n}"))
    joined = world.see(*[(T.CART_TOKEN, f"cart-{n}") for n in range(12)])
    assert sum(c.kind is ConflictKind.MERGE_CAP for c in joined.conflicts) == 8
    persons = {world.person_of(T.CART_TOKEN, f"cart-{n}") for n in range(12)}
    assert len(persons) == 9


def test_stale_links_outside_the_identity_window_are_not_used() -> None:
    """A device not seen for more than 400 days is matched as new, not joined to its old person."""
    world = World()
    old = world.see((T.CLIENT_ID, "d"), (T.EMAIL, "old@shop.test"))
    fresh = world.see((T.CLIENT_ID, "d"), (T.EMAIL, "new@shop.test"), at=START + timedelta(days=401))
    assert fresh.person != old.person
    assert not fresh.conflicts


def test_click_ids_link_only_within_the_click_window() -> None:
    """The same fbclid ten minutes apart links two browsers; two hours apart it does not."""
    world = World()
    a = world.see((T.CLIENT_ID, "in-app"), (T.CLICK_ID, "fbclid:XYZ"))
    b = world.see((T.CLIENT_ID, "safari"), (T.CLICK_ID, "fbclid:XYZ"), at=START + timedelta(minutes=10))
    c = world.see((T.CLIENT_ID, "chrome"), (T.CLICK_ID, "fbclid:XYZ"), at=START + timedelta(hours=3))
    assert a.person == b.person
    assert c.person != a.person


def test_type_limit_refuses_a_fourth_email_per_window() -> None:
    """At most three emails join one person per window; the fourth is refused and reported."""
    world = World()
    for n in range(3):
        world.see((T.CLIENT_ID, "d"), (T.CHECKOUT_TOKEN, f"c{n}"), (T.EMAIL, f"e{n}@x.test"), (T.EMAIL, "e0@x.test"))
    person = world.person_of(T.CLIENT_ID, "d")
    assert world.values(person, T.EMAIL) == {"e0@x.test", "e1@x.test", "e2@x.test"}  # type: ignore[arg-type]
    fourth = world.see((T.CLIENT_ID, "d"), (T.EMAIL, "e0@x.test"), (T.EMAIL, "e3@x.test"))
    assert [c.kind for c in fourth.conflicts] == [ConflictKind.TYPE_LIMIT]
    assert world.person_of(T.EMAIL, "e3@x.test") is None


def test_a_different_email_alone_on_a_known_device_is_someone_else() -> None:
    """Ann's device, later an unknown email typed without Ann's: a new person, not a second email of Ann."""
    world = World()
    ann = world.see((T.CLIENT_ID, "d"), (T.EMAIL, "ann@x.test"))
    other = world.see((T.CLIENT_ID, "d"), (T.EMAIL, "zoe@x.test"))
    assert other.person != ann.person


# --- properties ---------------------------------------------------------------------------------------------------

PEOPLE = 6


@st.composite
def journeys(draw):  # type: ignore[no-untyped-def]
    """Events of PEOPLE people, each event holding a subset of one person's own identifiers (no sharing)."""
    events = []
    for _ in range(draw(st.integers(min_value=1, max_value=40))):
        person = draw(st.integers(min_value=0, max_value=PEOPLE - 1))
        own = [(T.CLIENT_ID, f"dev-{person}-{draw(st.integers(0, 2))}"), (T.CART_TOKEN, f"cart-{person}"),
               (T.EMAIL, f"p{person}@shop.test"), (T.SHOPIFY_CUSTOMER_ID, f"{person}")]
        chosen = draw(st.lists(st.sampled_from(own), min_size=1, max_size=4, unique=True))
        events.append((person, tuple(chosen)))
    return events


def _partition(world: World) -> set[frozenset[str]]:
    groups: dict[int, set[str]] = {}
    for entry in world.graph.entries.values():
        groups.setdefault(entry.person, set()).add(f"{entry.type.value}:{entry.value}")
    return {frozenset(g) for g in groups.values()}


@settings(max_examples=150, deadline=None)
@given(journeys(), st.randoms(use_true_random=False))
def test_deterministic_stitching_does_not_depend_on_event_order(events, rnd) -> None:  # type: ignore[no-untyped-def]
    """Without conflicting evidence the final persons are the same whatever order events arrive in."""
    in_order, shuffled = World(), World()
    for _, ids in events:
        in_order.see(*ids)
    reordered = list(events)
    rnd.shuffle(reordered)
    for _, ids in reordered:
        shuffled.see(*ids)
    assert _partition(in_order) == _partition(shuffled)


@settings(max_examples=150, deadline=None)
@given(journeys())
def test_no_person_ever_mixes_two_people(events) -> None:  # type: ignore[no-untyped-def]
    """Every identifier in a person belongs to the same real shopper."""
    world = World()
    for _, ids in events:
        world.see(*ids)
    for group in _partition(world):
        owners = {value.split(":", 1)[1].split("-")[1] if value.startswith(("client_id", "cart_token")) else
                  value.split(":", 1)[1].lstrip("p").split("@")[0] for value in group}
        assert len(owners) == 1


@st.composite
def chaotic_events(draw):  # type: ignore[no-untyped-def]
    """Events that mix anybody's identifiers: shared devices, forwarded carts, typos, placeholders."""
    values = {
        T.CLIENT_ID: [f"d{n}" for n in range(5)], T.SHOPIFY_CUSTOMER_ID: ["1", "2", "3"],
        T.EMAIL: ["a@x.test", "b@x.test", "c@x.test", "test@test.com"], T.PHONE: ["+14155550101", "+14155550102"],
        T.CART_TOKEN: ["k1", "k2", "null"],
    }
    pairs = st.sampled_from([(t, v) for t, vs in values.items() for v in vs])
    return [(tuple(draw(st.lists(pairs, min_size=1, max_size=5, unique=True))), draw(st.integers(0, 60)))
            for _ in range(draw(st.integers(1, 30)))]


@settings(max_examples=200, deadline=None)
@given(chaotic_events())
def test_guards_hold_whatever_arrives(events) -> None:  # type: ignore[no-untyped-def]
    """No person holds two customer ids, more emails/phones than the limit, or a blocked value."""
    world = World()
    for ids, minutes in sorted(events, key=lambda e: e[1]):
        world.see(*ids, at=START + timedelta(minutes=minutes))
    for person in {e.person for e in world.graph.entries.values()}:
        assert len(world.values(person, T.SHOPIFY_CUSTOMER_ID)) <= 1
        assert len(world.values(person, T.EMAIL)) <= DEFAULT_POLICY.limit(T.EMAIL)
        assert len(world.values(person, T.PHONE)) <= DEFAULT_POLICY.limit(T.PHONE)
    linked = {e.value for e in world.graph.entries.values()}
    assert "test@test.com" not in linked
    assert "null" not in linked
