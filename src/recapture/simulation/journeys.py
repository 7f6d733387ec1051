"""Ground truth for the accuracy harness: shoppers, their browsers and visits, and every event the store receives.

`generate` draws a store's traffic from the rates in `parameters.py` with `random.Random(seed)`: the same seed,
size and start give the same shoppers, visits and request bodies. `Store` is the builder underneath; tests use it
directly to script a journey (a family tablet shared by two people, say).

Every generated event records the person who truly caused it, the identifiers the store receives with it, and
whose identity Klaviyo's cookie named on it; the report joins that truth to what recapture attributed.

Klaviyo's cookie (`__kla_id`, base64 JSON) is modelled per browser: it is identified once an email was typed there
or the shopper logged in (and Klaviyo's script is not blocked), or a Klaviyo email link (`?_kx=`) was opened
there. It lasts 2 years, but WebKit (Safari, iOS in-app browsers) caps it at 7 days from its last write, and at
24 hours when it was written on a visit that came from a decorated link. The pixel envelope carries it only when
Klaviyo's script runs in that browser.
"""

from __future__ import annotations

import base64
import json
import math
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from recapture.domain.events import IdentifierType
from recapture.simulation.parameters import DEFAULT_PARAMETERS, Parameters

PIXEL = "shopify_pixel"
WEBHOOK = "shopify_webhook"
DEFAULT_SHOP = "sim-store.myshopify.com"
DEFAULT_START = datetime(2026, 10, 5, tzinfo=UTC)

# Identifier types as the store receives them: the service's own names (the harness only compares them with each
# other; it never relies on how the service normalizes values).
EMAIL = IdentifierType.EMAIL.value
PHONE = IdentifierType.PHONE.value
CUSTOMER_ID = IdentifierType.SHOPIFY_CUSTOMER_ID.value
CLIENT_ID = IdentifierType.CLIENT_ID.value
CHECKOUT_TOKEN = IdentifierType.CHECKOUT_TOKEN.value
CART_TOKEN = IdentifierType.CART_TOKEN.value
ORDER_ID = IdentifierType.ORDER_ID.value
EXCHANGE_ID = IdentifierType.KLAVIYO_EXCHANGE_ID.value

Identifiers = tuple[tuple[str, str], ...]


class BrowserKind(StrEnum):
    DESKTOP_CHROME = "desktop_chrome"
    DESKTOP_SAFARI = "desktop_safari"
    DESKTOP_FIREFOX = "desktop_firefox"
    IPHONE_SAFARI = "iphone_safari"
    ANDROID_CHROME = "android_chrome"
    INSTAGRAM_IN_APP = "instagram_in_app"
    FACEBOOK_IN_APP = "facebook_in_app"
    TABLET_SAFARI = "tablet_safari"


class Source(StrEnum):
    """How a visit started."""

    DIRECT = "direct"
    EMAIL = "email"  # a Klaviyo email link: ?_kx=<exchange id>&utm_source=klaviyo
    SOCIAL = "social"  # an Instagram / Facebook ad: ?fbclid=...
    RECOVERY = "recovery"  # Shopify's abandoned-checkout link: straight back into the checkout


WEBKIT = frozenset({BrowserKind.DESKTOP_SAFARI, BrowserKind.IPHONE_SAFARI, BrowserKind.TABLET_SAFARI})
MOBILE = frozenset({
    BrowserKind.IPHONE_SAFARI, BrowserKind.ANDROID_CHROME, BrowserKind.INSTAGRAM_IN_APP, BrowserKind.FACEBOOK_IN_APP,
    BrowserKind.TABLET_SAFARI,
})
IN_APP = frozenset({BrowserKind.INSTAGRAM_IN_APP, BrowserKind.FACEBOOK_IN_APP})


@dataclass(frozen=True, slots=True, kw_only=True)
class Person:
    id: int
    email: str
    phone: str | None
    account_id: str | None  # a Shopify customer account: the shopper can log in
    exchange_id: str  # Klaviyo's exchange id of the shopper's profile (in its email links as `_kx`)
    known_to_klaviyo: bool  # before the window
    household: int
    office: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Browser:
    """One cookie jar: its own Shopify clientId and its own Klaviyo cookie."""

    client_id: str
    kind: BrowserKind
    device: str  # the physical device, e.g. "p3-phone" (an in-app browser lives on a phone)
    users: tuple[int, ...]
    user_agent: str
    screen: tuple[int, int]
    language: str
    klaviyo_blocked: bool
    consent_marketing: bool

    @property
    def webkit(self) -> bool:
        """Safari's cookie caps apply (Safari and every iOS web view)."""
        return self.kind in WEBKIT or (self.kind in IN_APP and "iPhone" in self.user_agent)

    @property
    def mobile(self) -> bool:
        return self.kind in MOBILE


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    id: int
    person: int
    client_id: str
    browser: BrowserKind
    source: Source
    start: datetime
    end: datetime
    ip: str
    network: str  # "home" (the household's own address), "office" or "carrier" (carrier-grade NAT)
    events: tuple[str, ...]  # keys of its pixel events


@dataclass(frozen=True, slots=True, kw_only=True)
class TrueEvent:
    key: str  # "<source>:<source_event_id>", as /admin/attributions names the event
    source: str
    source_event_id: str
    name: str  # the pixel event name or the webhook topic
    person: int  # who truly caused it
    session: int | None  # the visit it belongs to (a webhook: the visit that caused it)
    client_id: str | None
    at: datetime
    identifiers: Identifiers  # deterministic identifiers the store receives with it
    klaviyo_person: int | None  # whose identity Klaviyo's cookie named on this envelope (None: not identified)


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """One HTTP request: a pixel flush (one page's events) or one webhook."""

    at: datetime
    channel: str  # "pixel" | "webhook"
    events: tuple[str, ...]
    body: bytes
    topic: str | None = None
    webhook_id: str | None = None
    triggered_at: datetime | None = None
    ip: str | None = None
    user_agent: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Simulation:
    shop: str
    seed: int
    namespace: str
    start: datetime
    end: datetime
    parameters: Parameters
    persons: tuple[Person, ...]
    browsers: tuple[Browser, ...]
    sessions: tuple[Session, ...]
    events: Mapping[str, TrueEvent]
    deliveries: tuple[Delivery, ...]

    def owners(self) -> dict[tuple[str, str], int]:
        """Who each person-naming identifier value belongs to."""
        owned: dict[tuple[str, str], int] = {}
        for person in self.persons:
            owned[(EMAIL, person.email)] = person.id
            owned[(EXCHANGE_ID, person.exchange_id)] = person.id
            if person.phone:
                owned[(PHONE, person.phone)] = person.id
        for event in self.events.values():
            for kind, value in event.identifiers:
                if kind == CUSTOMER_ID:
                    # Customer ids are only ever sent for the person who holds the account.
                    owned.setdefault((kind, value), event.person)
        return owned


