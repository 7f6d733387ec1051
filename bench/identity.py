"""Identity resolution benchmark: the cost of resolving one event as the identity graph grows from 10k to 10M.

    .venv/bin/python bench/identity.py [--sizes 10000,1000000,10000000] [--backends sqlite,postgresql]
                                       [--events 5000] [--load-timeout 300] [--no-links] [--rounds N]

Per backend the script

1. creates one fresh database per size (a temporary SQLite file, or a `recapture_bench_<random>` PostgreSQL
   database, both removed at the end), runs the real migrations (`migrate(engine)`) and bulk-loads a realistic
   graph WITHOUT the resolver:
   - persons of ~3.8 identifiers each: 1-2 Shopify client ids, 1-2 cart tokens; 30% typed an email (sealed
     with the same Sealer); half of those are customers (customer id, usually an order id); 36% have a
     checkout token. `value_hash` is the Sealer's keyed hash for the same shop (the first thousand checked
     against `Sealer.identifier_hash`); after loading, a few persons are read back through
     `SqlIdentityGraph.find` (hash, decrypted email, person, size, identified_at).
   - `last_seen` between 1 minute and 90 days before the events start (inside the 400-day identity window, a
     third inside the 30-day limit window); `persons.size` and `identified_at` (for the 30% identified) set.
   - one `attach` row in `identity_links` per identifier, as a graph of that size has (`--no-links`: none).
   Rows are made (hashing, sealing, formatting) in a child process while this one writes them, ids in person
   order; `persons` and `identity_links` are then derived with one INSERT ... SELECT each. Columns that
   schema.py gives a scalar default (e.g. `identifiers.shared`) get that default.
   - SQLite: sqlite3 `executemany`, one transaction, journal_mode=OFF, synchronous=OFF and a 2 GB page cache
     for the load only. All indexes stay in place: the UNIQUE (shop, value_hash) one cannot be dropped in
     SQLite, and it is the only one filled in random order (rows in id order append to every other index).
     The application's engine (WAL, synchronous=FULL) then opens the file. No ANALYZE: the application never
     runs it.
   - PostgreSQL: the primary keys, unique constraints and indexes of the three tables are dropped after the
     migration (definitions read back from the catalog), the rows streamed with COPY, the same definitions
     re-created (maintenance_work_mem=1GB), sequences advanced, VACUUM ANALYZE (what autovacuum leaves a
     production table in) and CHECKPOINT. Building an index once is several times faster than maintaining a
     random-order unique index row by row; the definitions are exactly the migration's.
   A load that does not finish within --load-timeout seconds (default 300) is abandoned and the size skipped.
2. resolves, per size, a warm-up of 400 events, then --events (default 5000) events through the real
   `IdentityResolver` + `SqlIdentityGraph` (built as `recapture.wiring` builds them), 200 events per unit of
   work like the worker, timing every `resolve(event)` with time.perf_counter. The mix: 60% page / product
   views from a known device (a quarter with its cart token), 20% brand-new anonymous devices, 15% checkouts
   (known device + cart + checkout token + email: the person's own, a first email, or the email of another
   person -> a merge; a new email on a device whose person holds another -> a shared-device conflict), 5% order
   webhooks (order id, checkout token, cart token, customer id, email). occurred_at starts just after the
   graph's newest last_seen and increases by 20 ms per event.
3. times, for comparison, the bare primary lookup alone: the first statement `neighbourhood` issues
   (`SELECT type, value_hash, person_id, last_seen[, shared] FROM identifiers WHERE shop = ? AND value_hash IN
   (...)`, built the same way through SQLAlchemy Core) for the identifiers of an independent draw of the same
   mix, 200 per transaction. The rest of the resolve time is the graph logic (the persons' summaries, the
   plan, the writes).

The sizes are measured in interleaved rounds (one batch of 200 events and one of 200 lookups per size per
round, the order rotating), so whatever else the machine does falls on every size alike.

Reported per (backend, size): load time, events/s (wall time of all batches, commits included), ms/event
(= 1 / events/s), p50 / p99 of one resolve, the same for the bare lookup; per backend, the ratio of the
per-event cost at the largest size to the smallest (target for 10M / 10k: <= 1.5x), with the spread of the
round-by-round ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import multiprocessing as mp
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from queue import Empty
from typing import Any

import psycopg
from common import postgres_database
from sqlalchemy import Table, select, text

from recapture.adapters.storage.database import make_engine, migrate
from recapture.adapters.storage.identity_graph import SqlIdentityGraph
from recapture.adapters.storage.schema import identifiers, identity_links, persons
from recapture.adapters.storage.sealing import Sealer
from recapture.adapters.storage.transactions import Transactions
from recapture.application.identity import IdentityResolver
from recapture.application.ports import PendingEvent
from recapture.domain.events import EventKind, Identifier, IdentifierType
from recapture.domain.identity.policy import DEFAULT_POLICY
from recapture.settings import ShopSettings
from recapture.wiring import identity_policy

T = IdentifierType
SHOP = "acme-outfitters.myshopify.com"
SECRET = "4f1d2c7b9e8a6d5c3b2a19087f6e5d4c3b2a1908f7e6d5c4b3a29180f7e6d5c4"  # a bench-only key  # noqa: S105
BATCH = 200
WARMUP_EVENTS = 2 * BATCH
EVENT_STEP = timedelta(milliseconds=20)
RATIO_TARGET = 1.5
TABLES = ("persons", "identifiers", "identity_links")

FIRST = ("jane", "john", "maria", "li", "ahmed", "sofia", "noah", "emma", "lucas", "mia", "yuki", "omar", "anna",
         "david", "chloe", "mateo", "olivia", "ivan", "fatima", "leo")
LAST = ("smith", "garcia", "chen", "muller", "rossi", "dubois", "kowalski", "tanaka", "silva", "nguyen", "khan",
        "johnson", "martin", "lopez", "kim", "novak", "brown", "wilson", "moreau", "schmidt")
DOMAINS = ("gmail.com", "gmail.com", "gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "icloud.com",
           "proton.me", "gmx.de", "orange.fr")


class LoadTimeout(Exception):
    pass


# -- the synthetic population: every person's identifiers are a function of its index -------------------------------

_M64 = (1 << 64) - 1


def _mix(x: int) -> int:
    """splitmix64: a bijection on 64 bits, so distinct inputs give distinct (random-looking) values."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def _hex32(x: int) -> str:
    return f"{_mix(x):016x}{_mix(x ^ 0x5DEECE66D0000000):016x}"


