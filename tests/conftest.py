"""Fixtures: one database per test on SQLite and on PostgreSQL, the app in-process, and a live HTTP server.

PostgreSQL and browser tests skip with a clear message on a machine without them, unless
RECAPTURE_REQUIRE_POSTGRES=1 / RECAPTURE_REQUIRE_BROWSER=1 (set by CI) make their absence a failure.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import create_engine, text
from starlette.testclient import TestClient

from recapture.adapters.clock import ManualClock
from recapture.adapters.storage.database import make_engine, migrate
from recapture.settings import Settings, load_settings
from recapture.wiring import Runtime, build_runtime, build_web_app
from tests.support import ADMIN_TOKEN, PREVIOUS_WEBHOOK_SECRET, SECRET_KEY, SHOP, WEBHOOK_SECRET

POSTGRES_ADMIN_URL = os.environ.get(
    "RECAPTURE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_POSTGRES = os.environ.get("RECAPTURE_REQUIRE_POSTGRES") == "1"
# Tests run on the manual clock, set to the time the support payloads were "sent".
SIMULATION_START = datetime(2026, 10, 5, 10, 0, tzinfo=UTC)


def _unavailable(message: str, required: bool) -> None:
    if required:
        pytest.fail(f"{message} (required here: RECAPTURE_REQUIRE_* is set)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A migrated template database; each test clones it (CREATE DATABASE ... TEMPLATE)."""
    name = f"recapture_tpl_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:
        admin.dispose()
        _unavailable(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {type(error).__name__}", REQUIRE_POSTGRES)
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    yield name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'recapture.db'}"
        return
    template = request.getfixturevalue("postgres_template")
    name = f"recapture_t_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def make_settings(database_url: str) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": database_url,
            "shop_domain": SHOP,
            "shopify_webhook_secret": WEBHOOK_SECRET,
            "shopify_webhook_secret_previous": PREVIOUS_WEBHOOK_SECRET,
            "admin_token": ADMIN_TOKEN,
            "clock": "manual",
            "secret_key": SECRET_KEY,
            "public_url": "https://recapture.example.com",
        }
        values.update(overrides)
        return load_settings(**values)

    return build


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    built = build_runtime(settings)
    if isinstance(built.clock, ManualClock):
        built.clock.set(SIMULATION_START)
    yield built
    built.engine.dispose()


@pytest.fixture
def client(settings: Settings, runtime: Runtime) -> Iterator[TestClient]:
    """The app in-process, without the background worker (tests drive processing themselves)."""
    with TestClient(build_web_app(settings, runtime, worker=False), base_url="http://127.0.0.1") as test_client:
        yield test_client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """The real app on a real socket (uvicorn in a thread), for end-to-end tests through HTTP."""

    def __init__(self, settings: Settings, runtime: Runtime, worker: bool = True, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.runtime = runtime
        config = uvicorn.Config(
            build_web_app(settings, runtime, worker=worker), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("the live server did not start")

    def __exit__(self, *_: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)


@pytest.fixture
def live_server(settings: Settings, runtime: Runtime) -> Iterator[LiveServer]:
    with LiveServer(settings, runtime) as server:
        yield server