# -- realistic values ----------------------------------------------------------------------------------------------

FIRST_NAMES = (
    "olivia", "liam", "emma", "noah", "ava", "oliver", "sophia", "elijah", "isabella", "james", "mia", "william",
    "charlotte", "benjamin", "amelia", "lucas", "harper", "henry", "evelyn", "theodore", "abigail", "jack", "emily",
    "levi", "ella", "alexander", "scarlett", "mateo", "grace", "daniel", "chloe", "michael", "victoria", "mason",
    "riley", "sebastian", "aria", "ethan", "lily", "logan", "zoe", "owen", "nora", "samuel", "hannah", "jacob",
    "layla", "asher", "penelope", "aiden", "camila", "wyatt", "madison", "kai", "luna", "yusuf", "priya", "ines",
)
LAST_NAMES = (
    "smith", "johnson", "williams", "brown", "jones", "garcia", "miller", "davis", "rodriguez", "martinez",
    "hernandez", "lopez", "gonzalez", "wilson", "anderson", "thomas", "taylor", "moore", "jackson", "martin", "lee",
    "perez", "thompson", "white", "harris", "sanchez", "clark", "ramirez", "lewis", "robinson", "walker", "young",
    "allen", "king", "wright", "scott", "torres", "nguyen", "hill", "flores", "green", "adams", "nelson", "baker",
)
# Domains reserved for documentation (RFC 2606): valid syntax, never anyone's mailbox.
EMAIL_DOMAINS = ("example.com", "example.org", "example.net")
# 555-0100..0199 numbers are fictional in every US area code; libphonenumber accepts them as valid.
AREA_CODES = (
    "201", "202", "203", "205", "206", "207", "208", "209", "210", "212", "213", "214", "215", "216", "217", "218",
    "219", "224", "225", "228", "229", "231", "234", "239", "240", "248", "251", "252", "253", "254", "256", "260",
    "262", "267", "269", "270", "276", "281", "301", "302", "303", "304", "305", "307", "308", "309", "310", "312",
    "313", "314", "315", "316", "317", "318", "319", "320", "321", "323", "330", "334", "336", "337", "339", "347",
    "351", "352", "360", "361", "385", "386", "401", "402", "404", "405", "406", "407", "408", "409", "410", "412",
    "413", "414", "415", "417", "419", "423", "424", "425", "430", "432", "434", "435", "440", "443", "469", "470",
)
CATALOG = tuple(
    (str(8_100_000_000_000 + i), str(44_000_000_000_000 + i), title, handle, price)
    for i, (title, handle, price) in enumerate((
        ("Organic Tee", "organic-tee", 28.0), ("Linen Shirt", "linen-shirt", 64.0),
        ("Merino Sweater", "merino-sweater", 110.0), ("Canvas Tote", "canvas-tote", 35.0),
        ("Trail Sneakers", "trail-sneakers", 129.0), ("Wool Beanie", "wool-beanie", 24.0),
        ("Rain Jacket", "rain-jacket", 149.0), ("Denim Jeans", "denim-jeans", 89.0),
        ("Leather Belt", "leather-belt", 45.0), ("Cotton Socks (3 pack)", "cotton-socks", 18.0),
        ("Silk Scarf", "silk-scarf", 72.0), ("Travel Backpack", "travel-backpack", 135.0),
    ))
)
COLLECTIONS = ("New arrivals", "Best sellers", "Sale", "Outerwear", "Accessories")
ALPHANUMERIC = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
ULID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CARRIER_PREFIXES = ("172.56", "172.58", "166.205", "174.205", "107.77", "208.54")
BUSINESS_FIRST_OCTETS = (38, 63, 65, 204, 207, 209, 216)
ISP_FIRST_OCTETS = (24, 47, 50, 66, 67, 68, 69, 70, 71, 73, 75, 76, 96, 97, 98, 99, 104, 108, 173)
# Visits by hour of day (UTC is the store's time here): low at night, an evening peak. An assumption.
HOUR_WEIGHTS = (
    1.0, 0.6, 0.4, 0.3, 0.3, 0.4, 0.7, 1.1, 1.5, 1.8, 2.0, 2.0, 2.2, 2.0, 1.9, 1.9, 2.0, 2.2, 2.6, 3.0, 3.2, 3.0,
    2.4, 1.6,
)


