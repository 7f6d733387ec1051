"""Adapters: everything that talks to the outside world (HTTP, storage, CLI, destinations)."""
