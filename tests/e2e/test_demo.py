"""`recapture demo` end to end: the service, the fake Klaviyo and a simulated store, as a user starts it."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from recapture.simulation.gap import lift_table
from tests.conftest import free_port

RECAPTURE = str(Path(sys.executable).with_name("recapture"))
# Small enough for a test, large enough that some abandonments reach Klaviyo (seed 1: six of them).
SMALL_STORE = ["--visitors", "60", "--days", "2", "--seed", "1"]


def _environment() -> dict[str, str]:
    """The caller's environment without any RECAPTURE_* setting: the demo needs none."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RECAPTURE_")}


def test_demo_prints_the_lift_of_the_gap_report_and_klaviyo_received_the_abandonments(tmp_path: Path) -> None:
    """`demo --no-serve --json`: every event acknowledged, the lift table is the report's, deliveries arrived."""
    finished = subprocess.run([RECAPTURE, "demo", "--no-serve", "--json", "--port", str(free_port()), *SMALL_STORE],
                              cwd=tmp_path, env=_environment(), capture_output=True, timeout=240, check=False)
    assert finished.returncode == 0, finished.stderr.decode()[-3000:]
    summary = json.loads(finished.stdout)
    assert summary["acknowledged"] == summary["events"] > 0
    assert summary["rejected"] == 0
    rows = {row["stage"]: row for row in summary["lift_table"]}
    assert [row.stage for row in lift_table(summary["gap_report"])] == list(rows)
    for row in lift_table(summary["gap_report"]):
        totals = summary["gap_report"]["totals"][row.stage]
        shown = rows[row.stage]
        assert (shown["seen"], shown["native"], shown["recapture_only"], shown["delivered"], shown["lift"]) == (
            totals["seen"], totals["native"], totals["recapture_only"], totals["delivered"], totals["lift"])
    received = summary["klaviyo"]["events_by_metric"]
    assert rows["all"]["delivered"] == sum(received.values()) > 0
    assert all(metric.endswith(" Abandoned - Recaptured") for metric in received)
    assert summary["klaviyo"]["profiles"] > 0
    # The report's sessions are the simulation's: none lost, none split.
    assert rows["all"]["seen"] == summary["truth"]["all"]["sessions"]
    assert summary["dashboard"].endswith("/dashboard")


def _read_json(process: subprocess.Popen[bytes], seconds: float) -> dict[str, Any]:
    """The summary the demo prints before it starts serving (it keeps running, so read line by line)."""
    lines: queue.Queue[bytes] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout
    threading.Thread(target=lambda: [lines.put(line) for line in iter(stdout.readline, b"")], daemon=True).start()
    text = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            assert process.poll() is None, f"the demo exited with {process.returncode}"
            continue
        text += line
        if line.rstrip() == b"}":
            document: dict[str, Any] = json.loads(text)
            return document
    raise TimeoutError("the demo printed no summary in time")


def test_demo_keeps_serving_the_report_and_dashboard_until_interrupted(tmp_path: Path) -> None:
    """Without --no-serve the service stays up: its report equals the printed table; Ctrl-C stops everything."""
    port = free_port()
    process = subprocess.Popen([RECAPTURE, "demo", "--json", "--port", str(port), "--visitors", "30", "--days", "1"],
                               cwd=tmp_path, env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        summary = _read_json(process, 240)
        assert summary["service"] == f"http://127.0.0.1:{port}"
        answer = httpx.get(summary["service"] + "/admin/report", headers={
            "Authorization": f"Bearer {summary['admin_token']}"}, params={
            "shop": summary["gap_report"]["shop"], "since": summary["since"], "until": summary["until"],
            "period": "week"})
        assert answer.status_code == 200
        served = {row.stage: row for row in lift_table(answer.json())}
        for shown in summary["lift_table"]:
            row = served[shown["stage"]]
            assert (row.seen, row.native, row.recapture_only, row.delivered) == (
                shown["seen"], shown["native"], shown["recapture_only"], shown["delivered"])
        assert httpx.get(summary["dashboard"]).status_code < 500
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0
    assert process.stderr is not None
    assert b"stopped" in process.stderr.read()