def _user_agent(kind: BrowserKind, rng: random.Random) -> tuple[str, tuple[int, int]]:
    ios = rng.choice(("17_6", "18_0", "18_1", "18_2"))
    chrome = rng.choice(("128", "129", "130", "131"))
    android = rng.choice(("13", "14", "15"))
    phone = rng.choice((("iPhone15,2", (393, 852)), ("iPhone14,7", (390, 844)), ("iPhone16,2", (430, 932))))
    if kind is BrowserKind.DESKTOP_CHROME:
        system = rng.choice(("Windows NT 10.0; Win64; x64", "Macintosh; Intel Mac OS X 10_15_7"))
        screen = rng.choice(((1920, 1080), (1536, 864), (1440, 900), (2560, 1440)))
        return (f"Mozilla/5.0 ({system}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{chrome}.0.0.0 "
                "Safari/537.36", screen)
    if kind is BrowserKind.DESKTOP_SAFARI:
        version = rng.choice(("17.6", "18.0", "18.1"))
        return (f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                f"Version/{version} Safari/605.1.15", rng.choice(((1440, 900), (1512, 982), (1728, 1117))))
    if kind is BrowserKind.DESKTOP_FIREFOX:
        version = rng.choice(("130.0", "131.0", "132.0"))
        return (f"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{version}) Gecko/20100101 Firefox/{version}",
                rng.choice(((1920, 1080), (1366, 768))))
    if kind is BrowserKind.IPHONE_SAFARI:
        return (f"Mozilla/5.0 (iPhone; CPU iPhone OS {ios} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                f"Version/{ios.replace('_', '.')} Mobile/15E148 Safari/604.1", phone[1])
    if kind is BrowserKind.TABLET_SAFARI:
        return (f"Mozilla/5.0 (iPad; CPU OS {ios} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                f"Version/{ios.replace('_', '.')} Mobile/15E148 Safari/604.1", (820, 1180))
    android_ua = (f"Mozilla/5.0 (Linux; Android {android}; K) AppleWebKit/537.36 (KHTML, like Gecko) "
                  f"Chrome/{chrome}.0.0.0 Mobile Safari/537.36")
    if kind is BrowserKind.ANDROID_CHROME:
        return android_ua, rng.choice(((412, 915), (384, 854), (360, 800)))
    raise ValueError(f"in-app browsers take the phone's user agent: {kind}")


def _in_app_user_agent(kind: BrowserKind, phone_agent: str, rng: random.Random) -> str:
    if "iPhone" in phone_agent:
        base = phone_agent.split(" Version/")[0] + " Mobile/22A3354"
        if kind is BrowserKind.INSTAGRAM_IN_APP:
            return base + (" Instagram 350.0.0.24.84 (iPhone15,2; iOS 18_0; en_US; en; scale=3.00; 1179x2556; "
                           "640154364)")
        return base + (" [FBAN/FBIOS;FBAV/483.0.0.48.102;FBBV/659349370;FBDV/iPhone15,2;FBMD/iPhone;FBSN/iOS;"
                       "FBSV/18.0;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5]")
    base = phone_agent.replace("; K)", "; Pixel 8 Build/AP2A.240805.005; wv)").replace(
        "(KHTML, like Gecko) Chrome", "(KHTML, like Gecko) Version/4.0 Chrome")
    if kind is BrowserKind.INSTAGRAM_IN_APP:
        return base + (" Instagram 350.0.0.41.93 Android (34/14; 420dpi; 1080x2400; Google/google; Pixel 8; shiba; "
                       "en_US; 640154364)")
    return base + f" [FB_IAB/FB4A;FBAV/{rng.choice(('482', '483'))}.0.0.51.81;]"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _money(amount: float) -> dict[str, Any]:
    return {"amount": round(amount, 2), "currencyCode": "USD"}


def _variant(product: tuple[str, str, str, str, float]) -> dict[str, Any]:
    product_id, variant_id, title, handle, price = product
    return {
        "id": variant_id, "title": "Default Title", "sku": handle.upper()[:12], "price": _money(price),
        "image": {"src": f"//cdn.shopify.com/s/files/1/{handle}.jpg"},
        "product": {"id": product_id, "title": title, "url": f"/products/{handle}", "vendor": "Sim Goods",
                    "type": "Apparel"},
    }


@dataclass(slots=True)
class _Jar:
    """The mutable state of one browser while the store's history is written."""

    cookie: dict[str, str]
    owner: int | None = None  # whose identity the cookie names (None: anonymous Klaviyo visitor)
    expires: datetime | None = None
    cart_token: str | None = None
    cart_key: str | None = None
    cart_lines: list[tuple[tuple[str, str, str, str, float], int]] = field(default_factory=list)

    def identified(self) -> bool:
        return "$email" in self.cookie or "$exchange_id" in self.cookie


@dataclass(slots=True)
class _Checkout:
    token: str
    cart_token: str
    cart_key: str
    lines: list[tuple[tuple[str, str, str, str, float], int]]
    email: str | None = None
    phone: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class VisitPlan:
    """What one visit does; `Store.visit` turns it into events."""

    source: Source = Source.DIRECT
    logged_in: bool = False
    collection: bool = False
    products: int = 1
    add_to_cart: bool = False
    view_cart: bool = False
    checkout: bool = False
    contact: bool = False
    give_phone: bool = False
    purchase: bool = False
    ip: str | None = None
    network: str = "home"


class Store:
    """Writes a store's history in time order: visits change browsers' cookies and carts as they happen."""

    def __init__(
        self, *, shop: str = DEFAULT_SHOP, start: datetime = DEFAULT_START, days: float = 7, seed: int = 1,
        namespace: str | None = None, parameters: Parameters = DEFAULT_PARAMETERS,
    ) -> None:
        self.shop = shop
        self.start = start
        self.end = start + timedelta(days=days)
        self.seed = seed
        self.namespace = namespace or f"s{seed}"
        self.parameters = parameters
        # Ids and payload details come from their own stream, so that scripted journeys stay deterministic too.
        self._rng = random.Random(f"{seed}/{self.namespace}/details")  # noqa: S311 - simulated data, not secrets
        self._persons: list[Person] = []
        self._browsers: dict[str, Browser] = {}
        self._jars: dict[str, _Jar] = {}
        self._sessions: list[Session] = []
        self._events: dict[str, TrueEvent] = {}
        self._deliveries: list[Delivery] = []
        self._known_since: dict[int, datetime] = {}
        self._customer_ids: dict[int, str] = {}
        self._abandoned: dict[int, _Checkout] = {}
        self._homes: dict[int, str] = {}
        self._offices: dict[int, str] = {}
        self._carrier_ips: list[str] = []
        self._prefixes: set[str] = set()
        self._counter = 0
        self._last_visit = start - timedelta(days=365)

    # -- people, devices, networks ----------------------------------------------------------------------------

    def _next(self) -> int:
        self._counter += 1
        return self._counter

    def _token(self, length: int, alphabet: str = "0123456789abcdef") -> str:
        return "".join(self._rng.choice(alphabet) for _ in range(length))

    def add_person(
        self, *, known_to_klaviyo: bool = False, account: bool = False, phone: bool = False,
        household: int | None = None, office: int | None = None, first: str | None = None,
        avoid_initial: str | None = None,
    ) -> Person:
        pid = len(self._persons)
        names = [n for n in FIRST_NAMES if n[0] != avoid_initial]
        first = first or names[self._rng.randrange(len(names))]
        last = LAST_NAMES[self._rng.randrange(len(LAST_NAMES))]
        domain = EMAIL_DOMAINS[self._rng.randrange(len(EMAIL_DOMAINS))]
        offset = sum(map(ord, self.namespace)) * 37
        number = None
        if phone:
            slot = (pid + offset) % (100 * len(AREA_CODES))
            number = f"+1{AREA_CODES[slot // 100]}55501{slot % 100:02d}"
        person = Person(
            id=pid, email=f"{first}.{last}.{pid}{self.namespace}@{domain}", phone=number,
            account_id=str(7_000_000_000_000 + self._rng.randrange(10**12)) if account else None,
            exchange_id=f"{self._token(26, ULID_ALPHABET)}.{self._token(6, 'abcdefghijkmnpqrstuvwxyz')}",
            known_to_klaviyo=known_to_klaviyo, household=pid if household is None else household, office=office,
        )
        self._persons.append(person)
        if person.account_id:
            self._customer_ids[pid] = person.account_id
        if known_to_klaviyo:
            self._known_since[pid] = self.start - timedelta(days=365)
        return person

    def add_browser(
        self, kind: BrowserKind, users: Sequence[int], *, device: str | None = None, blocked: bool = False,
        phone: Browser | None = None,
    ) -> Browser:
        """A browser (cookie jar); an in-app browser lives on `phone` and shares its screen and language."""
        language = self._rng.choice(("en-US", "en-US", "en-US", "es-US", "en-GB"))
        if kind in IN_APP:
            if phone is None:
                raise ValueError("an in-app browser lives on a phone: pass the phone's own browser")
            agent = _in_app_user_agent(kind, phone.user_agent, self._rng)
            screen, language, device = phone.screen, phone.language, phone.device
        else:
            agent, screen = _user_agent(kind, self._rng)
        browser = Browser(
            client_id=str(uuid.UUID(int=self._rng.getrandbits(128), version=4)), kind=kind,
            device=device or f"p{users[0]}-{kind.value}", users=tuple(users), user_agent=agent, screen=screen,
            language=language, klaviyo_blocked=blocked,
            consent_marketing=self._rng.random() < self.parameters.marketing_consent_share,
        )
        self._browsers[browser.client_id] = browser
        self._jars[browser.client_id] = _Jar(cookie={"cid": self._token(22, "abcdefghijklmnopqrstuvwxyz0123456789")})
        return browser

    def prime_klaviyo_cookie(self, browser: Browser, person: Person, identified_at: datetime) -> bool:
        """Klaviyo identified this browser before the window; the cookie survives only if its cap allows."""
        lifetime = (timedelta(days=self.parameters.safari_cookie_cap_days) if browser.webkit
                    else timedelta(days=self.parameters.klaviyo_cookie_days))
        if identified_at + lifetime <= self.start:
            return False
        jar = self._jars[browser.client_id]
        jar.cookie |= {"$email": person.email, "$exchange_id": person.exchange_id}
        jar.owner, jar.expires = person.id, identified_at + lifetime
        return True

    def _new_address(self, first_octets: tuple[int, ...]) -> str:
        """A public address in a /24 no other household or office uses."""
        for _ in range(10_000):
            first = first_octets[self._rng.randrange(len(first_octets))]
            prefix = f"{first}.{self._rng.randrange(1, 255)}.{self._rng.randrange(256)}"
            if prefix not in self._prefixes:
                self._prefixes.add(prefix)
                return f"{prefix}.{self._rng.randrange(2, 254)}"
        raise RuntimeError("no free /24 left for a new network")

    def home_ip(self, household: int) -> str:
        if household not in self._homes:
            self._homes[household] = self._new_address(ISP_FIRST_OCTETS)
        return self._homes[household]

    def office_ip(self, office: int) -> str:
        if office not in self._offices:
            self._offices[office] = self._new_address(BUSINESS_FIRST_OCTETS)
        return self._offices[office]

    def carrier_ip(self, pool_size: int) -> str:
        while len(self._carrier_ips) < max(1, pool_size):
            prefix = CARRIER_PREFIXES[self._rng.randrange(len(CARRIER_PREFIXES))]
            self._carrier_ips.append(f"{prefix}.{self._rng.randrange(256)}.{self._rng.randrange(1, 255)}")
        return self._carrier_ips[self._rng.randrange(len(self._carrier_ips))]

    # -- state the random generator asks about --------------------------------------------------------------------

    def known_to_klaviyo(self, person: int, at: datetime) -> bool:
        since = self._known_since.get(person)
        return since is not None and since <= at

    def abandoned_checkout(self, person: int) -> bool:
        return person in self._abandoned

    def browser(self, client_id: str) -> Browser:
        return self._browsers[client_id]

    # -- a visit ----------------------------------------------------------------------------------------------

    def visit(self, person: Person, browser: Browser, at: datetime, plan: VisitPlan) -> Session:
        """One visit: its pixel events (one flush per page) and the webhooks Shopify sends for it."""
        if at < self._last_visit:
            raise ValueError("visits must be written in time order (browsers' cookies and carts depend on it)")
        if person.id not in browser.users:
            raise ValueError(f"person {person.id} does not use browser {browser.client_id}")
        self._last_visit = at
        jar = self._jars[browser.client_id]
        if jar.expires is not None and jar.expires <= at:
            jar.cookie = {"cid": jar.cookie["cid"]}
            jar.owner = jar.expires = None
        session_id = len(self._sessions)
        ip = plan.ip or self.home_ip(person.household)
        writer = _VisitWriter(self, person, browser, jar, session_id, at, ip, plan)
        writer.write()
        session = Session(
            id=session_id, person=person.id, client_id=browser.client_id, browser=browser.kind, source=plan.source,
            start=at, end=writer.cursor, ip=ip, network=plan.network if plan.ip else "home",
            events=tuple(writer.pixel_keys),
        )
        self._sessions.append(session)
        return session

    def build(self) -> Simulation:
        return Simulation(
            shop=self.shop, seed=self.seed, namespace=self.namespace, start=self.start, end=self.end,
            parameters=self.parameters, persons=tuple(self._persons), browsers=tuple(self._browsers.values()),
            sessions=tuple(self._sessions), events=dict(self._events),
            deliveries=tuple(sorted(self._deliveries, key=lambda d: d.at)),
        )


class _VisitWriter:
    """Turns one VisitPlan into pixel pages and webhooks, updating the browser's cookie and cart."""

    def __init__(self, store: Store, person: Person, browser: Browser, jar: _Jar, session: int, at: datetime,
                 ip: str, plan: VisitPlan) -> None:
        self.store, self.person, self.browser, self.jar = store, person, browser, jar
        self.session, self.cursor, self.ip, self.plan = session, at, ip, plan
        self.rng = store._rng
        self.pixel_keys: list[str] = []
        self.seq = 0
        self.decorated = plan.source in (Source.EMAIL, Source.SOCIAL)
        self.runs_klaviyo = not browser.klaviyo_blocked
        self.origin = f"https://{store.shop}"

    # -- the visit's script ------------------------------------------------------------------------------------

    def write(self) -> None:
        plan, store = self.plan, self.store
        if plan.source is Source.RECOVERY and self.person.id in store._abandoned:
            self._recover(store._abandoned.pop(self.person.id))
            self._refresh_cookie()
            return
        products = [CATALOG[self.rng.randrange(len(CATALOG))] for _ in range(max(plan.products, 0))]
        query = self._landing_query()
        if plan.source in (Source.EMAIL, Source.SOCIAL) and products:
            self._product_page(products.pop(0), query)
        else:
            self._page("/", "Sim Goods", [], query)
        if plan.source is Source.EMAIL:
            self._identify_klaviyo({"$exchange_id": self.person.exchange_id})
        if plan.logged_in:
            self._identify_klaviyo({"$email": self.person.email, "$exchange_id": self.person.exchange_id})
        if plan.collection:
            title = COLLECTIONS[self.rng.randrange(len(COLLECTIONS))]
            self._page(f"/collections/{title.lower().replace(' ', '-')}", title,
                       [("collection_viewed", {"collection": {"id": str(400_000 + len(title)), "title": title}})], "")
        for product in products:
            self._product_page(product, "")
        viewed = products[-1] if products else None
        if not (plan.add_to_cart and viewed):
            self._refresh_cookie()
            return
        self._add_to_cart(viewed)
        if plan.view_cart:
            self._cart_page()
        if plan.checkout:
            checkout = self._start_checkout()
            if plan.contact:
                self._contact(checkout)
                if plan.purchase:
                    self._purchase(checkout)
                else:
                    store._abandoned[self.person.id] = checkout
        self._refresh_cookie()

    def _recover(self, checkout: _Checkout) -> None:
        """Shopify's recovery link reopens the checkout (same tokens) on whichever device the email was read."""
        jar = self.jar
        jar.cart_token, jar.cart_key, jar.cart_lines = checkout.cart_token, checkout.cart_key, list(checkout.lines)
        self._checkout_event("checkout_started", checkout, f"/checkouts/cn/{checkout.cart_token}/information",
                             f"?key={checkout.cart_key}&utm_source=shopify&utm_medium=email")
        if self.plan.purchase:
            self._purchase(checkout)
        else:
            self.store._abandoned[self.person.id] = checkout

    def _landing_query(self) -> str:
        source = self.plan.source
        if source is Source.EMAIL:
            campaign = self.rng.choice(("browse_abandon", "weekly_newsletter", "new_arrivals", "cart_abandon"))
            return f"?_kx={self.person.exchange_id}&utm_source=klaviyo&utm_medium=email&utm_campaign={campaign}"
        if source is Source.SOCIAL:
            network = "ig" if self.browser.kind is BrowserKind.INSTAGRAM_IN_APP else "fb"
            return (f"?utm_source={network}&utm_medium=paid&utm_campaign=fall_sale"
                    f"&fbclid=IwAR{self.store._token(40, ALPHANUMERIC)}")
        return ""

    def _product_page(self, product: tuple[str, str, str, str, float], query: str) -> None:
        self._page(f"/products/{product[3]}", product[2], [("product_viewed", {"productVariant": _variant(product)})],
                   query)

    def _add_to_cart(self, product: tuple[str, str, str, str, float]) -> None:
        jar = self.jar
        if jar.cart_token is None:
            jar.cart_token = self.store._token(26, ALPHANUMERIC)
            jar.cart_key = self.store._token(32)
            jar.cart_lines = []
        quantity = 1 + (self.rng.random() < self.store.parameters.double_quantity_share)
        jar.cart_lines.append((product, quantity))
        line = {"cost": {"totalAmount": _money(product[4] * quantity)}, "merchandise": _variant(product),
                "quantity": quantity}
        self._events_at(f"/products/{product[3]}", product[2], [("product_added_to_cart", {"cartLine": line})],
                        "", delay=(5, 40))

    def _cart_page(self) -> None:
        jar = self.jar
        lines = [{"quantity": q, "merchandise": _variant(p), "cost": {"totalAmount": _money(p[4] * q)}}
                 for p, q in jar.cart_lines]
        cart = {"id": f"gid://shopify/Cart/{jar.cart_token}?key={jar.cart_key}", "lines": lines,
                "cost": {"totalAmount": _money(sum(p[4] * q for p, q in jar.cart_lines))},
                "totalQuantity": sum(q for _, q in jar.cart_lines)}
        self._page("/cart", "Your cart", [("cart_viewed", {"cart": cart})], "")

    def _start_checkout(self) -> _Checkout:
        jar = self.jar
        assert jar.cart_token is not None
        assert jar.cart_key is not None
        checkout = _Checkout(token=self.store._token(32), cart_token=jar.cart_token, cart_key=jar.cart_key,
                             lines=list(jar.cart_lines))
        if self.plan.logged_in:
            checkout.email, checkout.phone = self.person.email, self.person.phone
        self._checkout_event("checkout_started", checkout, f"/checkouts/cn/{checkout.cart_token}/information", "")
        self._webhook("checkouts/create", self._checkout_resource(checkout))
        return checkout

    def _contact(self, checkout: _Checkout) -> None:
        checkout.email = self.person.email
        if self.plan.give_phone and self.person.phone:
            checkout.phone = self.person.phone
        self._checkout_event("checkout_contact_info_submitted", checkout,
                             f"/checkouts/cn/{checkout.cart_token}/information", "")
        self.store._known_since.setdefault(self.person.id, self.cursor)
        self._identify_klaviyo({"$email": self.person.email, "$exchange_id": self.person.exchange_id})
        self._webhook("checkouts/update", self._checkout_resource(checkout))
        for name, step in (("checkout_address_info_submitted", "shipping"),
                           ("checkout_shipping_info_submitted", "payment"), ("payment_info_submitted", "payment")):
            if self.rng.random() < self.store.parameters.checkout_step_rate:
                self._checkout_event(name, checkout, f"/checkouts/cn/{checkout.cart_token}/{step}", "")

    def _purchase(self, checkout: _Checkout) -> None:
        store, person = self.store, self.person
        customer_id = store._customer_ids.setdefault(person.id, str(6_000_000_000_000 + store._rng.randrange(10**12)))
        order_id = str(5_000_000_000_000 + store._rng.randrange(10**12))
        checkout.email = checkout.email or person.email
        self._checkout_event("checkout_completed", checkout, f"/checkouts/cn/{checkout.cart_token}/thank-you", "",
                             order={"id": f"gid://shopify/Order/{order_id}",
                                    "customer": {"id": f"gid://shopify/Customer/{customer_id}"}})
        resource = self._checkout_resource(checkout) | {
            "id": int(order_id), "name": f"#{1000 + store._counter}", "checkout_token": checkout.token,
            "cart_token": checkout.cart_token, "financial_status": "paid",
            "customer": {"id": int(customer_id), "email": person.email, "phone": checkout.phone,
                         "first_name": person.email.split(".")[0].title()},
            "client_details": {"browser_ip": self.ip, "user_agent": self.browser.user_agent,
                               "accept_language": self.browser.language},
        }
        del resource["token"]
        self._webhook("orders/create", resource)
        store._known_since.setdefault(person.id, self.cursor)
        self.jar.cart_token = self.jar.cart_key = None
        self.jar.cart_lines = []

    # -- Klaviyo's cookie ------------------------------------------------------------------------------------------

    def _identify_klaviyo(self, fields: dict[str, str]) -> None:
        """Klaviyo's script identifies the browser (from the next page on); nothing happens when it is blocked."""
        if not self.runs_klaviyo:
            return
        jar = self.jar
        if jar.owner is not None and jar.owner != self.person.id:
            jar.cookie = {"cid": jar.cookie["cid"]}  # someone else's identity is replaced, not mixed
        jar.cookie |= fields
        jar.owner = self.person.id
        self._refresh_cookie()

    def _refresh_cookie(self) -> None:
        """Each page load rewrites the cookie; WebKit restarts its cap from the write."""
        jar, parameters = self.jar, self.store.parameters
        if not self.runs_klaviyo or not jar.identified():
            return
        if not self.browser.webkit:
            lifetime = timedelta(days=parameters.klaviyo_cookie_days)
        elif self.decorated:
            lifetime = timedelta(hours=parameters.safari_link_cookie_cap_hours)
        else:
            lifetime = timedelta(days=parameters.safari_cookie_cap_days)
        jar.expires = self.cursor + lifetime

    def _cookie_now(self) -> tuple[dict[str, str], int | None]:
        jar = self.jar
        if not self.runs_klaviyo:
            return {}, None
        if jar.expires is not None and jar.expires <= self.cursor:
            jar.cookie = {"cid": jar.cookie["cid"]}
            jar.owner = jar.expires = None
        raw = base64.b64encode(json.dumps(jar.cookie, separators=(",", ":")).encode()).decode()
        return {"__kla_id": raw}, (jar.owner if jar.identified() else None)

    # -- pixel events ------------------------------------------------------------------------------------------

    def _page(self, path: str, title: str, extra: list[tuple[str, dict[str, Any]]], query: str) -> None:
        self._events_at(path, title, [("page_viewed", {}), *extra], query, delay=(15, 150))

    def _checkout_event(self, name: str, checkout: _Checkout, path: str, query: str,
                        order: dict[str, Any] | None = None) -> None:
        lines = [{"id": f"gid://shopify/CheckoutLineItem/{p[1]}", "quantity": q, "title": p[2], "variant": _variant(p)}
                 for p, q in checkout.lines]
        total = sum(p[4] * q for p, q in checkout.lines)
        data = {"checkout": {
            "token": checkout.token, "email": checkout.email, "phone": checkout.phone, "currencyCode": "USD",
            "subtotalPrice": _money(total), "totalPrice": _money(total + 6.0), "lineItems": lines,
            "discountApplications": [], "order": order,
        }}
        self._events_at(path, "Checkout", [(name, data)], query, delay=(20, 120))

    def _events_at(self, path: str, title: str, events: list[tuple[str, dict[str, Any]]], query: str,
                   delay: tuple[float, float]) -> None:
        if self.pixel_keys:
            self.cursor += timedelta(seconds=self.rng.uniform(*delay))
        href = f"{self.origin}{path}{query}"
        cookies, klaviyo_person = self._cookie_now()
        customer = None
        if self.plan.logged_in:
            customer = {"id": self.store._customer_ids[self.person.id], "email": self.person.email,
                        "phone": self.person.phone, "firstName": self.person.email.split(".")[0].title()}
        envelopes: list[dict[str, Any]] = []
        keys: list[str] = []
        for index, (name, data) in enumerate(events):
            self.seq += 1
            event_id = f"sh-{self.store.namespace}-{self.store._next():07d}"
            at = self.cursor + timedelta(milliseconds=7 * index)
            event = {
                "id": event_id, "name": name, "timestamp": _iso(at), "clientId": self.browser.client_id,
                "seq": self.seq, "type": "standard",
                "context": {
                    "document": {"location": {"href": href, "origin": self.origin, "pathname": path, "search": query},
                                 "referrer": "", "title": title, "characterSet": "UTF-8"},
                    "navigator": {"userAgent": self.browser.user_agent, "language": self.browser.language,
                                  "cookieEnabled": True},
                    "window": {"screen": {"width": self.browser.screen[0], "height": self.browser.screen[1]},
                               "innerWidth": self.browser.screen[0], "innerHeight": self.browser.screen[1] - 120},
                },
                "data": data,
            }
            envelopes.append({
                "shop": self.store.shop, "event": event, "customer": customer,
                "consent": {"analyticsProcessingAllowed": True, "marketingAllowed": self.browser.consent_marketing,
                            "preferencesProcessingAllowed": True, "saleOfDataAllowed": False},
                "cookies": cookies,
            })
            key = f"{PIXEL}:{event_id}"
            keys.append(key)
            self.store._events[key] = TrueEvent(
                key=key, source=PIXEL, source_event_id=event_id, name=name, person=self.person.id,
                session=self.session, client_id=self.browser.client_id, at=at,
                identifiers=self._pixel_identifiers(href, data, customer, klaviyo_person),
                klaviyo_person=klaviyo_person,
            )
        self.pixel_keys += keys
        body = envelopes[0] if len(envelopes) == 1 else {"batch": envelopes}
        sent = self.cursor + timedelta(milliseconds=250 + self.rng.uniform(0, 600))
        self.store._deliveries.append(Delivery(
            at=sent, channel="pixel", events=tuple(keys), body=json.dumps(body, separators=(",", ":")).encode(),
            ip=self.ip, user_agent=self.browser.user_agent,
        ))

    def _pixel_identifiers(self, href: str, data: Mapping[str, Any], customer: Mapping[str, Any] | None,
                           klaviyo_person: int | None) -> Identifiers:
        found: list[tuple[str, str]] = [(CLIENT_ID, self.browser.client_id)]
        if customer:
            found += [(CUSTOMER_ID, str(customer["id"])), (EMAIL, str(customer["email"]))]
            if customer.get("phone"):
                found.append((PHONE, str(customer["phone"])))
        checkout = data.get("checkout")
        if isinstance(checkout, Mapping):
            found.append((CHECKOUT_TOKEN, str(checkout["token"])))
            if checkout.get("email"):
                found.append((EMAIL, str(checkout["email"])))
            if checkout.get("phone"):
                found.append((PHONE, str(checkout["phone"])))
            order = checkout.get("order")
            if isinstance(order, Mapping):
                found.append((ORDER_ID, str(order["id"]).rsplit("/", 1)[-1]))
                found.append((CUSTOMER_ID, str(order["customer"]["id"]).rsplit("/", 1)[-1]))
        if "/checkouts/cn/" in href:
            found.append((CART_TOKEN, href.split("/checkouts/cn/", 1)[1].split("/", 1)[0]))
        cart = data.get("cart")
        if isinstance(cart, Mapping):
            found.append((CART_TOKEN, str(cart["id"]).rsplit("/", 1)[-1].split("?", 1)[0]))
        if "_kx=" in href:
            found.append((EXCHANGE_ID, href.split("_kx=", 1)[1].split("&", 1)[0]))
        if klaviyo_person is not None:
            cookie = self.jar.cookie
            if "$exchange_id" in cookie:
                found.append((EXCHANGE_ID, cookie["$exchange_id"]))
            if "$email" in cookie:
                found.append((EMAIL, cookie["$email"]))
        return tuple(dict.fromkeys(found))

    # -- webhooks ----------------------------------------------------------------------------------------------

    def _checkout_resource(self, checkout: _Checkout) -> dict[str, Any]:
        total = sum(p[4] * q for p, q in checkout.lines)
        resource: dict[str, Any] = {
            "id": int(checkout.token[:12], 16) % 10**13, "token": checkout.token, "cart_token": checkout.cart_token,
            "email": checkout.email, "phone": checkout.phone, "currency": "USD", "presentment_currency": "USD",
            "created_at": _iso(self.cursor), "updated_at": _iso(self.cursor),
            "subtotal_price": f"{total:.2f}", "total_price": f"{total + 6.0:.2f}",
            "line_items": [{"product_id": int(p[0]), "variant_id": int(p[1]), "title": p[2], "quantity": q,
                            "price": f"{p[4]:.2f}", "sku": p[3].upper()[:12]} for p, q in checkout.lines],
            "abandoned_checkout_url": (f"{self.origin}/checkouts/cn/{checkout.cart_token}/recover"
                                       f"?key={checkout.cart_key}"),
            "buyer_accepts_marketing": self.browser.consent_marketing,
        }
        if self.plan.logged_in:
            resource["customer"] = {"id": int(self.store._customer_ids[self.person.id]), "email": self.person.email}
        return resource

    def _webhook(self, topic: str, resource: dict[str, Any]) -> None:
        store = self.store
        webhook_id = f"{store.namespace}-wh-{store._next():07d}"
        triggered = self.cursor + timedelta(seconds=self.rng.uniform(1, 8))
        key = f"{WEBHOOK}:{webhook_id}"
        found: list[tuple[str, str]] = []
        customer = resource.get("customer")
        if isinstance(customer, Mapping):
            found.append((CUSTOMER_ID, str(customer["id"])))
            if customer.get("email"):
                found.append((EMAIL, str(customer["email"])))
            if customer.get("phone"):
                found.append((PHONE, str(customer["phone"])))
        if resource.get("email"):
            found.append((EMAIL, str(resource["email"])))
        if resource.get("phone"):
            found.append((PHONE, str(resource["phone"])))
        found.append((CHECKOUT_TOKEN, str(resource.get("checkout_token") or resource.get("token"))))
        found.append((CART_TOKEN, str(resource["cart_token"])))
        if topic.startswith("orders/"):
            found.append((ORDER_ID, str(resource["id"])))
        store._events[key] = TrueEvent(
            key=key, source=WEBHOOK, source_event_id=webhook_id, name=topic, person=self.person.id,
            session=self.session, client_id=None, at=triggered, identifiers=tuple(dict.fromkeys(found)),
            klaviyo_person=None,
        )
        store._deliveries.append(Delivery(
            at=triggered + timedelta(seconds=self.rng.uniform(0.5, 12)), channel="webhook", events=(key,),
            body=json.dumps(resource, separators=(",", ":")).encode(), topic=topic, webhook_id=webhook_id,
            triggered_at=triggered,
        ))


# -- the random store --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Shopper:
    person: Person
    main: list[Browser]  # the default browser of each of the shopper's own devices (phone first if any)
    phone: Browser | None = None
    in_app: dict[BrowserKind, Browser] = field(default_factory=dict)
    tablet: Browser | None = None


def _visit_times(rng: random.Random, start: datetime, end: datetime, parameters: Parameters) -> list[datetime]:
    days = (end - start).total_seconds() / 86400

    def at_day(day: float) -> datetime:
        hour = rng.choices(range(24), weights=HOUR_WEIGHTS)[0]
        moment = start + timedelta(days=math.floor(day), hours=hour, seconds=rng.uniform(0, 3600))
        return moment if moment < end else end - timedelta(seconds=rng.uniform(60, 3600))

    times = [at_day(rng.uniform(0, days))]
    while len(times) < parameters.max_visits_per_shopper and rng.random() < parameters.repeat_visit_rate:
        later = times[-1] + timedelta(days=rng.expovariate(1 / parameters.mean_days_between_visits))
        if later >= end:
            break
        later_day = (later - start).total_seconds() / 86400
        moment = at_day(later_day)
        times.append(max(moment, times[-1] + timedelta(minutes=30)))
        if times[-1] >= end:
            times.pop()
            break
    return times


def generate(
    *, seed: int = 1, visitors: int = 300, days: float = 7, start: datetime = DEFAULT_START,
    shop: str = DEFAULT_SHOP, namespace: str | None = None, parameters: Parameters = DEFAULT_PARAMETERS,
) -> Simulation:
    """A store's traffic over `days` days from `visitors` shoppers; the same arguments give the same traffic."""
    rng = random.Random(seed)  # noqa: S311 - simulated traffic, not secrets
    p = parameters
    store = Store(shop=shop, start=start, days=days, seed=seed, namespace=namespace, parameters=p)
    offices = max(1, round(visitors * p.office_worker_share / max(p.shoppers_per_office, 1)))
    carrier_pool = max(1, visitors // max(p.shoppers_per_carrier_ip, 1))

    shoppers: list[_Shopper] = []
    paired_with: dict[int, int] = {}
    for pid in range(visitors):
        household = pid
        avoid = None
        if pid > 0 and pid - 1 not in paired_with and rng.random() < p.household_pair_share:
            household = shoppers[pid - 1].person.household
            paired_with[pid - 1], paired_with[pid] = pid, pid - 1
            # Two people of one household are told apart by the masked email the admin API shows (first letter).
            avoid = shoppers[pid - 1].person.email[0]
        person = store.add_person(
            known_to_klaviyo=rng.random() < p.known_to_klaviyo_share,
            account=rng.random() < p.customer_account_share, phone=rng.random() < p.phone_share,
            household=household, office=rng.randrange(offices) if rng.random() < p.office_worker_share else None,
            avoid_initial=avoid,
        )
        shoppers.append(_Shopper(person=person, main=[]))
        mobile_first = rng.random() < p.mobile_share
        kinds = [mobile_first]
        if rng.random() < p.cross_device_share:
            kinds.append(not mobile_first)
        for is_mobile in kinds:
            if is_mobile:
                kind = BrowserKind.IPHONE_SAFARI if rng.random() < p.ios_share_of_mobile else BrowserKind.ANDROID_CHROME
                blocked = rng.random() < p.mobile_blocker_share
            else:
                draw = rng.random()
                firefox = p.safari_share_of_desktop + p.firefox_share_of_desktop
                kind = (BrowserKind.DESKTOP_SAFARI if draw < p.safari_share_of_desktop
                        else BrowserKind.DESKTOP_FIREFOX if draw < firefox else BrowserKind.DESKTOP_CHROME)
                blocked = rng.random() < p.desktop_ad_blocker_share
            browser = store.add_browser(kind, [pid], blocked=blocked)
            shoppers[-1].main.append(browser)
            if is_mobile:
                shoppers[-1].phone = browser
        if person.known_to_klaviyo and rng.random() < p.prior_cookie_kept_share:
            identified = start - timedelta(days=rng.uniform(0, p.prior_identification_days))
            store.prime_klaviyo_cookie(shoppers[-1].main[0], person, identified)
    for pid, other in sorted(paired_with.items()):
        if pid < other and rng.random() < p.shared_tablet_share:
            tablet = store.add_browser(BrowserKind.TABLET_SAFARI, [pid, other], device=f"h{pid}-tablet",
                                       blocked=rng.random() < p.mobile_blocker_share)
            shoppers[pid].tablet = shoppers[other].tablet = tablet

    plans = sorted(
        ((at, pid) for pid in range(visitors) for at in _visit_times(rng, start, store.end, p)),
        key=lambda item: (item[0], item[1]),
    )
    for at, pid in plans:
        shopper = shoppers[pid]
        person = shopper.person
        browser = shopper.main[0]
        if shopper.tablet is not None and rng.random() < p.shared_tablet_visit_share:
            browser = shopper.tablet
        elif len(shopper.main) > 1 and rng.random() < p.second_device_visit_share:
            browser = shopper.main[1]
        source = Source.DIRECT
        if store.abandoned_checkout(pid) and rng.random() < p.recovery_link_share:
            source = Source.RECOVERY
        elif store.known_to_klaviyo(pid, at) and rng.random() < p.email_click_share:
            source = Source.EMAIL
        elif browser is shopper.phone and rng.random() < p.in_app_browser_share:
            source = Source.SOCIAL
            kind = (BrowserKind.INSTAGRAM_IN_APP if rng.random() < p.instagram_share_of_in_app
                    else BrowserKind.FACEBOOK_IN_APP)
            if kind not in shopper.in_app:
                assert shopper.phone is not None
                shopper.in_app[kind] = store.add_browser(
                    kind, [pid], phone=shopper.phone)
            browser = shopper.in_app[kind]
        elif not browser.mobile and rng.random() < p.desktop_social_share:
            source = Source.SOCIAL
        ip, network = _visit_ip(store, rng, person, browser, at, p, carrier_pool)
        logged_in = (person.account_id is not None and browser.kind not in IN_APP
                     and rng.random() < p.logged_in_visit_share)
        viewed = rng.random() < p.product_view_rate
        # Drawn only when a product is viewed, so that the draws after it stay those of the seed.
        products = 1 + min(int(rng.expovariate(p.extra_product_view_rate)), p.max_extra_product_views) if viewed else 0
        add = viewed and rng.random() < p.add_to_cart_rate
        checkout = add and rng.random() < p.checkout_rate
        contact = checkout and rng.random() < p.contact_info_rate
        plan = VisitPlan(
            source=source, logged_in=logged_in, collection=rng.random() < p.collection_view_rate, products=products,
            add_to_cart=add,
            view_cart=add and rng.random() < p.cart_view_rate, checkout=checkout, contact=contact,
            give_phone=person.phone is not None,
            purchase=(contact or source is Source.RECOVERY) and rng.random() < p.purchase_rate, ip=ip,
            network=network,
        )
        store.visit(person, browser, at, plan)
    return store.build()


def _visit_ip(store: Store, rng: random.Random, person: Person, browser: Browser, at: datetime,
              p: Parameters, carrier_pool: int) -> tuple[str, str]:
    home = store.home_ip(person.household), "home"
    if browser.kind is BrowserKind.TABLET_SAFARI:
        return home
    if browser.mobile:
        return (store.carrier_ip(carrier_pool), "carrier") if rng.random() < p.cellular_share else home
    if person.office is not None and at.weekday() < 5 and 9 <= at.hour < 18 and rng.random() < p.office_visit_share:
        return store.office_ip(person.office), "office"
    return home
