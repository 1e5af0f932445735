"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

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


async def test_existing_identities_become_organisations_and_conflicting_names_are_reported(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = Store(database_url, seal=AuditSeal(new_key()))
    try:
        await store.migrate("0005")
        async with store.write() as tx:
            for number, (name, email) in enumerate(
                [
                    ("ÆØÅ ApS", "a@example.dk"),
                    ("ÆØÅ ApS", "b@Example.dk"),
                    ("AEOEAA ApS", "c@other.dk"),
                    ("ÆØÅ ApS", None),
                ]
            ):
                await tx._conn.execute(
                    text(
                        "INSERT INTO identities (id, type, display_name, organisation_name, cvr, "
                        "email, status, created_at, updated_at) VALUES (:id, 'system', :display, "
                        ":name, '99999999', :email, 'active', :at, :at)"
                    ),
                    {
                        "id": uuid.uuid4().hex if store.is_sqlite else uuid.uuid4(),
                        "display": f"svc-{number}",
                        "name": name,
                        "email": email,
                        "at": dt.datetime(2026, 1, 1, number, tzinfo=dt.UTC),
                    },
                )
        await store.migrate()
        async with store.read() as tx:
            organisation = await tx.get_organisation("99999999")
            identities = await tx.list_identities()
        assert organisation is not None
        assert organisation.name == "ÆØÅ ApS"
        assert organisation.email_domains == ("example.dk", "other.dk")
        assert {identity.organisation_name for identity in identities} == {"ÆØÅ ApS"}
        assert "CVR 99999999" in capsys.readouterr().out
    finally:
        await store.close()
