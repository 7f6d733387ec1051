"""Ingest benchmark: recapture's POST /collect/shopify against the limits it is built on, in one run.

    .venv/bin/python bench/ingest.py [--seconds N] [--backends sqlite,postgresql] [--no-worker]

Every figure is printed next to the limit it is compared with, both measured in the same run on the same machine:

1. bare endpoint    a Starlette app on uvicorn (same loop/http implementation, one process) whose handler only
                    reads the body and answers a tiny JSON: the HTTP stack's ceiling, with wrk (Lua POST).
2. single ingest    `recapture serve`, one ~1.4 KB envelope per request, an event id unique to the run, thread
                    and request (wrk + Lua): requests/s and p50/p99 latency; ratio to (1), target >= 40%.
3. fixed rate       p99 latency at a fixed 2,000 requests/s from an open-loop generator (wrk cannot hold a rate
                    and wrk2 is not packaged here); latency counts from each request's *scheduled* send time, so a
                    stalled server cannot hide its queueing delay (no coordinated omission). Target < 10 ms. The
                    same generator against the bare endpoint gives the floor it can measure.
4. batched ingest   `recapture serve`, 100 envelopes per request: events/s; target >= 20,000 (SQLite) /
                    >= 10,000 (PostgreSQL).
5. raw inserts      the driver's bulk path (COPY / multi-row INSERT) of the very event rows recapture writes, 100 per
                    transaction, each committed, into the same database with recapture's engine settings: the
                    database's limit; ratio of (4) to it.

After every recapture run the stored events (GET /admin/status) are compared with the acknowledged ones (2xx,
`accepted` counted from the response bodies): every acknowledged event must be stored. wrk stops with requests in
flight that the server still commits, so there stored = acknowledged + at most the events in flight; the
open-loop generator waits for its answers (up to 30 s after its last send), so there stored must equal
acknowledged exactly. Duplicates would be deduplicated and flatter the numbers: there are none.

The server is pinned to CPU 0 and the load generators to CPU 1 (taskset) when the machine has two CPUs or more;
PostgreSQL's own processes are not pinned. Each run also reports the server's CPU time per request or event and
how much of CPU 0 other processes took meanwhile: on a shared machine the latter says how far to trust the rest.
`recapture serve` runs its processing worker in the same process by default; --no-worker measures ingest alone.
Everything talks to 127.0.0.1 only, every load loop is bounded in time, the PostgreSQL database is created
(recapture_bench_<random>) and dropped by the run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import common  # noqa: E402
from common import free_port, postgres_database, stop_process  # noqa: E402
from tests.support import SHOP, envelope, pixel_event  # noqa: E402

VENV_BIN = Path(sys.executable).parent
RECAPTURE = VENV_BIN / "recapture"
ID_MARK = "@@EVENT_ID@@"
HEADERS = {"Content-Type": "text/plain;charset=UTF-8", "Origin": f"https://{SHOP}"}
SINGLE_RATIO_TARGET = 0.40
FIXED_RATE = 2000
FIXED_RATE_P99_TARGET_MS = 10.0
BATCH = 100
BATCH_TARGET = {"sqlite": 20_000, "postgresql": 10_000}


# -- the payload ---------------------------------------------------------------------------------------------------


def realistic_envelope(event_id: str) -> dict[str, Any]:
    """A product_viewed envelope as the custom pixel sends it, with the context a real storefront gives (~1.4 KB)."""
    href = (
        f"https://{SHOP}/products/organic-tee?variant=222&utm_source=facebook&utm_medium=paid_social"
        "&utm_campaign=fall_launch_2026&utm_content=carousel_b&fbclid=IwAR2xKq9V7mZ3bLrT0fN8sYw1cD4eGhJkL"
    )
    event = pixel_event(event_id=event_id, client_id="0f6c6a27-6b5e-4bd8-9a3e-2b8d3f1c7e54", href=href)
    event["seq"] = 7
    event["context"]["document"] |= {"referrer": "https://l.facebook.com/", "title": "Organic Tee – Acme Outfitters",
                                     "characterSet": "UTF-8"}
    event["context"]["navigator"] = {
        "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
        "language": "en-US", "languages": ["en-US", "en"], "cookieEnabled": True,
    }
    event["context"]["window"] |= {"innerWidth": 390, "innerHeight": 664, "devicePixelRatio": 3,
                                   "location": {"pathname": "/products/organic-tee", "search": "?variant=222"}}
    return envelope(event, cookies={"_shopify_y": "3b1c7a52-44c0-4e37-9f2d-7d1c6e0b9a11", "_ga": "GA1.1.1234.5678"})


def envelope_template() -> tuple[str, str]:
    """The compact JSON of one envelope split around its event id: prefix + id + suffix."""
    text = json.dumps(realistic_envelope(ID_MARK), separators=(",", ":"), ensure_ascii=False)
    prefix, suffix = text.split(ID_MARK)
    return prefix, suffix


# -- wrk scripts ---------------------------------------------------------------------------------------------------

_LUA_COMMON = r"""
local threads = {}
local nthreads = 0
function setup(thread)
  nthreads = nthreads + 1
  thread:set("tid", nthreads)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local sent, answered, ok, acked, bad = 0, 0, 0, 0, 0
  for _, t in ipairs(threads) do
    sent = sent + (t:get("sent") or 0)
    answered = answered + (t:get("answered") or 0)
    ok = ok + (t:get("ok") or 0)
    acked = acked + (t:get("acked") or 0)
    bad = bad + (t:get("bad") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"mean_us":%.1f,"sent":%d,"answered":%d,"ok":%d,"acked":%d,"bad":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    sent, answered, ok, acked, bad))
