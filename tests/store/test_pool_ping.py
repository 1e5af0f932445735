"""PostgreSQL connections the database dropped (a restart, a failover): the pool pings only a
connection that was idle for a while, instead of every checkout (three round trips each).

What that promises: a connection dropped while the service was quiet is replaced before any
transaction uses it; one dropped while in use fails the transactions that hold it (a 503 to
their clients) and the pool connects anew for the next ones. tests/web/test_database_outage.py
shows the same over HTTP."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError

from est_ca.audit import AuditSeal
from est_ca.registration.codes import new_key
from est_ca.store.store import Store
from tests.conftest import POSTGRES_ADMIN_URL


async def _drop_connections(url: str) -> None:
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            url.rsplit("/", 1)[1],
        )
    finally:
        await admin.close()


async def _one(store: Store) -> int:
    """A query on a pooled connection: 1 when it worked."""
    return 1 if await store.schema_revision() is None else 0


async def test_a_connection_dropped_while_idle_is_replaced_before_it_is_used(
    postgres_url: str,
) -> None:
    store = Store(postgres_url, seal=AuditSeal(new_key()), ping_idle_seconds=0)
    try:
        assert await _one(store) == 1
        await _drop_connections(postgres_url)
        assert await _one(store) == 1
    finally:
        await store.close()


async def test_a_connection_dropped_while_busy_fails_once_and_the_pool_reconnects(
    postgres_url: str,
) -> None:
    store = Store(postgres_url, seal=AuditSeal(new_key()), ping_idle_seconds=3600)
    try:
        assert await _one(store) == 1
        await _drop_connections(postgres_url)
        with pytest.raises(DBAPIError) as failed:
            await _one(store)
        assert failed.value.connection_invalidated
        assert await _one(store) == 1
    finally:
        await store.close()