@dataclass(frozen=True, slots=True)
class Shape:
    clients: int          # Shopify client ids (browsers / devices)
    carts: int
    email: bool
    checkout: bool
    customer: bool
    order: bool
    last_seen_ago: int    # seconds before the bench's start
    age: int              # seconds between first_seen and last_seen

    @property
    def identified(self) -> bool:
        return self.email or self.customer


def shape(p: int) -> Shape:
    r = _mix(p ^ 0x243F6A8885A308D3)
    email = (r >> 14) % 100 < 30
    customer = email and (r >> 28) % 100 < 50
    return Shape(
        clients=2 if r % 100 < 45 else 1,
        carts=2 if (r >> 7) % 100 < 40 else 1,
        email=email,
        checkout=email or (r >> 21) % 100 < 8,
        customer=customer,
        order=customer and (r >> 35) % 100 < 80,
        last_seen_ago=60 + (r >> 42) % (90 * 86400),
        age=((r >> 20) & 0xFFFFFF) % (180 * 86400),
    )


def client_id(p: int, j: int) -> str:
    h = _hex32(p * 16 + j)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def cart_token(p: int, j: int) -> str:
    return _hex32(p * 16 + 4 + j)


def checkout_token(p: int) -> str:
    return _hex32(p * 16 + 8)


def customer_id(p: int) -> str:
    return str(6_200_000_000_000 + p)


def order_id(p: int) -> str:
    return str(5_400_000_000_000 + p)


def email(p: int) -> str:
    r = _mix(p ^ 0x13198A2E03707344)
    return f"{FIRST[r % 20]}.{LAST[(r >> 8) % 20]}{p}@{DOMAINS[(r >> 16) % 10]}"


def identifiers_of(p: int, s: Shape) -> list[tuple[IdentifierType, str]]:
    found = [(T.CLIENT_ID, client_id(p, j)) for j in range(s.clients)]
    found += [(T.CART_TOKEN, cart_token(p, j)) for j in range(s.carts)]
    if s.checkout:
        found.append((T.CHECKOUT_TOKEN, checkout_token(p)))
    if s.email:
        found.append((T.EMAIL, email(p)))
    if s.customer:
        found.append((T.SHOPIFY_CUSTOMER_ID, customer_id(p)))
    if s.order:
        found.append((T.ORDER_ID, order_id(p)))
    return found


_RULE = {"client_id": "page_viewed", "cart_token": "product_added_to_cart", "checkout_token": "checkout_started",
         "email": "checkout_contact_info_submitted", "shopify_customer_id": "order_paid", "order_id": "order_paid"}
# The evidence of the loaded graph: one `attach` per identifier, by the event kind that would have carried it.

@dataclass(slots=True)
class Loaded:
    persons: int = 0
    identifiers: int = 0
    links: int = 0
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    detail: str = ""


def population(size: int, sealer: Sealer, start: datetime) -> Iterator[tuple[int, Shape, datetime, datetime,
                                                                                list[tuple[str, bytes, str | None,
                                                                                           bytes | None]]]]:
    """(person index, shape, first_seen, last_seen, [(type, value_hash, value, sealed_value)]) until `size` ids.

    `value_hash` is Sealer.identifier_hash computed with the one-shot C HMAC on the Sealer's own key (about twice
    as fast for millions of rows); the first thousand are checked against `sealer.identifier_hash` itself.
    """
    hash_key = sealer._hash_key  # same key, same message layout as Sealer.identifier_hash (checked below)
    prefixes = {kind: f"{SHOP}\x1f{kind.value}\x1f".encode() for kind in T}
    digest = hmac.digest
    made = 0
    p = 0
    while made < size:
        s = shape(p)
        last_seen = start - timedelta(seconds=s.last_seen_ago)
        first_seen = last_seen - timedelta(seconds=s.age)
        rows: list[tuple[str, bytes, str | None, bytes | None]] = []
        for kind, value in identifiers_of(p, s):
            key = digest(hash_key, prefixes[kind] + value.encode(), "sha256")
            if made < 1000 and key != sealer.identifier_hash(SHOP, kind.value, value):
                raise AssertionError("the bench's identifier hash differs from Sealer.identifier_hash")
            if kind is T.EMAIL:
                rows.append((kind.value, key, None, sealer.seal(value.encode())))
            else:
                rows.append((kind.value, key, value, None))
        yield p, s, first_seen, last_seen, rows
        made += len(rows)
        p += 1


