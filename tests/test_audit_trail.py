"""AuditTrail: the one way in for reading the trail, readiness included."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

from est_ca.audit import AuditSeal
from est_ca.audit_trail import AuditTrail
from est_ca.registration.codes import new_key
from est_ca.service import Service
from est_ca.store.store import Store


async def test_an_open_database_is_readable(service: Service) -> None:
    assert await service.audit.readable()


async def test_a_database_that_cannot_be_opened_is_not_readable(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-directory" / "est-ca.db"
    store = Store(f"sqlite+aiosqlite:///{missing}", seal=AuditSeal(new_key()))
    try:
        assert not await AuditTrail(store).readable()
    finally:
        await store.close()
        # aiosqlite's thread for the connection that failed ends when the connection object
        # is collected: collect it while this test's event loop can still take its answer.
        gc.collect()
        await asyncio.sleep(0.05)


async def test_events_come_newest_first_when_asked(service: Service) -> None:
    oldest_first = await service.audit.events(limit=1000)
    newest_first = await service.audit.events(limit=1000, newest_first=True)
    assert len(oldest_first) >= 2
    assert newest_first == list(reversed(oldest_first))
    assert await service.audit.events(limit=1, newest_first=True) == [oldest_first[-1]]
