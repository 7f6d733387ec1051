"""The ingest hot path without HTTP: CPU per event of each step, on the benchmark's realistic envelope.

    .venv/bin/python bench/hot_path.py [--events N] [--backends sqlite,postgresql] [--group 100]

Steps, each timed alone in CPU seconds (best of --rounds, garbage collector tuned as `recapture serve` tunes it):
decoding the envelope (`wire.read_envelope`), normalizing it (`normalize_pixel_event`), and storing groups of
`--group` events (`SqlEventStore.store`: duplicate check, sealing, hashing, inserts, commit) into a fresh database.
It answers "where do the ~140 us per batched event go" without a load generator; bench/ingest.py gives the
end-to-end figures.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import postgres_database  # noqa: E402
from ingest import envelope_template  # noqa: E402


def best_cpu_per_item(work: Callable[[], Any], items: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return best / items * 1e6


@contextlib.contextmanager
def database(backend: str) -> Iterator[str]:
    if backend == "postgresql":
        with postgres_database() as url:
            yield url
    else:
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/hot-path.db"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--group", type=int, default=100, help="events per store() call (one commit)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    from recapture.adapters.http.wire import read_envelope
    from recapture.adapters.storage.database import make_engine, migrate
    from recapture.adapters.storage.event_store import SqlEventStore
    from recapture.adapters.storage.sealing import Sealer
    from recapture.domain.shopify_pixel import PixelEnvelope, RequestFacts, normalize_pixel_event
    from recapture.wiring import tune_garbage_collector

    tune_garbage_collector()
    prefix, suffix = envelope_template()
    bodies = [f"{prefix}hot-{i}{suffix}".encode() for i in range(args.events)]
    facts = RequestFacts(received_at=datetime.now(UTC), ip="203.0.113.7", user_agent="Mozilla/5.0 (iPhone)")
    envelopes: list[PixelEnvelope] = []

    def decode() -> None:
        envelopes[:] = [read_envelope(body, 1 << 16) for body in bodies]  # type: ignore[misc]

    decoding = best_cpu_per_item(decode, args.events, args.rounds)
    normalizing = best_cpu_per_item(
        lambda: [normalize_pixel_event(e, facts, default_region="US") for e in envelopes], args.events, args.rounds)
    print(f"envelope {len(bodies[0])} bytes, {args.events} events, best of {args.rounds}")
    print(f"  decode     {decoding:6.1f} us/event CPU")
    print(f"  normalize  {normalizing:6.1f} us/event CPU")
    for backend in args.backends.split(","):
        with database(backend) as url:
            engine = make_engine(url)
            migrate(engine)
            store = SqlEventStore(engine, Sealer(secrets.token_hex(16)))
            rounds = []
            for round_number in range(args.rounds):
                fresh = [
                    normalize_pixel_event(read_envelope(f"{prefix}r{round_number}-{i}{suffix}".encode(), 1 << 16),
                                          facts, default_region="US")  # type: ignore[arg-type]
                    for i in range(args.events)
                ]
                groups = [fresh[i:i + args.group] for i in range(0, len(fresh), args.group)]
                started, wall = time.process_time(), time.perf_counter()
                for group in groups:
                    store.store(group)
                rounds.append(((time.process_time() - started) / args.events * 1e6,
                               (time.perf_counter() - wall) / args.events * 1e6))
            engine.dispose()
        cpu, wall = min(rounds)
        print(f"  store [{backend}] groups of {args.group}: {cpu:6.1f} us/event CPU, {wall:6.1f} us/event wall "
              "(CPU includes the driver and the kernel's share of commits)")


if __name__ == "__main__":
    main()
