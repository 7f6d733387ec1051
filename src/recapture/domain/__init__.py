"""The pure domain: event model, normalization rules and (later) identity, sessions and abandonment.

Nothing in this package performs I/O; the import-linter contracts in pyproject.toml enforce it.
"""
