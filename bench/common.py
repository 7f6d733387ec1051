"""What every benchmark script shares: a free local port and a throw-away PostgreSQL database."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
from collections.abc import Iterator, Sequence
from typing import Any

POSTGRES_ADMIN_URL = os.environ.get("RECAPTURE_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A new `recapture_bench_<random>` database, dropped afterwards whatever happens."""
    from sqlalchemy import create_engine, text

    name = f"recapture_bench_{secrets.token_hex(5)}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        print(f"  created PostgreSQL database {name}")
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        print(f"  dropped PostgreSQL database {name}")


def print_table(headers: Any, rows: Sequence[Any], columns: Sequence[str]) -> None:
    """The closing summary: one row object per figure, the named attributes as columns, widths to fit."""
    widths = [max(len(getattr(r, c)) for r in [headers, *rows]) for c in columns]
    line = "+".join("-" * (w + 2) for w in widths)
    print(line)
    for i, row in enumerate([headers, *rows]):
        print("|".join(f" {getattr(row, c):<{w}} " for c, w in zip(columns, widths, strict=True)))
        if i == 0:
            print(line)
    print(line)


def stop_process(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGINT, grace: float = 20) -> None:
    """Ask a server to stop, give it `grace` seconds to finish its work, then kill it."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
