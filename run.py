#!/usr/bin/env python3
"""The commands of the README, needing nothing but Python >= 3.11:

    python3 run.py demo    # install into ./.venv if needed, then run `recapture demo` (a simulated week, the lift)
    python3 run.py serve   # install into ./.venv if needed, then run `recapture serve` on SQLite
    python3 run.py test    # install into ./.venv if needed, then lint, type-check and run the whole test suite

Any further arguments go to `recapture` (demo, serve) or to pytest (test).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".recapture-installed"


def _fingerprint(extras: str) -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()


def ensure_environment(extras: str) -> None:
    """Create ./.venv and install the project (editable) once per change of pyproject.toml."""
    if sys.version_info < (3, 11):  # noqa: UP036 - run.py is started by whatever python3 the machine has
        sys.exit(f"recapture needs Python >= 3.11; this is {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        print("creating ./.venv ...", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    wanted = _fingerprint(extras)
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    print(f"installing recapture{extras} into ./.venv ...", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "--editable", f"{ROOT}{extras}"], check=True)
    STAMP.write_text(wanted)


def run(command: list[str]) -> int:
    print("$", " ".join(command), flush=True)
    process = subprocess.Popen(command, cwd=ROOT)
    while True:
        try:
            return process.wait()
        except KeyboardInterrupt:
            # Ctrl-C reached the command too (same process group): let it stop cleanly, and report its exit.
            continue


def test(arguments: list[str]) -> int:
    ensure_environment("[test]")
    checks = [
        [str(BIN / "ruff"), "check", *(p for p in ("src", "tests", "bench", "run.py") if (ROOT / p).exists())],
        [str(BIN / "mypy")],
        [str(BIN / "lint-imports")],
    ]
    for check in checks:
        if run(check) != 0:
            return 1
    return run([str(BIN / "pytest"), *arguments])


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in {"demo", "serve", "test"}:
        print(__doc__)
        return 2
    command, arguments = sys.argv[1], sys.argv[2:]
    if command == "test":
        return test(arguments)
    ensure_environment("")
    return run([str(BIN / "recapture"), command, *arguments])


if __name__ == "__main__":
    sys.exit(main())
