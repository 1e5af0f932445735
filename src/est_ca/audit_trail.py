"""Reading the audit trail: the administrator's view of what the store chained and sealed.

Writing happens where the audited change happens (in the same transaction); this is the one
way in for reading it, so the CLI and the API need not know how the chain is stored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import structlog

from est_ca.audit import AuditEvent, ChainedEvent, ChainReport
from est_ca.store.store import Store

_log = structlog.get_logger(__name__)


class AuditTrail:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def events(
        self,
        *,
        action: str | None = None,
        limit: int = 100,
        offset: int = 0,
        newest_first: bool = False,
        outcome: str | None = None,
        cvr: str | None = None,
    ) -> list[AuditEvent]:
        """One page of events, oldest first (or newest first: what a console shows);
        `action` and `outcome` keep only that kind, `cvr` those about its identities."""
        async with self._store.read() as tx:
            return await tx.list_audit(
                action=action,
                limit=limit,
                offset=offset,
                newest_first=newest_first,
                outcome=outcome,
                cvr=cvr,
            )

    async def chain(self, *, after: int = 0) -> AsyncIterator[ChainedEvent]:
        """Every event after position `after` with its hashes, streamed in one read."""
        async with self._store.read() as tx:
            async for row in tx.audit_chain():
                if row.seq > after:
                    yield row

    async def readable(self) -> bool:
        """Whether the database answers (readiness): the chain's head can be read. A failure
        is logged by its kind only; a driver's message may carry the database URL."""
        try:
            async with self._store.read() as tx:
                await tx.audit_chain_head()
        except Exception as exc:  # any failure means not ready
            _log.warning("database.unreadable", error=type(exc).__name__)
            return False
        return True

    async def verify(self) -> ChainReport:
        """Walk the whole chain: every hash, link and seal, and the head."""
        return await self._store.verify_audit()