end
"""


def lua_static(body: str) -> str:
    """POST the same body on every request (the bare endpoint: nothing is stored, so ids do not matter)."""
    headers = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in HEADERS.items())
    return f"""
wrk.method = "POST"
wrk.body = [==[{body}]==]
{headers}
{_LUA_COMMON}
"""


def lua_unique(prefix: str, suffix: str, batch: int, run_tag: str) -> str:
    """POST envelopes with an id unique to this run, thread and request; count what the server acknowledged."""
    headers = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in HEADERS.items())
    return f"""
local P = [==[{prefix}]==]
local S = [==[{suffix}]==]
local BATCH = {batch}
local RUN = "{run_tag}"
{_LUA_COMMON}
function init(args)
  counter, sent, answered, ok, acked, bad = 0, 0, 0, 0, 0, 0
  wrk.method = "POST"
  {headers}
end

function request()
  sent = sent + 1
  local body
  if BATCH == 1 then
    counter = counter + 1
    body = P .. RUN .. "-" .. tid .. "-" .. counter .. S
  else
    local parts = {{}}
    for i = 1, BATCH do
      counter = counter + 1
      parts[i] = P .. RUN .. "-" .. tid .. "-" .. counter .. S
    end
    body = '{{"batch":[' .. table.concat(parts, ",") .. ']}}'
  end
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  answered = answered + 1
  if status >= 200 and status < 300 then
    ok = ok + 1
    acked = acked + tonumber(string.match(body, '"accepted":(%d+)') or "0")
  else
    bad = bad + 1
  end
