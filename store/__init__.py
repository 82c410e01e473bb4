"""The store: SQLite through aiosqlite, one module per aggregate, migrations in migrations/*.sql."""

from store.db import NotFound, Store, StoreError, connect, migrate, now

__all__ = ["NotFound", "Store", "StoreError", "connect", "migrate", "now"]
