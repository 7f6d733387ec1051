"""The identity graph on both databases behaves exactly like the in-memory reference graph."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete

from recapture.adapters.storage.database import make_engine
from recapture.adapters.storage.identity_graph import SqlIdentityGraph
from recapture.adapters.storage.schema import identifiers, identity_links, persons
from recapture.adapters.storage.sealing import Sealer
from recapture.adapters.storage.transactions import Transactions
from recapture.application.identity import IdentityResolver
from recapture.application.identity_memory import InMemoryIdentityGraph
from recapture.domain.events import IdentifierType
from recapture.domain.identity.policy import DEFAULT_POLICY
from recapture.wiring import Runtime
from tests.support import SECRET_KEY
from tests.unit.test_identity_resolution import SHOP, START, event

T = IdentifierType


@pytest.fixture
def sql_graph(runtime: Runtime) -> SqlIdentityGraph:
    return SqlIdentityGraph(Transactions(runtime.engine), Sealer(SECRET_KEY))


def _sql_partition(graph: SqlIdentityGraph, person_ids: set[int]) -> set[frozenset[str]]:
    return {frozenset(f"{i.type.value}:{i.value}" for i in graph.identifiers_of(p)) for p in person_ids} - {frozenset()}


def _memory_partition(graph: InMemoryIdentityGraph) -> set[frozenset[str]]:
    groups: dict[int, set[str]] = {}
    for entry in graph.entries.values():
        groups.setdefault(entry.person, set()).add(f"{entry.type.value}:{entry.value}")
    return {frozenset(g) for g in groups.values()}


def test_shared_tablet_scenario_on_the_database(sql_graph: SqlIdentityGraph) -> None:
    """Mom and Dad on one tablet: two persons in the database, the tablet with Dad, evidence recorded."""
    resolver = IdentityResolver(sql_graph, lambda _: DEFAULT_POLICY)
    mom = resolver.resolve(event((T.CLIENT_ID, "tablet"), (T.EMAIL, "mom@family.test")))
    dad = resolver.resolve(event((T.CLIENT_ID, "tablet"), (T.EMAIL, "dad@family.test"), at=START + timedelta(hours=5)))
    assert mom.person != dad.person
    tablet = sql_graph.find(SHOP, event((T.CLIENT_ID, "tablet")).identifiers[0])
    assert tablet is not None
    assert tablet.person_id == dad.person
    assert {i.value for i in sql_graph.identifiers_of(mom.person)} == {"mom@family.test"}  # type: ignore[arg-type]


def test_merge_keeps_one_hop_to_the_survivor(sql_graph: SqlIdentityGraph) -> None:
    """After chained merges every absorbed person points straight at the survivor."""
    resolver = IdentityResolver(sql_graph, lambda _: DEFAULT_POLICY)
    a = resolver.resolve(event((T.CLIENT_ID, "a"))).person
    b = resolver.resolve(event((T.CLIENT_ID, "b"))).person
    c = resolver.resolve(event((T.CLIENT_ID, "c"))).person
    resolver.resolve(event((T.CLIENT_ID, "a"), (T.CLIENT_ID, "b")))
    final = resolver.resolve(event((T.CLIENT_ID, "b"), (T.CLIENT_ID, "c"), (T.EMAIL, "x@y.test"))).person
    assert final is not None
    assert {sql_graph.root(p) for p in (a, b, c) if p is not None} == {final}


PAIRS = [(t, v) for t, vs in {
    T.CLIENT_ID: ["d1", "d2", "d3", "d4"], T.SHOPIFY_CUSTOMER_ID: ["1", "2"], T.EMAIL: ["a@x.test", "b@x.test"],
    T.PHONE: ["+14155550101"], T.CART_TOKEN: ["k1", "k2"], T.CHECKOUT_TOKEN: ["c1"],
}.items() for v in vs]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.lists(st.sampled_from(PAIRS), min_size=1, max_size=4, unique=True),
                          st.integers(0, 600)), min_size=1, max_size=15))
def test_database_graph_matches_the_reference_graph(runtime: Runtime, events) -> None:  # type: ignore[no-untyped-def]
    """Differential test: any sequence of events yields the same persons in SQL as in memory."""
    engine = make_engine(str(runtime.engine.url.render_as_string(hide_password=False)))
    with engine.begin() as conn:
        for table in (identity_links, identifiers, persons):
            conn.execute(delete(table))
    sql = SqlIdentityGraph(Transactions(engine), Sealer(SECRET_KEY))
    memory = InMemoryIdentityGraph()
    sql_resolver = IdentityResolver(sql, lambda _: DEFAULT_POLICY)
    memory_resolver = IdentityResolver(memory, lambda _: DEFAULT_POLICY)
    people: set[int] = set()
    for ids, minutes in sorted(events, key=lambda e: e[1]):
        e = event(*ids, at=START + timedelta(minutes=minutes))
        resolved = sql_resolver.resolve(e)
        memory_resolver.resolve(e)
        if resolved.person is not None:
            people.add(resolved.person)
    assert _sql_partition(sql, people) == _memory_partition(memory)
    engine.dispose()