end
"""


# -- processes -----------------------------------------------------------------------------------------------------


def pinned(cpu: int, command: list[str]) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(cpu), *command]
    return command


def http_json(method: str, url: str, token: str | None = None, timeout: float = 10.0) -> tuple[int, Any]:
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.request(method, url, headers=headers, timeout=timeout)
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, response.text


@dataclass
class Server:
    name: str
    command: list[str]
    port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        with self.log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                pinned(0, self.command), env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.log_path.read_text()[-3000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return self
            time.sleep(0.1)
        self.__exit__()
        raise RuntimeError(f"{self.name} did not start within 30 s:\n{self.log_path.read_text()[-3000:]}")

    def __exit__(self, *_: object) -> None:
        stop_process(self.process, signal.SIGINT, grace=20)


def run_wrk(url: str, script: str, seconds: float, connections: int, workdir: Path, timeout_s: int = 10) -> dict[str, Any]:
    path = workdir / f"wrk-{secrets.token_hex(4)}.lua"
    path.write_text(script)
    command = pinned(1, ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", f"--timeout={timeout_s}s",
                         "--latency", "-s", str(path), url])
    completed = subprocess.run(command, capture_output=True, text=True, timeout=seconds + timeout_s + 30, check=False)
    match = re.search(r"^BENCH_JSON (\{.*\})$", completed.stdout, re.MULTILINE)
    if completed.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({completed.returncode}):\n{completed.stdout}\n{completed.stderr}")
    result: dict[str, Any] = json.loads(match.group(1))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["command"] = " ".join(command)
    return result


# -- bare endpoint -------------------------------------------------------------------------------------------------


def serve_bare(port: int) -> None:
    """The HTTP stack alone: same Starlette, same uvicorn.run settings as `recapture serve`."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def collect(request: Request) -> Response:
        await request.body()
        return Response(b'{"accepted":1}', media_type="application/json")

    app = Starlette(routes=[Route("/collect/shopify", collect, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, proxy_headers=False)


def uvicorn_implementation() -> str:
    """What uvicorn's `auto` loop and http settings resolve to here (both servers use `auto`)."""
    loop = "uvloop" if _importable("uvloop") else "asyncio"
    http = "httptools" if _importable("httptools") else "h11"
    import uvicorn

    return f"uvicorn {uvicorn.__version__}, loop={loop}, http={http}, 1 process"


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# -- open-loop generator (fixed rate) ------------------------------------------------------------------------------


async def _open_loop(port: int, rate: float, seconds: float, warmup: float, connections: int, run_tag: str) -> dict[str, Any]:
    prefix, suffix = envelope_template()
    head = (
        "POST /collect/shopify HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in HEADERS.items())
        + "Content-Length: {length}\r\n\r\n"
    )
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        idle.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    latencies: list[float] = []
    stats = {"sent": 0, "ok": 0, "acked": 0, "bad": 0, "errors": 0, "late_starts": 0}
    accepted_re = re.compile(rb'"accepted":(\d+)')

    async def one(index: int, scheduled: float, measured: bool) -> None:
        body = f"{prefix}{run_tag}-{index}{suffix}".encode()
        request = head.format(port=port, length=len(body)).encode() + body
        reader, writer = await idle.get()
        try:
            writer.write(request)
            header = await reader.readuntil(b"\r\n\r\n")
            status = int(header[9:12])
            length = int(re.search(rb"(?i)content-length:\s*(\d+)", header).group(1))  # type: ignore[union-attr]
            answer = await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, AttributeError, ValueError):
            stats["errors"] += 1
            writer.close()
            idle.put_nowait(await asyncio.open_connection("127.0.0.1", port))
            return
        done = time.perf_counter()
        idle.put_nowait((reader, writer))
        if 200 <= status < 300:
            stats["ok"] += 1
            found = accepted_re.search(answer)
            stats["acked"] += int(found.group(1)) if found else 0
        else:
            stats["bad"] += 1
        if measured:
            latencies.append(done - scheduled)

    tasks: set[asyncio.Task[None]] = set()
    total = int(rate * (warmup + seconds))
    start = time.perf_counter() + 0.05
    for index in range(total):
        scheduled = start + index / rate
        delay = scheduled - time.perf_counter()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        elif delay < -0.002:
            stats["late_starts"] += 1
        stats["sent"] += 1
        task = asyncio.create_task(one(index, scheduled, scheduled >= start + warmup))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    sending_took = time.perf_counter() - start
    drain_deadline = time.perf_counter() + 30
    while tasks and time.perf_counter() < drain_deadline:
        await asyncio.sleep(0.01)
    stats["unfinished"] = len(tasks)
    while not idle.empty():
        _, writer = idle.get_nowait()
        writer.close()
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000 if latencies else float("nan")

    return {
        **stats, "measured": len(latencies), "offered_rps": rate, "achieved_rps": total / sending_took,
        "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99), "p999_ms": pct(99.9),
        "max_ms": latencies[-1] * 1000 if latencies else float("nan"),
    }


def open_loop_main(args: argparse.Namespace) -> None:
    try:
        import uvloop

        loop_factory: Any = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        result = runner.run(
            _open_loop(args.port, args.rate, args.seconds, args.warmup, args.connections, args.run_tag)
        )
    print("BENCH_JSON " + json.dumps(result))


def run_open_loop(port: int, rate: float, seconds: float, run_tag: str) -> dict[str, Any]:
    command = pinned(1, [sys.executable, __file__, "--open-loop", "--port", str(port), "--rate", str(rate),
                         "--seconds", str(seconds), "--warmup", "1", "--connections", "64", "--run-tag", run_tag])
    completed = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 90, check=False)
    match = re.search(r"^BENCH_JSON (\{.*\})$", completed.stdout, re.MULTILINE)
    if completed.returncode != 0 or match is None:
        raise RuntimeError(f"open-loop generator failed:\n{completed.stdout}\n{completed.stderr}")
    result: dict[str, Any] = json.loads(match.group(1))
    return result


