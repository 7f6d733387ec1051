"""The real `recapture serve` process, checked from outside by the shared black-box contract check."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support import SHARED

ROOT = Path(__file__).resolve().parents[2]


def test_foundation_contract_check_passes() -> None:
    """shared/checks/contract_foundation.py starts `recapture serve` on SQLite and every check passes."""
    check = SHARED / "checks" / "contract_foundation.py"
    result = subprocess.run(
        [sys.executable, str(check), sys.prefix], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout
