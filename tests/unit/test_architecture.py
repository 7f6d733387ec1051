"""The layering is a checked rule, not a convention."""

from __future__ import annotations

from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[2]


def test_layers_and_pure_domain_contracts_hold(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """import-linter: entry points -> wiring -> adapters -> application -> domain; the domain does no I/O."""
    monkeypatch.chdir(ROOT)
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0