# -- raw inserts (the database's limit) ----------------------------------------------------------------------------


def raw_insert_rate(database_url: str, seconds: float, batch: int = BATCH) -> dict[str, Any]:
    """Rows/s of the driver's bulk path into `events` (COPY on PostgreSQL, a multi-row INSERT on SQLite), `batch` rows per
    committed transaction, on recapture's engine settings.

    The row is the one recapture itself writes for the benchmark envelope (normalized, sealed), made once; the timed
    loop only gives it a new event id and does the database work through the very insert recapture uses
    (`BulkInsert`: each value encoded by its column type, then the driver), commit. No identifier rows, no
    duplicate check, no id read-back: the database's limit.
    """
    from recapture.adapters.http.wire import read_envelope
    from recapture.adapters.storage.database import make_engine
    from recapture.adapters.storage.event_store import _EVENT_COLUMNS, _INSERT_EVENTS, SqlEventStore
    from recapture.adapters.storage.sealing import Sealer
    from recapture.domain.shopify_pixel import RequestFacts, normalize_pixel_event

    engine = make_engine(database_url)
    prefix, suffix = envelope_template()
    envelope = read_envelope(f"{prefix}raw{suffix}".encode(), 1 << 20)
    facts = RequestFacts(received_at=datetime.now(UTC), ip="127.0.0.1", user_agent=None)
    event = normalize_pixel_event(envelope, facts)  # type: ignore[arg-type]
    template = list(SqlEventStore(engine, Sealer(secrets.token_hex(16)))._event_row(event))
    template[_EVENT_COLUMNS.index("source")] = "bench_raw"  # apart from recapture's own rows
    id_at = _EVENT_COLUMNS.index("source_event_id")

    def row(source_event_id: str) -> list[Any]:
        values = list(template)
        values[id_at] = source_event_id
        return values

    tag = secrets.token_hex(4)
    rows = 0
    batches = 0
    # Pinned like the server; the database server itself (PostgreSQL) is not pinned.
    previous = os.sched_getaffinity(0)
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {0})
    try:
        with engine.begin() as conn:  # warm the connection and the statement cache
            _INSERT_EVENTS.execute(conn, [row(f"raw-{tag}-warm-{i}") for i in range(batch)])
        chunks = ([row(f"raw-{tag}-{n}-{i}") for i in range(batch)] for n in range(10**9))
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            chunk = next(chunks)
            with engine.begin() as conn:
                _INSERT_EVENTS.execute(conn, chunk)
            rows += batch
            batches += 1
        elapsed = time.perf_counter() - start
    finally:
        os.sched_setaffinity(0, previous)
        engine.dispose()
    return {"rows": rows, "batches": batches, "seconds": elapsed, "rows_per_s": rows / elapsed,
            "commits_per_s": batches / elapsed}


# -- one backend ---------------------------------------------------------------------------------------------------


@dataclass
class Row:
    figure: str
    value: str
    limit: str = ""
    ratio: str = ""
    target: str = ""
    verdict: str = ""


def wait_quiet(server: Server, token: str) -> dict[str, Any]:
    """Wait until the server has committed everything it received (ingest queue empty, stored count stable)."""
    last = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        code, status = http_json("GET", server.url + "/admin/status", token)
        if code != 200:
            raise RuntimeError(f"/admin/status answered {code}: {status}")
        if status["queues"]["ingest"]["depth"] == 0 and last is not None and _settled(status) == _settled(last):
            return dict(status)
        last = status
        time.sleep(0.3)
    raise RuntimeError("the server did not settle within 60 s")


def _settled(status: dict[str, Any]) -> tuple[int, int]:
    return status["events"]["received"], status["events"]["stored"]


def check_stored(label: str, before: dict[str, Any], after: dict[str, Any], acked: int, in_flight: int) -> tuple[bool, str]:
    stored = after["events"]["stored"] - before["events"]["stored"]
    duplicates = after["events"]["duplicates"] - before["events"]["duplicates"]
    lost = max(0, acked - stored)
    ok = stored >= acked and stored - acked <= in_flight
    text = (f"check {label}: {acked:,} events acknowledged (2xx, counted from the responses), {stored:,} stored "
            f"(GET /admin/status); stored but unacknowledged {stored - acked:,} <= in flight when the generator "
            f"stopped {in_flight:,}; duplicates {duplicates}; acknowledged but lost {lost} -> {'PASS' if ok else 'FAIL'}")
    return ok, text


# -- CPU accounting ------------------------------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) the process has used."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _cpu_busy() -> dict[int, tuple[int, int]]:
    """Per CPU: (busy, total) jiffies since boot."""
    found: dict[int, tuple[int, int]] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in values[:8])
            busy = user + nice + system + irq + softirq + steal
            found[int(name[3:])] = (busy, busy + idle + iowait)
    return found