def _sqlite_time(moment: datetime) -> str:
    # The storage format of SQLAlchemy's SQLite DATETIME (UtcDateTime stores naive UTC): compared as text.
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def _pg_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f+00")


CHUNK = 50_000  # identifiers per chunk handed from the producer process to the loader
ID_COLUMNS = ("id", "shop", "type", "value_hash", "value", "sealed_value", "person_id", "first_seen", "last_seen")


def column_defaults(table: Table, given: Sequence[str]) -> list[tuple[str, str | int | float]]:
    """(name, value) of the table's other columns that carry a scalar default in schema.py.

    The application fills those in on insert (e.g. a flag that starts at 0); a bulk load must do the same, so
    the loader keeps working when the schema gains such a column.
    """
    found: list[tuple[str, str | int | float]] = []
    for column in table.columns:
        default = column.default
        if column.name in given or default is None or not getattr(default, "is_scalar", False):
            continue
        value = default.arg  # type: ignore[attr-defined]
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, str | int | float):
            found.append((column.name, value))
    return found


def _literal(value: str | int | float) -> str:
    return "'" + value.replace("'", "''") + "'" if isinstance(value, str) else str(value)


def insert_sql(table: Table, given: Sequence[str], select: str) -> str:
    """INSERT INTO table (given + defaulted columns) SELECT <select> with the default literals before its FROM."""
    extra = column_defaults(table, given)
    head, rest = select.split(" FROM ", 1)
    columns = ", ".join([*given, *(name for name, _ in extra)])
    literals = "".join(f", {_literal(value)}" for _, value in extra)
    return f"INSERT INTO {table.name} ({columns}) SELECT {head}{literals} FROM {rest}"  # noqa: S608 - constants


_RULE_CASE = " ".join(f"WHEN '{kind}' THEN '{rule}'" for kind, rule in _RULE.items())


def persons_sql() -> str:
    """Persons from their identifiers (one person's identifiers share first_seen / last_seen): size, created_at,
    and identified_at for those who typed an email or are customers."""
    return insert_sql(
        persons, ("id", "shop", "created_at", "identified_at", "merged_into", "size"),
        "person_id, min(shop), min(first_seen), CASE WHEN max(CASE WHEN type IN ('email', 'shopify_customer_id') "
        "THEN 1 ELSE 0 END) = 1 THEN max(last_seen) END, NULL, count(*) FROM identifiers GROUP BY person_id "
        "ORDER BY person_id",
    )


def links_sql() -> str:
    """The evidence of the loaded graph: one `attach` per identifier, by the event kind that would have carried it."""
    return insert_sql(
        identity_links, ("id", "shop", "person_id", "action", "identifier_id", "other_person_id", "event_id", "rule",
                         "confidence", "observed_at", "detail"),
        f"id, shop, person_id, 'attach', id, NULL, id, CASE type {_RULE_CASE} END, 1.0, first_seen, NULL "
        "FROM identifiers ORDER BY id",
    )


def identifiers_sqlite_sql() -> str:
    extra = column_defaults(identifiers, ID_COLUMNS)
    columns = ", ".join([*ID_COLUMNS, *(name for name, _ in extra)])
    values = ", ".join(["?"] * len(ID_COLUMNS) + [_literal(value) for _, value in extra])
    return f"INSERT INTO identifiers ({columns}) VALUES ({values})"  # noqa: S608 - constants


def identifiers_copy() -> tuple[str, str]:
    """The COPY statement and the text every row ends with (the defaulted columns' values)."""
    extra = column_defaults(identifiers, ID_COLUMNS)
    columns = ", ".join([*ID_COLUMNS, *(name for name, _ in extra)])
    return f"COPY identifiers ({columns}) FROM STDIN", "".join(f"\t{value}" for _, value in extra)


def chunks(backend: str, size: int, start: datetime) -> Iterator[tuple[Any, int, int]]:
    """(identifiers rows, persons so far, identifiers so far): tuples for sqlite3, COPY text for PostgreSQL."""
    sealer = Sealer(SECRET)
    rows: list[Any] = []
    iid = person = 0
    tail = identifiers_copy()[1] + "\n"
    for p, _, first_seen, last_seen, found in population(size, sealer, start):
        person = p + 1
        if backend == "sqlite":
            first, last = _sqlite_time(first_seen), _sqlite_time(last_seen)
            for kind, key, value, sealed in found:
                iid += 1
                rows.append((iid, SHOP, kind, key, value, sealed, person, first, last))
        else:
            first, last = _pg_time(first_seen), _pg_time(last_seen)
            for kind, key, value, sealed in found:
                iid += 1
                value_text = value if value is not None else "\\N"
                sealed_text = "\\\\x" + sealed.hex() if sealed is not None else "\\N"
                rows.append(f"{iid}\t{SHOP}\t{kind}\t\\\\x{key.hex()}\t{value_text}\t{sealed_text}\t{person}\t"
                            f"{first}\t{last}{tail}")
        if len(rows) >= CHUNK:
            yield (rows if backend == "sqlite" else "".join(rows)), person, iid
            rows = []
    if rows:
        yield (rows if backend == "sqlite" else "".join(rows)), person, iid


