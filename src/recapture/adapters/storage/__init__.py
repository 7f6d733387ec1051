"""Storage: SQLAlchemy Core tables, Alembic migrations and the event store, one code path for SQLite and PostgreSQL."""