class CpuMeter:
    """How busy CPU 0 (the server's) was during a run, and how much of that was the server itself."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.result: dict[str, float] = {}

    def __enter__(self) -> CpuMeter:
        self._cpu = _process_cpu(self.pid)
        self._busy = _cpu_busy()
        self._wall = time.monotonic()
        return self

    def __exit__(self, *_: object) -> None:
        wall = time.monotonic() - self._wall
        used = _process_cpu(self.pid) - self._cpu
        busy = _cpu_busy()
        cpu0 = [b - a for a, b in zip(self._busy.get(0, (0, 0)), busy.get(0, (0, 0)), strict=True)]
        cpu0_busy = cpu0[0] / cpu0[1] if cpu0[1] else 0.0
        self.result = {"server_cpu_s": used, "wall_s": wall, "server_share": used / wall, "cpu0_busy": cpu0_busy,
                       "cpu0_other": max(0.0, cpu0_busy - used / wall)}

    def describe(self, units: int, unit: str) -> str:
        r = self.result
        return (f"server CPU {r['server_cpu_s'] / max(units, 1) * 1e6:.0f} us/{unit} ({r['server_share']:.0%} of CPU 0); "
                f"CPU 0 used by everything else {r['cpu0_other']:.0%}")


def load_warning() -> str:
    one, five, _ = os.getloadavg()
    note = f"load average {one:.2f} (1 min) / {five:.2f} (5 min)"
    if one > 0.5:
        note += "  <-- other work is running on this machine: figures will be low and noisy"
    return note


# -- one backend ---------------------------------------------------------------------------------------------------


def bench_backend(backend: str, database_url: str, args: argparse.Namespace, workdir: Path, bare: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    token = secrets.token_hex(16)
    env = {
        "RECAPTURE_DATABASE_URL": database_url, "RECAPTURE_SHOP_DOMAIN": SHOP,
        "RECAPTURE_SHOPIFY_WEBHOOK_SECRET": secrets.token_hex(16), "RECAPTURE_ADMIN_TOKEN": token,
        "RECAPTURE_SECRET_KEY": secrets.token_hex(32), "RECAPTURE_LOG_LEVEL": "warning",
    }
    port = free_port()
    prefix, suffix = envelope_template()
    url = f"http://127.0.0.1:{port}/collect/shopify"
    seconds = args.seconds
    integrity_ok = True
    command = [str(RECAPTURE), "serve", "--host", "127.0.0.1", "--port", str(port)]
    if args.no_worker:
        command.append("--no-workers")
    server = Server(f"recapture ({backend})", command, port, workdir / f"recapture-{backend}.log", env)
    with server:
        assert server.process is not None
        pid = server.process.pid
        print(f"  server: {' '.join(pinned(0, server.command))}")
        # warm-up: imports, connection pool, statement caches
        run_wrk(url, lua_unique(prefix, suffix, 1, "warm" + secrets.token_hex(3)), 2, 64, workdir)
        wait_quiet(server, token)
        if backend == "postgresql":
            analyze(database_url)

        # 2. single-event ingest
        before = wait_quiet(server, token)
        with CpuMeter(pid) as meter:
            single = run_wrk(url, lua_unique(prefix, suffix, 1, "s" + secrets.token_hex(4)), seconds, 64, workdir)
        after = wait_quiet(server, token)
        ok, text = check_stored("single", before, after, single["acked"], single["sent"] - single["answered"])
        integrity_ok &= ok
        print(f"  single: {single['rps']:,.0f} req/s, p50 {single['p50_us'] / 1000:.2f} ms, "
              f"p99 {single['p99_us'] / 1000:.2f} ms, non-2xx {single['bad']}, socket errors {_socket_errors(single)}")
        print(f"    {single['command']}")
        print(f"    {meter.describe(single['requests'], 'request')}")
        print(f"    {text}")
        ratio = single["rps"] / bare["rps"]
        rows.append(Row(f"[{backend}] single-event ingest, req/s (wrk -c64)", f"{single['rps']:,.0f}",
                        f"{bare['rps']:,.0f} bare", f"{ratio:.0%}", f">= {SINGLE_RATIO_TARGET:.0%} of bare",
                        "PASS" if ratio >= SINGLE_RATIO_TARGET else "FAIL"))
        rows.append(Row(f"[{backend}] single-event latency p50 / p99 (wrk -c64, saturated)",
                        f"{single['p50_us'] / 1000:.1f} / {single['p99_us'] / 1000:.1f} ms",
                        f"{bare['p50_us'] / 1000:.1f} / {bare['p99_us'] / 1000:.1f} ms bare"))
        single_cpu = meter.result["server_cpu_s"] / max(single["requests"], 1)

        # 3. p99 at a fixed rate
        before = wait_quiet(server, token)
        with CpuMeter(pid) as meter:
            fixed = run_open_loop(port, args.rate, seconds, "f" + secrets.token_hex(4))
        after = wait_quiet(server, token)
        ok, text = check_stored("fixed rate", before, after, fixed["acked"], fixed["unfinished"])
        if fixed["unfinished"] == 0:  # the generator waited for every answer: stored must equal acknowledged
            exact = after["events"]["stored"] - before["events"]["stored"] == fixed["acked"]
            text += f"; exactly equal (every request answered): {'PASS' if exact else 'FAIL'}"
        else:
            exact = True
            text += (f"; {fixed['unfinished']:,} requests still unanswered 30 s after the last send (the server could "
                     f"not keep the rate), so only the bound applies")
        integrity_ok &= ok and exact
        print(f"  fixed rate: {_describe_open_loop(fixed)}")
        print(f"    {meter.describe(fixed['sent'], 'request')}")
        print(f"    {text}")
        kept = fixed["achieved_rps"] >= 0.97 * args.rate
        rows.append(Row(f"[{backend}] p99 latency at {args.rate:,.0f} req/s (open loop)", f"{fixed['p99_ms']:.1f} ms",
                        f"{bare['fixed']['p99_ms']:.1f} ms bare", "", f"< {FIXED_RATE_P99_TARGET_MS:.0f} ms",
                        "PASS" if fixed["p99_ms"] < FIXED_RATE_P99_TARGET_MS and kept else "FAIL"))

        # 4. batched ingest
        before = wait_quiet(server, token)
        with CpuMeter(pid) as meter:
            batched = run_wrk(url, lua_unique(prefix, suffix, BATCH, "b" + secrets.token_hex(4)), seconds, 16, workdir)
        after = wait_quiet(server, token)
        ok, text = check_stored("batched", before, after, batched["acked"],
                                (batched["sent"] - batched["answered"]) * BATCH)
        integrity_ok &= ok
        events_per_s = batched["rps"] * BATCH
        print(f"  batched: {batched['rps']:,.0f} req/s x {BATCH} = {events_per_s:,.0f} events/s, "
              f"p50 {batched['p50_us'] / 1000:.1f} ms, p99 {batched['p99_us'] / 1000:.1f} ms, "
              f"non-2xx {batched['bad']}, socket errors {_socket_errors(batched)}")
        print(f"    {batched['command']}")
        print(f"    {meter.describe(batched['requests'] * BATCH, 'event')}")
        print(f"    {text}")
        batch_cpu = meter.result["server_cpu_s"] / max(batched["requests"] * BATCH, 1)
    print(f"  server stopped (log: {server.log_path})")

    # 5. the database's own limit
    raw = raw_insert_rate(database_url, min(seconds, args.raw_seconds))
    print(f"  raw inserts: {raw['rows_per_s']:,.0f} rows/s ({raw['commits_per_s']:,.0f} commits/s of {BATCH} rows, "
          f"the driver's bulk path into events (COPY on PostgreSQL, multi-row INSERT on SQLite), same engine settings) over {raw['seconds']:.1f} s")
    target = BATCH_TARGET[backend]
    rows.append(Row(f"[{backend}] batched ingest ({BATCH}/request), events/s (wrk -c16)", f"{events_per_s:,.0f}",
                    f"{raw['rows_per_s']:,.0f} raw rows/s", f"{events_per_s / raw['rows_per_s']:.0%}",
                    f">= {target:,}", "PASS" if events_per_s >= target else "FAIL"))
    rows.append(Row(f"[{backend}] server CPU per event: single / batched",
                    f"{single_cpu * 1e6:.0f} / {batch_cpu * 1e6:.0f} us", f"{bare['cpu_per_request'] * 1e6:.0f} us bare"))
    refused = single["bad"] + fixed["bad"] + batched["bad"]
    rows.append(Row(f"[{backend}] every acknowledged event stored", f"{'yes' if integrity_ok else 'NO'} ({refused} non-2xx)",
                    "", "", "all", "PASS" if integrity_ok else "FAIL"))
    return rows


def _socket_errors(result: dict[str, Any]) -> int:
    return int(result["connect_errors"] + result["read_errors"] + result["write_errors"] + result["timeouts"])


def _describe_open_loop(fixed: dict[str, Any]) -> str:
    return (f"offered {fixed['offered_rps']:,.0f} req/s (sent at {fixed['achieved_rps']:,.0f}/s, "
            f"{fixed['late_starts']} sends > 2 ms late), p50 {fixed['p50_ms']:.2f} ms, p90 {fixed['p90_ms']:.2f} ms, "
            f"p99 {fixed['p99_ms']:.2f} ms, p99.9 {fixed['p999_ms']:.2f} ms, max {fixed['max_ms']:.2f} ms over "
            f"{fixed['measured']:,} measured requests; non-2xx {fixed['bad']}, errors {fixed['errors']}")


def analyze(database_url: str) -> None:
    """Fresh statistics, as autovacuum keeps them on a live database (a new table has none yet)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))
    engine.dispose()
    print("  ANALYZE after the warm-up (a just-created table has no planner statistics yet)")