def _produce(queue: mp.Queue[Any], backend: str, size: int, start: datetime) -> None:
    try:
        for chunk in chunks(backend, size, start):
            queue.put(chunk)
        queue.put(None)
    except BaseException as error:  # the loader re-raises it
        queue.put(("error", repr(error)))


@contextlib.contextmanager
def produced(backend: str, size: int, start: datetime, deadline: float,
             progress: Callable[[], str]) -> Iterator[Iterator[tuple[Any, int, int]]]:
    """The chunks, generated (hashing, sealing, formatting) in a child process while this one loads them."""
    context = mp.get_context("fork")
    queue: mp.Queue[Any] = context.Queue(maxsize=4)
    producer = context.Process(target=_produce, args=(queue, backend, size, start), daemon=True)
    producer.start()

    def stream() -> Iterator[tuple[Any, int, int]]:
        while True:
            try:
                chunk = queue.get(timeout=max(0.1, deadline - time.monotonic()))
            except Empty:
                raise LoadTimeout(f"{progress()} when the time ran out") from None
            if chunk is None:
                return
            if chunk[0] == "error":
                raise RuntimeError(f"the row producer failed: {chunk[1]}")
            yield chunk
            if time.monotonic() > deadline:
                raise LoadTimeout(f"{progress()} when the time ran out")

    try:
        yield stream()
    finally:
        if producer.is_alive():
            producer.terminate()
        producer.join()
        queue.close()


# -- loading SQLite ----------------------------------------------------------------------------------------------------


def load_sqlite(path: Path, size: int, start: datetime, links: bool, deadline: float) -> Loaded:
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()
    began = time.perf_counter()
    loaded = Loaded()
    con = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-2000000", "locking_mode=EXCLUSIVE",
                       "temp_store=MEMORY"):
            con.execute(f"PRAGMA {pragma}")
        con.execute("BEGIN")

        def progress() -> str:
            return f"{loaded.identifiers:,} of {size:,} identifiers loaded"

        statement = identifiers_sqlite_sql()
        with produced("sqlite", size, start, deadline, progress) as stream:
            for rows, loaded.persons, loaded.identifiers in stream:
                con.executemany(statement, rows)
        loaded.phases["identifiers"] = time.perf_counter() - began
        mark = time.perf_counter()
        # Past the deadline, the progress handler interrupts the statement (sqlite3.OperationalError).
        con.set_progress_handler(lambda: int(time.monotonic() > deadline), 100_000)
        con.execute(persons_sql())
        if links:
            loaded.links = con.execute(links_sql()).rowcount
        loaded.phases["persons and links"] = time.perf_counter() - mark
        con.execute("COMMIT")
    finally:
        con.close()
    loaded.seconds = time.perf_counter() - began
    loaded.detail = "executemany in one transaction, journal off, indexes kept (rows in person order)"
    return loaded


# -- loading PostgreSQL ------------------------------------------------------------------------------------------------


def _dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _constraints_and_indexes(cur: psycopg.Cursor[Any], table: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    cur.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = %s::regclass AND contype IN ('p', 'u') ORDER BY contype, conname", (table,))
    constraints = [(r[0], r[1]) for r in cur.fetchall()]
    cur.execute("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = %s "
                "ORDER BY indexname", (table,))
    owned = {name for name, _ in constraints}
    indexes = [(r[0], r[1]) for r in cur.fetchall() if r[0] not in owned]
    return constraints, indexes


def load_postgres(url: str, size: int, start: datetime, links: bool, deadline: float) -> Loaded:
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    began = time.perf_counter()
    loaded = Loaded()

    def progress() -> str:
        return f"{loaded.identifiers:,} of {size:,} identifiers loaded"

    def remaining_ms() -> int:
        left = deadline - time.monotonic()
        if left <= 0:
            raise LoadTimeout(f"{progress()} when the time ran out")
        return int(left * 1000)

    with produced("postgresql", size, start, deadline, progress) as stream, \
            psycopg.connect(_dsn(url), autocommit=True) as con:
        cur = con.cursor()
        cur.execute("SET maintenance_work_mem = '1GB'")
        cur.execute("SET synchronous_commit = off")
        definitions = {table: _constraints_and_indexes(cur, table) for table in TABLES}
        for table, (constraints, indexes) in definitions.items():
            for name, _ in indexes:
                cur.execute(f'DROP INDEX "{name}"')
            for name, _ in constraints:
                cur.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        statement = identifiers_copy()[0]
        with con.transaction():
            for rows, loaded.persons, loaded.identifiers in stream:
                with cur.copy(statement) as copy:
                    copy.write(rows)
            loaded.phases["identifiers"] = time.perf_counter() - began
            mark = time.perf_counter()
            cur.execute(f"SET LOCAL statement_timeout = {remaining_ms()}")
            cur.execute(persons_sql())
            if links:
                loaded.links = cur.execute(links_sql()).rowcount
            loaded.phases["persons and links"] = time.perf_counter() - mark
        mark = time.perf_counter()
        for table, (constraints, indexes) in definitions.items():
            for name, definition in constraints:
                cur.execute(f"SET statement_timeout = {remaining_ms()}")
                cur.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
            for _, definition in indexes:
                cur.execute(f"SET statement_timeout = {remaining_ms()}")
                cur.execute(definition)
        cur.execute("SET statement_timeout = 0")
        for table in TABLES:
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608 - our table names
                        f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)")
        loaded.phases["indexes"] = time.perf_counter() - mark
        mark = time.perf_counter()
        for table in TABLES:
            cur.execute(f"VACUUM ANALYZE {table}")
        cur.execute("CHECKPOINT")
        loaded.phases["vacuum"] = time.perf_counter() - mark
    loaded.seconds = time.perf_counter() - began
    loaded.detail = "COPY into tables without indexes, the migration's constraints and indexes rebuilt, VACUUM ANALYZE"
    return loaded


