"""Alembic migrations of the store; run by `storage.migrate` or `minsheng db upgrade`."""
