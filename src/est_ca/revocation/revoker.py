"""Revoking: a certificate by serial, or an identity with all its live certificates.

Revocation is final: there is no hold and no un-revoke. Each revocation is written together
with its audit event and a count-up of the CA's revocation revision, which is what tells every
instance (this one at once, others within their poll interval) to re-sign the CRL and stop
answering "good" over OCSP.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable

from est_ca.audit import Actor, AuditEvent, Outcome
from est_ca.ca.certificates import CertificateRecord, CertificateStatus, Serial
from est_ca.clock import Clock
from est_ca.errors import BadRequest, Conflict, NotFound
from est_ca.registration.identities import Identity, IdentityStatus
from est_ca.revocation.reasons import RevocationReason
from est_ca.store.store import Store, StoreTx


class Revocations:
    def __init__(self, *, store: Store, clock: Clock, issuer_key_id: str) -> None:
        self._store = store
        self._clock = clock
        self.issuer_key_id = issuer_key_id
        self._listeners: list[Callable[[], None]] = []

    def on_revocation(self, listener: Callable[[], None]) -> None:
        """Call `listener` right after every revocation this process commits."""
        self._listeners.append(listener)

    async def revoke_certificate(
        self,
        actor: Actor,
        serial: Serial,
        reason: RevocationReason = RevocationReason.UNSPECIFIED,
        invalidity_date: dt.datetime | None = None,
    ) -> CertificateRecord:
        now = self._clock.now()
        if invalidity_date is not None and invalidity_date > now:
            raise BadRequest("the invalidity date cannot be in the future", field="invalidity_date")
        async with self._store.write() as tx:
            await tx.ensure_revocation_state(self.issuer_key_id)
            record = await tx.get_certificate(serial, for_update=True)
            if record is None or record.status in (
                CertificateStatus.RESERVED,
                CertificateStatus.ABANDONED,
            ):
                raise NotFound(f"no issued certificate with serial {serial}")
            if record.status is CertificateStatus.REVOKED:
                assert record.revoked_at is not None
                raise Conflict(
                    f"certificate {serial} was already revoked at "
                    f"{record.revoked_at:%Y-%m-%d %H:%M:%S}Z; revocation is final"
                )
            if invalidity_date is not None and not record.is_valid_at(invalidity_date):
                # A key cannot be compromised before its certificate existed, nor matter after
                # it expired; year 1 is a typo, not a date for a CRL entry.
                assert record.not_before is not None
                assert record.not_after is not None
                raise BadRequest(
                    "the invalidity date must lie within the certificate's validity "
                    f"({record.not_before:%Y-%m-%d %H:%M:%S}Z to "
                    f"{record.not_after:%Y-%m-%d %H:%M:%S}Z)",
                    field="invalidity_date",
                )
            await self._revoke(tx, actor, record, reason, invalidity_date, now)
            revoked = await tx.get_certificate(serial)
        self._notify()
        assert revoked is not None
        return revoked

    async def revoke_identity(
        self,
        actor: Actor,
        identity_id: uuid.UUID,
        reason: RevocationReason = RevocationReason.CESSATION_OF_OPERATION,
    ) -> tuple[Identity, list[CertificateRecord]]:
        """Disable the identity, cancel its pending orders, revoke its live certificates."""
        now = self._clock.now()
        async with self._store.write() as tx:
            await tx.ensure_revocation_state(self.issuer_key_id)
            identity = await tx.get_identity(identity_id)
            if identity is None:
                raise NotFound(f"no identity {identity_id}")
            live = await tx.live_certificates_of(identity_id)
            if identity.status is IdentityStatus.DISABLED and not live:
                raise Conflict(
                    f"identity {identity_id} is already disabled and has no live certificates"
                )
            await tx.set_identity_status(identity_id, IdentityStatus.DISABLED, now)
            cancelled = await tx.cancel_pending_orders_of(identity_id, now)
            await tx.append_audit(
                AuditEvent(
                    action="identity.disabled",
                    outcome=Outcome.SUCCESS,
                    actor=actor,
                    at=now,
                    identity_id=identity_id,
                    reason=reason.value,
                    details={"orders_cancelled": str(cancelled), "certificates": str(len(live))},
                )
            )
            for record in live:
                await self._revoke(tx, actor, record, reason, None, now)
            disabled = await tx.get_identity(identity_id)
        if live:
            self._notify()
        assert disabled is not None
        return disabled, live

    async def _revoke(
        self,
        tx: StoreTx,
        actor: Actor,
        record: CertificateRecord,
        reason: RevocationReason,
        invalidity_date: dt.datetime | None,
        now: dt.datetime,
    ) -> None:
        if not await tx.revoke_certificate(
            record.serial, reason=reason.stored, at=now, invalidity_date=invalidity_date
        ):
            raise Conflict(f"certificate {record.serial} is not an issued certificate")
        await tx.count_revocation(self.issuer_key_id)
        await tx.append_audit(
            AuditEvent(
                action="certificate.revoked",
                outcome=Outcome.SUCCESS,
                actor=actor,
                at=now,
                identity_id=record.identity_id,
                serial=record.serial.hex,
                reason=reason.value,
                details=(
                    {"invalidity_date": invalidity_date.isoformat()} if invalidity_date else {}
                ),
            )
        )

    def _notify(self) -> None:
        for listener in self._listeners:
            listener()