@contextlib.contextmanager
def sqlite_database() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="recapture-bench-identity-"))
    try:
        yield folder / "graph.db"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- the events --------------------------------------------------------------------------------------------------------


class EventMix:
    """Events against a loaded population of `persons` persons; new values never collide with loaded ones."""

    def __init__(self, persons: int, seed: int, start: datetime, first_id: int) -> None:
        self.persons = persons
        self.rng = random.Random(seed)
        self.at = start
        self.next_id = first_id
        self.fresh = seed * 10_000_000  # a counter for new emails / tokens / orders
        self.kinds: Counter[str] = Counter()

    def _person(self, want: Callable[[Shape], bool] | None = None) -> tuple[int, Shape]:
        while True:
            p = self.rng.randrange(self.persons)
            s = shape(p)
            if want is None or want(s):
                return p, s

    def _new(self) -> int:
        self.fresh += 1
        return self.fresh

    def _new_email(self) -> str:
        n = self._new()
        return f"{FIRST[n % 20]}.{LAST[(n // 20) % 20]}.n{n}@{DOMAINS[n % 10]}"

    def next(self) -> PendingEvent:
        roll = self.rng.random()
        if roll < 0.60:
            kind, ids = self._known_device()
        elif roll < 0.80:
            kind, ids = EventKind.PAGE_VIEWED, [(T.CLIENT_ID, str(uuid.UUID(int=self.rng.getrandbits(128), version=4)))]
            self.kinds["new device"] += 1
        elif roll < 0.95:
            kind, ids = self._checkout()
        else:
            kind, ids = self._order()
        self.at += EVENT_STEP
        self.next_id += 1
        return PendingEvent(id=self.next_id, shop=SHOP, kind=kind, occurred_at=self.at,
                            identifiers=tuple(Identifier(type=t, value=v) for t, v in ids))

    def _known_device(self) -> tuple[EventKind, list[tuple[IdentifierType, str]]]:
        p, s = self._person()
        ids = [(T.CLIENT_ID, client_id(p, self.rng.randrange(s.clients)))]
        if self.rng.random() < 0.25:
            ids.append((T.CART_TOKEN, cart_token(p, self.rng.randrange(s.carts))))
            self.kinds["known device + cart"] += 1
            return EventKind.PRODUCT_ADDED_TO_CART, ids
        self.kinds["known device"] += 1
        return EventKind.PRODUCT_VIEWED if self.rng.random() < 0.5 else EventKind.PAGE_VIEWED, ids

    def _checkout(self) -> tuple[EventKind, list[tuple[IdentifierType, str]]]:
        p, s = self._person()
        token = checkout_token(p) if s.checkout and self.rng.random() < 0.5 else _hex32(self._new() << 8)
        ids = [(T.CLIENT_ID, client_id(p, self.rng.randrange(s.clients))), (T.CART_TOKEN, cart_token(p, 0)),
               (T.CHECKOUT_TOKEN, token)]
        if s.email:
            if self.rng.random() < 0.7:
                ids.append((T.EMAIL, email(p)))
                self.kinds["checkout, own email"] += 1
            else:
                ids.append((T.EMAIL, self._new_email()))
                self.kinds["checkout, other new email (shared device)"] += 1
        elif self.rng.random() < 0.6:
            ids.append((T.EMAIL, self._new_email()))
            self.kinds["checkout, first email"] += 1
        else:
            q, _ = self._person(lambda other: other.email)
            ids.append((T.EMAIL, email(q)))
            self.kinds["checkout, known email of another person (merge)"] += 1
        return EventKind.CHECKOUT_CONTACT_INFO_SUBMITTED, ids

    def _order(self) -> tuple[EventKind, list[tuple[IdentifierType, str]]]:
        p, s = self._person()
        n = self._new()
        ids = [
            (T.ORDER_ID, str(9_000_000_000_000 + n)),
            (T.CHECKOUT_TOKEN, checkout_token(p) if s.checkout else _hex32(n << 8)),
            (T.CART_TOKEN, cart_token(p, 0)),
            (T.SHOPIFY_CUSTOMER_ID, customer_id(p) if s.customer else str(8_000_000_000_000 + n)),
            (T.EMAIL, email(p) if s.email else self._new_email()),
        ]
        self.kinds["order webhook"] += 1
        return EventKind.ORDER_PAID, ids

    def take(self, count: int) -> list[PendingEvent]:
        return [self.next() for _ in range(count)]


