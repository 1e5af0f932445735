"""Keeping CRLs and OCSP current: the bound on how long anyone may still hear "good".

- A revocation committed by this process drops the OCSP cache before `revoke` returns, so this
  instance never answers "good" for it again, and wakes the CRL task at once.
- A revocation committed elsewhere (another instance, or the CLI) wakes this task at once on
  PostgreSQL (the revoking transaction notifies `REVOCATION_CHANNEL` as it commits, and this
  task listens); in any case it is seen within `revocation.poll_seconds` by comparing the CA's
  revocation revision in the database (SQLite, a lost listening connection, `listen` off).
- A CRL is made by one instance at a time per CA (`CrlPublisher`); the others adopt it.
- CRLs are also re-signed on schedule, `crl_refresh_hours` after their thisUpdate, and
  responder certificates renewed before they expire: by one instance for the cluster, the
  others adopting the new one in their next round (`ResponderKeeper.prepare`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Sequence

import structlog

from est_ca.clock import Clock
from est_ca.revocation.crl import CrlPublisher
from est_ca.revocation.issuers import ServedIssuer
from est_ca.revocation.ocsp import OcspResponder
from est_ca.revocation.responders import ResponderKeeper
from est_ca.store.store import REVOCATION_CHANNEL, Listening, Store

_log = structlog.get_logger(__name__)


class RevocationPublishing:
    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        issuers: Sequence[ServedIssuer],
        keepers: Sequence[ResponderKeeper],
        crls: CrlPublisher,
        responder: OcspResponder,
        poll: dt.timedelta,
        listen: bool = True,
    ) -> None:
        self._store = store
        self._clock = clock
        self.issuers = list(issuers)
        self._keepers = list(keepers)
        self.crls = crls
        self.responder = responder
        self._poll = poll
        self._listen = listen and not store.is_sqlite
        self._listening: Listening | None = None
        self._seen: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def issuer_by_path(self, path: str) -> ServedIssuer | None:
        return next((issuer for issuer in self.issuers if issuer.crl_path == path), None)

    async def start(self) -> None:
        """Everything published before the listeners open, then the background task."""
        async with self._store.write() as tx:
            for issuer in self.issuers:
                await tx.ensure_revocation_state(issuer.key_id)
        for keeper in self._keepers:
            await keeper.prepare()
        await self._keep_listening()
        await self.check()
        self._task = asyncio.create_task(self._run(), name="revocation-publishing")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._listening is not None:
            await self._listening.close()
            self._listening = None

    async def _keep_listening(self) -> None:
        """Listen for other instances' revocations, anew when the connection was lost."""
        if not self._listen or (self._listening is not None and self._listening.alive):
            return
        if self._listening is not None:
            await self._listening.close()
        self._listening = await self._store.listen(REVOCATION_CHANNEL, self._wake.set)
        if self._listening is not None:
            # Whatever was revoked while no one listened: the next round compares revisions.
            self._wake.set()

    def revoked(self) -> None:
        """Listener for local revocations: stop answering "good" now, re-sign the CRL soon."""
        self.responder.invalidate()
        self._wake.set()

    async def check(self) -> None:
        """One round: notice revocations, re-sign what is due, renew responders."""
        for issuer in self.issuers:
            async with self._store.read() as tx:
                state = await tx.revocation_state(issuer.key_id)
            if self._seen.get(issuer.key_id, state.revision) != state.revision:
                self.responder.invalidate()
            current = self.crls.current(issuer.key_id)
            if current is None or self.crls.is_due(issuer, current, state.revision):
                await self.crls.refresh(issuer.key_id)
            self._seen[issuer.key_id] = state.revision
        # The OCSP status index: loaded in the first round, then re-read after a revocation.
        await self.responder.refresh_index()
        for keeper in self._keepers:
            await keeper.prepare()

    async def _run(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancellation that
            # arrives just as the event is set, and the task would then never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll.total_seconds()):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self._keep_listening()
                await self.check()
            except Exception:  # the loop must outlive any one failure; the next round retries
                _log.exception("revocation publishing round failed")