def bench_bare(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    port = free_port()
    prefix, suffix = envelope_template()
    body = f"{prefix}bare-0{suffix}"
    server = Server("bare endpoint", [sys.executable, __file__, "--serve-bare", "--port", str(port)], port,
                    workdir / "bare.log")
    url = f"http://127.0.0.1:{port}/collect/shopify"
    with server:
        assert server.process is not None
        print(f"  server: {' '.join(pinned(0, server.command))}")
        run_wrk(url, lua_static(body), 1, 64, workdir)
        with CpuMeter(server.process.pid) as meter:
            bare = run_wrk(url, lua_static(body), args.seconds, 64, workdir)
        print(f"  closed loop: {bare['rps']:,.0f} req/s, p50 {bare['p50_us'] / 1000:.2f} ms, "
              f"p99 {bare['p99_us'] / 1000:.2f} ms, body {len(body.encode())} bytes")
        print(f"    {bare['command']}")
        print(f"    {meter.describe(bare['requests'], 'request')}")
        bare["cpu_per_request"] = meter.result["server_cpu_s"] / max(bare["requests"], 1)
        # The generator's own floor: the same open-loop run against a server that does nothing.
        bare["fixed"] = run_open_loop(port, args.rate, args.seconds, "bare")
        print(f"  fixed rate: {_describe_open_loop(bare['fixed'])}")
    return bare


def print_table(rows: list[Row]) -> None:
    common.print_table(Row("figure", "value", "limit (same run)", "ratio", "target", "result"), rows, ["figure", "value", "limit", "ratio", "target", "verdict"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10, help="duration of each measured run (default 10)")
    parser.add_argument("--backends", default="sqlite,postgresql", help="comma-separated: sqlite,postgresql")
    parser.add_argument("--rate", type=float, default=FIXED_RATE, help="fixed request rate for the p99 figure")
    parser.add_argument("--raw-seconds", type=float, default=5, help="duration of the raw insert run (default 5)")
    parser.add_argument("--no-worker", action="store_true",
                        help="run `recapture serve --no-workers` (no processing worker beside ingest)")
    # internal: the bare server and the open-loop generator run as their own pinned processes
    parser.add_argument("--serve-bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--open-loop", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=float, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, default=64, help=argparse.SUPPRESS)
    parser.add_argument("--run-tag", default="x", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(args.port)
        return
    if args.open_loop:
        open_loop_main(args)
        return

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - set(BATCH_TARGET)
    if unknown:
        parser.error(f"unknown backend(s): {', '.join(sorted(unknown))}")
    if not shutil.which("wrk"):
        parser.error("wrk is required (apt-get install wrk)")
    started = time.monotonic()
    prefix, suffix = envelope_template()
    print(f"recapture ingest benchmark — {time.strftime('%Y-%m-%d %H:%M:%S')}")
    print(f"  machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
          f"{uvicorn_implementation()}")
    print(f"  pinning: {'server on CPU 0, load generators on CPU 1 (taskset)' if pinned(0, []) else 'none'}; "
          f"envelope {len((prefix + 'x' * 20 + suffix).encode())} bytes; {args.seconds:g} s per run; "
          f"processing worker {'off' if args.no_worker else 'on (the default of recapture serve)'}")
    print("  fixed-rate method: open-loop asyncio generator (this script, --open-loop), 64 keep-alive connections, "
          "latency from each request's scheduled send time; wrk2 is not in this machine's package sources")
    print(f"  {load_warning()}")
    rows: list[Row] = []
    integrity = True
    with tempfile.TemporaryDirectory(prefix="recapture-bench-") as tmp:
        workdir = Path(tmp)
        print("\n== bare endpoint (the HTTP stack's ceiling)")
        bare = bench_bare(args, workdir)
        rows.append(Row("bare endpoint, req/s (wrk -c64)", f"{bare['rps']:,.0f}", "", "", "(the limit)"))
        rows.append(Row(f"bare endpoint, p99 at {args.rate:,.0f} req/s (open loop)", f"{bare['fixed']['p99_ms']:.1f} ms",
                        "", "", "(the floor)"))
        for backend in backends:
            print(f"\n== recapture on {backend}")
            if backend == "sqlite":
                database_url = f"sqlite:///{workdir / 'bench.db'}"
                print(f"  database: {database_url} (WAL, synchronous=FULL)")
                found = bench_backend(backend, database_url, args, workdir, bare)
            else:
                with postgres_database() as database_url:
                    found = bench_backend(backend, database_url, args, workdir, bare)
            integrity &= found[-1].verdict == "PASS"
            rows += found
    print(f"\n== summary ({time.monotonic() - started:.0f} s; {load_warning()})")
    print_table(rows)
    if not integrity:
        sys.exit(1)  # a lost acknowledged event is a bug; a missed performance target is a finding


if __name__ == "__main__":
    main()
