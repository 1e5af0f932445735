"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from est_ca.audit import AuditSeal
from est_ca.registration.codes import new_key
from est_ca.store.schema import Base
from est_ca.store.store import MIGRATIONS_DIR, Store


def _head() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_migrations_match_the_models(database_url: str) -> None:
    store = Store(database_url, seal=AuditSeal(new_key()))
    try:
        await store.migrate()
        async with store.read() as tx:
            differences = await tx._conn.run_sync(_differences)
        assert differences == []
    finally:
        await store.close()


async def test_migrating_twice_changes_nothing(database_url: str) -> None:
    store = Store(database_url, seal=AuditSeal(new_key()))
    try:
        await store.migrate()
        first = await store.schema_revision()
        await store.migrate()
        assert await store.schema_revision() == first == _head()
    finally:
        await store.close()


async def test_a_new_database_has_no_revision(database_url: str) -> None:
    store = Store(database_url, seal=AuditSeal(new_key()))
    try:
        assert await store.schema_revision() is None
    finally:
        await store.close()
