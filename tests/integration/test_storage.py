"""Storage on both databases: migrations match the tables, acknowledgement means committed, group commit."""

from __future__ import annotations

import asyncio
import json

import httpx
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from starlette.testclient import TestClient

from recapture.adapters.storage.schema import metadata
from recapture.wiring import Runtime, build_runtime
from tests.conftest import LiveServer
from tests.support import envelope, pixel_event


def test_migrations_produce_exactly_the_declared_tables(runtime: Runtime) -> None:
    """Alembic's schema and the SQLAlchemy tables the code uses never drift apart."""
    with runtime.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    assert differences == []
    tables = set(inspect(runtime.engine).get_table_names())
    assert {"events", "event_identifiers", "privacy_requests", "service_state"} <= tables


def test_every_shop_data_table_carries_the_shop(runtime: Runtime) -> None:
    """Multi-store from day one: each table holding shop data has a `shop` column."""
    inspector = inspect(runtime.engine)
    for table in ("events", "event_identifiers", "privacy_requests"):
        assert "shop" in {c["name"] for c in inspector.get_columns(table)}


def test_storage_failure_is_503_and_nothing_is_acknowledged(client: TestClient, runtime: Runtime, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """When the database refuses the write the pixel gets 503 (and retries); nothing is half-written."""

    def broken(_events: object) -> list[bool]:
        raise ConnectionError("database is down")

    monkeypatch.setattr(runtime.store, "store", broken)
    response = client.post("/collect/shopify", content=json.dumps(envelope()), headers={"content-type": "application/json"})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "storage_unavailable"
    monkeypatch.undo()
    assert runtime.store.counts().stored == 0


def test_concurrent_requests_share_commits_and_every_acknowledged_event_is_stored(settings, runtime: Runtime) -> None:  # type: ignore[no-untyped-def]
    """200 concurrent single-event requests: all acknowledged events are in the database, in fewer commits."""

    async def send_all(url: str) -> list[int]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            requests = [
                http.post("/collect/shopify", content=json.dumps(envelope(pixel_event(event_id=f"c{i}"))),
                          headers={"content-type": "application/json"})
                for i in range(200)
            ]
            return [r.status_code for r in await asyncio.gather(*requests)]

    with LiveServer(settings, runtime, worker=False) as server:
        codes = asyncio.run(send_all(server.url))
    assert codes.count(200) == 200
    assert runtime.store.counts().stored == 200
    assert runtime.writer.commits < 200


def test_a_restarted_service_still_has_every_acknowledged_event(make_settings, runtime: Runtime, client: TestClient) -> None:  # type: ignore[no-untyped-def]
    """Acknowledged events are on disk: a new process on the same database sees them all."""
    batch = {"batch": [envelope(pixel_event(event_id=f"r{i}")) for i in range(50)]}
    assert client.post("/collect/shopify", content=json.dumps(batch), headers={"content-type": "application/json"}).json()["accepted"] == 50
    fresh = build_runtime(make_settings())
    assert fresh.store.counts().stored == 50
    fresh.engine.dispose()


def test_a_large_group_is_stored_whole_with_its_duplicates_told_apart(runtime: Runtime) -> None:
    """1,234 events in one commit (more than one multi-row INSERT on SQLite, COPY on PostgreSQL), 34 of them sent
    before: every new one stored once with its identifiers, every repeat reported as a duplicate."""
    from datetime import UTC, datetime

    from recapture.adapters.http.wire import read_envelope
    from recapture.domain.shopify_pixel import RequestFacts, normalize_pixel_event

    facts = RequestFacts(received_at=datetime.now(UTC), ip="203.0.113.7", user_agent="test")

    def event(i: int):  # type: ignore[no-untyped-def]
        raw = json.dumps(envelope(pixel_event(event_id=f"big-{i}", client_id=f"device-{i}"))).encode()
        return normalize_pixel_event(read_envelope(raw, 1 << 16), facts)  # type: ignore[arg-type]

    assert runtime.store.store([event(i) for i in range(34)]) == [True] * 34
    outcome = runtime.store.store([event(i) for i in range(1234)])
    assert outcome == [False] * 34 + [True] * 1200
    assert runtime.store.counts().stored == 1234
    pending = runtime.store.pending(2000)
    assert [p.identifiers[0].value for p in pending] == [f"device-{i}" for i in range(1234)]
    assert pending[0].commerce == event(0).commerce  # the body's JSON read back as written
    assert pending[0].occurred_at == event(0).occurred_at
    # Processing them writes their 1,234 identifier rows in one bulk insert (COPY on PostgreSQL).
    runtime.store.mark_processed([p.id for p in pending], datetime.now(UTC))
    from sqlalchemy import func, select

    from recapture.adapters.storage.schema import event_identifiers, events
    with runtime.engine.connect() as conn:
        values = set(conn.execute(select(event_identifiers.c.value)).scalars())
        waiting = conn.execute(select(func.count()).where(events.c.sealed_identifiers.is_not(None))).scalar_one()
    assert values == {f"device-{i}" for i in range(1234)}
    assert waiting == 0


def test_a_pixel_event_row_stays_whole_on_postgresql(client: TestClient, runtime: Runtime) -> None:
    """On PostgreSQL an event's ~3 KB row is written in one piece, not split into the TOAST table (the second
    write per event that halved COPY's rate); SQLite has no TOAST and nothing to check."""
    if runtime.engine.dialect.name != "postgresql":
        return
    from sqlalchemy import text

    # Analytics cookies and a long landing URL make a real pixel envelope about 1.5 KB (sealed whole in the row).
    cookies = {"_ga": "GA1." + "7" * 700, "_fbp": "fb.1." + "3" * 700}
    batch = {"batch": [envelope(pixel_event(event_id=f"t{i}"), cookies=cookies) for i in range(20)]}
    assert client.post("/collect/shopify", content=json.dumps(batch), headers={"content-type": "application/json"}).json()["accepted"] == 20
    with runtime.engine.connect() as conn:
        options = conn.execute(text("SELECT reloptions FROM pg_class WHERE relname = 'events'")).scalar_one()
        toasted = conn.execute(text(
            "SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE relname = 'events'")).scalar_one()
    assert "toast_tuple_target=8160" in options
    assert toasted == 0
