"""The `recapture` command line (typer + rich)."""