# -- measuring ---------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Timing:
    wall: float = 0.0
    latencies: list[float] = field(default_factory=list)

    def add(self, other: Timing) -> None:
        self.wall += other.wall
        self.latencies += other.latencies

    @property
    def per_second(self) -> float:
        return len(self.latencies) / self.wall

    @property
    def mean_ms(self) -> float:
        return self.wall / len(self.latencies) * 1000

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


# What `neighbourhood` reads of each identifier it finds (`shared` where the schema has it).
LOOKUP_COLUMNS = ("type", "value_hash", "person_id", "last_seen", "shared")


def resolve_all(resolver: IdentityResolver, transactions: Transactions, events: list[PendingEvent]) -> Timing:
    latencies: list[float] = []
    clock = time.perf_counter
    began = clock()
    for i in range(0, len(events), BATCH):
        with transactions.unit():
            for event in events[i : i + BATCH]:
                t = clock()
                resolver.resolve(event)
                latencies.append(clock() - t)
    return Timing(wall=clock() - began, latencies=latencies)


def lookup_all(graph: SqlIdentityGraph, transactions: Transactions, events: list[PendingEvent]) -> Timing:
    """The bare primary lookup of `neighbourhood`, statement built the same way, for each event's identifiers."""
    keyed = [[graph.key(e.shop, i) for i in e.identifiers] for e in events]
    columns = [identifiers.c[name] for name in LOOKUP_COLUMNS if name in identifiers.c]
    latencies: list[float] = []
    clock = time.perf_counter
    began = clock()
    for i in range(0, len(keyed), BATCH):
        with transactions.unit():
            for keys in keyed[i : i + BATCH]:
                t = clock()
                with transactions.begin() as conn:
                    conn.execute(
                        select(*columns).where(identifiers.c.shop == SHOP, identifiers.c.value_hash.in_(list(keys)))
                    ).all()
                latencies.append(clock() - t)
    return Timing(wall=clock() - began, latencies=latencies)


FIRST_EVENT = 10**9  # event ids of the bench (the loaded links use 1..N); lookups draw from another range


@dataclass(slots=True)
class Result:
    backend: str
    size: int
    loaded: Loaded | None = None
    skipped: str = ""
    resolve: Timing = field(default_factory=Timing)
    lookup: Timing = field(default_factory=Timing)
    actions: dict[str, int] = field(default_factory=dict)
    mix: Counter[str] = field(default_factory=Counter)
    load_avg: list[float] = field(default_factory=list)
    round_costs: list[float] = field(default_factory=list)  # ms/event of each interleaved round

    @property
    def measured(self) -> bool:
        return bool(self.resolve.latencies) and bool(self.lookup.latencies)


class Subject:
    """One loaded graph, resolved through the real resolver as the worker would (built like recapture.wiring)."""

    def __init__(self, result: Result, url: str, start: datetime, seed: int) -> None:
        assert result.loaded is not None
        self.result = result
        self.engine = make_engine(url)
        self.transactions = Transactions(self.engine)
        self.graph = SqlIdentityGraph(self.transactions, Sealer(SECRET))
        policies = {SHOP: identity_policy(ShopSettings(domain=SHOP))}
        self.resolver = IdentityResolver(self.graph, lambda shop: policies.get(shop, DEFAULT_POLICY))
        self.events = EventMix(result.loaded.persons, seed=seed, start=start, first_id=FIRST_EVENT)
        # An independent draw of the same mix for the bare lookup (its keys were not just warmed by a resolve).
        self.probes = EventMix(result.loaded.persons, seed=seed + 1, start=start, first_id=2 * FIRST_EVENT)

    def check(self) -> None:
        """The loaded rows read back through the application's own graph: hashes, sealed emails, persons."""
        persons = self.result.loaded.persons if self.result.loaded else 0
        for p in (0, persons // 2, persons - 1):
            s = shape(p)
            held = identifiers_of(p, s)
            for kind, value in held:
                found = self.graph.find(SHOP, Identifier(type=kind, value=value))
                if found is None or found.person_id != p + 1 or found.value != value:
                    raise AssertionError(f"loaded identifier {kind.value}:{value} does not read back: {found}")
            with self.transactions.begin() as conn:
                size, identified_at = conn.execute(
                    text("SELECT size, identified_at FROM persons WHERE id = :id"), {"id": p + 1}
                ).one()
            if size != len(held) or (identified_at is not None) != s.identified:
                raise AssertionError(f"person {p + 1}: size {size}, identified_at {identified_at}; expected {held}")

    def warm_up(self) -> None:
        resolve_all(self.resolver, self.transactions, self.events.take(WARMUP_EVENTS))
        lookup_all(self.graph, self.transactions, self.probes.take(WARMUP_EVENTS))
        self.events.kinds.clear()
        self.first_measured = self.events.next_id

    def round(self, count: int) -> None:
        self.result.load_avg.append(os.getloadavg()[0])
        timing = resolve_all(self.resolver, self.transactions, self.events.take(count))
        self.result.resolve.add(timing)
        self.result.round_costs.append(timing.mean_ms)
        self.result.lookup.add(lookup_all(self.graph, self.transactions, self.probes.take(count)))

    def finish(self) -> None:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(identity_links.c.action, text("count(*)"))
                .where(identity_links.c.event_id > self.first_measured, identity_links.c.event_id < 2 * FIRST_EVENT)
                .group_by(identity_links.c.action)
            ).all()
        self.result.actions = {r[0]: r[1] for r in rows}
        self.result.mix = self.events.kinds
        self.engine.dispose()


def load(backend: str, size: int, where: Any, start: datetime, args: argparse.Namespace) -> Result:
    result = Result(backend=backend, size=size)
    url = f"sqlite:///{where}" if backend == "sqlite" else str(where)
    print(f"\n== {backend}, {size:,} identifiers: loading into {url}", flush=True)
    deadline = time.monotonic() + args.load_timeout
    try:
        if backend == "sqlite":
            loaded = load_sqlite(Path(where), size, start, not args.no_links, deadline)
        else:
            loaded = load_postgres(url, size, start, not args.no_links, deadline)
    except (LoadTimeout, psycopg.errors.QueryCanceled, sqlite3.OperationalError) as error:
        result.skipped = f"load not finished within {args.load_timeout:.0f} s ({error}); size skipped"
        print(f"  SKIPPED: {result.skipped}", flush=True)
        return result
    result.loaded = loaded
    phases = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in loaded.phases.items())
    print(f"  {loaded.persons:,} persons, {loaded.identifiers:,} identifiers, {loaded.links:,} links in "
          f"{loaded.seconds:.1f} s ({phases}); database {_database_bytes(backend, where) / 2**30:.2f} GiB; "
          f"{loaded.detail}", flush=True)
    return result


def bench_backend(backend: str, sizes: list[int], args: argparse.Namespace) -> list[Result]:
    """Load every size into its own database, then measure them in interleaved rounds.

    Round-robin (the order rotating every round) spreads whatever else the machine does over all sizes alike, so
    the ratio between sizes is not the ratio between a quiet and a busy minute.
    """
    # The graph's newest activity is a minute before the events start; events then run forward in 20 ms steps.
    start = datetime.now(UTC).replace(microsecond=0)
    results: list[Result] = []
    subjects: list[Subject] = []
    with contextlib.ExitStack() as stack:
        for size in sizes:
            where = stack.enter_context(sqlite_database() if backend == "sqlite" else postgres_database())
            result = load(backend, size, where, start, args)
            results.append(result)
            if result.loaded is not None:
                url = f"sqlite:///{where}" if backend == "sqlite" else str(where)
                subject = Subject(result, url, start, args.seed)
                stack.callback(subject.engine.dispose)
                subjects.append(subject)
        if not subjects:
            return results
        rounds = args.rounds or max(1, args.events // BATCH)
        per_round = max(1, args.events // rounds)
        print(f"\n== {backend}: measuring {', '.join(_size_label(s.result.size) for s in subjects)} in {rounds} "
              f"interleaved rounds of {per_round:,} events (+ {per_round:,} bare lookups) each, after a warm-up of "
              f"{WARMUP_EVENTS} events", flush=True)
        for subject in subjects:
            subject.check()
            subject.warm_up()
        for n in range(rounds):
            for subject in subjects[n % len(subjects):] + subjects[: n % len(subjects)]:
                subject.round(per_round)
            if (n + 1) % max(1, rounds // 5) == 0 or n + 1 == rounds:
                print(f"  round {n + 1}/{rounds} done (load average {os.getloadavg()[0]:.2f})", flush=True)
        for subject in subjects:
            subject.finish()
            r = subject.result
            print(f"  {_size_label(r.size)}: {r.resolve.per_second:,.0f} events/s, {r.resolve.mean_ms:.3f} ms/event, "
                  f"p50 {r.resolve.percentile(0.5):.3f} ms, p99 {r.resolve.percentile(0.99):.3f} ms; bare lookup "
                  f"p50 {r.lookup.percentile(0.5):.3f} ms, p99 {r.lookup.percentile(0.99):.3f} ms")
            print(f"      event mix: {dict(r.mix.most_common())}")
            print(f"      graph changes (identity_links written): {dict(sorted(r.actions.items()))}", flush=True)
    return results


def _database_bytes(backend: str, where: Any) -> int:
    if backend == "sqlite":
        return sum(f.stat().st_size for f in Path(where).parent.iterdir())
    with psycopg.connect(_dsn(str(where))) as con:
        return int(con.execute("SELECT pg_database_size(current_database())").fetchone()[0])  # type: ignore[index]


# -- report ------------------------------------------------------------------------------------------------------------


def _size_label(size: int) -> str:
    if size >= 1_000_000 and size % 1_000_000 == 0:
        return f"{size // 1_000_000}M"
    if size >= 1_000 and size % 1_000 == 0:
        return f"{size // 1_000}k"
    return f"{size:,}"


def report(results: list[Result], args: argparse.Namespace, elapsed: float) -> bool:
    headers = ("backend", "identifiers", "persons", "load s", "events/s", "ms/event", "p50 ms", "p99 ms",
               "lookup p50 ms", "lookup p99 ms", "lookup share")
    rows: list[tuple[str, ...]] = []
    for r in results:
        if r.loaded is None or not r.measured:
            rows.append((r.backend, _size_label(r.size), "-", "skipped", "-", "-", "-", "-", "-", "-", "-"))
            continue
        rows.append((
            r.backend, _size_label(r.size), f"{r.loaded.persons:,}", f"{r.loaded.seconds:.0f}",
            f"{r.resolve.per_second:,.0f}", f"{r.resolve.mean_ms:.3f}", f"{r.resolve.percentile(0.5):.3f}",
            f"{r.resolve.percentile(0.99):.3f}", f"{r.lookup.percentile(0.5):.3f}", f"{r.lookup.percentile(0.99):.3f}",
            f"{r.lookup.mean_ms / r.resolve.mean_ms:.0%}",
        ))
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    load_avg = [a for r in results for a in r.load_avg]
    print(f"\n== summary ({elapsed:.0f} s; {args.events:,} measured events per graph in interleaved rounds, "
          f"{BATCH} per unit of work; load average during the rounds "
          f"{min(load_avg, default=0):.2f}-{max(load_avg, default=0):.2f} on {os.cpu_count()} CPUs)")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    print("ms/event = wall time of all batches (commits included) / events = 1 / events/s; p50/p99 = one "
          "resolve(event) call; lookup = the bare `WHERE shop = ? AND value_hash IN (...)` statement alone; "
          "lookup share = its mean / ms/event")
    passed = True
    for backend in dict.fromkeys(r.backend for r in results):
        done = [r for r in results if r.backend == backend and r.measured]
        skipped = [_size_label(r.size) for r in results if r.backend == backend and not r.measured]
        note = f" ({', '.join(skipped)} skipped)" if skipped else ""
        if len(done) < 2:
            print(f"{backend}: fewer than two sizes measured{note}: no ratio")
            continue
        small, large = done[0], done[-1]
        cost = large.resolve.mean_ms / small.resolve.mean_ms
        p50 = large.resolve.percentile(0.5) / small.resolve.percentile(0.5)
        lookup = large.lookup.mean_ms / small.lookup.mean_ms
        rounds = sorted(b / a for a, b in zip(small.round_costs, large.round_costs, strict=True))
        verdict = "PASS" if cost <= RATIO_TARGET else "FAIL"
        stated = (small.size, large.size) == (10_000, 10_000_000)
        passed &= cost <= RATIO_TARGET
        print(f"{backend}: per-event cost {_size_label(large.size)} / {_size_label(small.size)} = {cost:.2f}x "
              f"(p50 {p50:.2f}x; bare lookup {lookup:.2f}x; round by round: median {statistics.median(rounds):.2f}x, "
              f"{rounds[0]:.2f}x-{rounds[-1]:.2f}x) -> {verdict} (target <= {RATIO_TARGET}x"
              f"{'' if stated else ', stated for 10M / 10k'}){note}")
    return passed


def code_version() -> str:
    """The commit measured, and whether the identity code had uncommitted changes."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=root, capture_output=True,
                               text=True, check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    changed = [line[3:] for line in dirty if line.strip()]
    return f"{head}" + (f" + uncommitted changes in {', '.join(changed)}" if changed else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,1000000,10000000", help="graph sizes in identifiers")
    parser.add_argument("--backends", default="sqlite,postgresql", help="comma-separated: sqlite,postgresql")
    parser.add_argument("--events", type=int, default=5000, help="measured events per (backend, size)")
    parser.add_argument("--rounds", type=int, default=0,
                        help="interleaved rounds the events are split into (default: one batch of 200 per round)")
    parser.add_argument("--load-timeout", type=float, default=300, help="seconds a load may take before it is skipped")
    parser.add_argument("--no-links", action="store_true", help="leave identity_links empty instead of 1 per identifier")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    sizes = sorted(int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip())
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if set(backends) - {"sqlite", "postgresql"}:
        parser.error("backends: sqlite, postgresql")
    started = time.monotonic()
    print(f"recapture identity resolution benchmark — {time.strftime('%Y-%m-%d %H:%M:%S')}")
    print(f"  machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"SQLite {sqlite3.sqlite_version}; load average {os.getloadavg()[0]:.2f} "
          "(another process busy on this machine disturbs the figures: re-run)")
    print(f"  code: {code_version()}")
    results = [r for backend in backends for r in bench_backend(backend, sizes, args)]
    if not report(results, args, time.monotonic() - started):
        sys.exit(1)


if __name__ == "__main__":
    main()
