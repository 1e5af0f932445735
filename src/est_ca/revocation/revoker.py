"""Revoking: a certificate by serial, an identity with all its live certificates, the certificates
of a compromised key, and predecessors whose renewal's grace period is over.

Revocation is final: there is no hold and no un-revoke. Each revocation is written together
with its audit event and a count-up of the CA's revocation revision, which is what tells every
instance (this one at once, others within their poll interval) to re-sign the CRL and stop
answering "good" over OCSP.

A key reported compromised is dead everywhere: every live certificate of that key is revoked
with the same reason and invalidity date, and the key's binding is marked so that no CSR or
enrollment in flight with it is ever certified again.

Locks, the same order in every transaction that revokes or issues (so PostgreSQL never
deadlocks): the identity row first, then the key binding, then certificates, then orders.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable

from est_ca.audit import SERVICE, Actor, AuditEvent, Outcome
from est_ca.ca.certificates import CertificateRecord, CertificateStatus, KeyId, Serial
from est_ca.ca.profiles import DEFAULT_RENEWAL_GRACE, ProfileCatalogue
from est_ca.clock import Clock
from est_ca.errors import BadRequest, Conflict, NotFound
from est_ca.registration.identities import Identity, IdentityStatus
from est_ca.revocation.reasons import RevocationReason
from est_ca.store.store import Store, StoreTx


@dataclasses.dataclass(frozen=True)
class Revocation:
    """What one revocation says: why, since when the key is not to be trusted, and context
    for the audit trail (which compromise or renewal caused it)."""

    reason: RevocationReason
    at: dt.datetime
    invalidity_date: dt.datetime | None = None
    details: dict[str, str] = dataclasses.field(default_factory=dict)


class Revocations:
    def __init__(
        self, *, store: Store, clock: Clock, issuer_key_id: str, profiles: ProfileCatalogue
    ) -> None:
        self._store = store
        self._clock = clock
        self.issuer_key_id = issuer_key_id
        self._profiles = profiles
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
        *,
        issuer: KeyId | None = None,
    ) -> CertificateRecord:
        """Revoke the certificate `issuer` issued with `serial`; without `issuer`, the only
        certificate with that serial (several CAs have one: Conflict)."""
        now = self._clock.now()
        if invalidity_date is not None and invalidity_date > now:
            raise BadRequest("the invalidity date cannot be in the future", field="invalidity_date")
        async with self._store.read() as tx:
            found = await tx.certificate_by_serial(serial, issuer)
        if found is None:
            raise NotFound(f"no issued certificate with serial {serial}")
        async with self._store.write() as tx:
            await tx.ensure_revocation_state(found.issuer_key_id.hex)
            await tx.get_identity(found.identity_id, for_update=True)
            record = await tx.get_certificate(found.issuer_key_id, serial, for_update=True)
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
            await self.revoke_in(tx, actor, record, Revocation(reason, now, invalidity_date))
            revoked = await tx.get_certificate(record.issuer_key_id, serial)
        self.notify()
        assert revoked is not None
        return revoked

    async def revoke_identity(
        self,
        actor: Actor,
        identity_id: uuid.UUID,
        reason: RevocationReason = RevocationReason.CESSATION_OF_OPERATION,
    ) -> tuple[Identity, list[CertificateRecord]]:
        """Disable the identity, cancel its open orders, revoke its live certificates.

        The identity row is locked first, as the final step of every issuance locks it: an
        enrollment in flight either committed before (its certificate is revoked here) or
        finds the identity disabled and issues nothing."""
        now = self._clock.now()
        async with self._store.write() as tx:
            await tx.ensure_revocation_state(self.issuer_key_id)
            identity = await tx.get_identity(identity_id, for_update=True)
            if identity is None:
                raise NotFound(f"no identity {identity_id}")
            live = await tx.live_certificates_of(identity_id)
            if identity.status is IdentityStatus.DISABLED and not live:
                raise Conflict(
                    f"identity {identity_id} is already disabled and has no live certificates"
                )
            await tx.set_identity_status(identity_id, IdentityStatus.DISABLED, now)
            cancelled = await tx.cancel_open_orders_of(identity_id, now)
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
            revoked: list[CertificateRecord] = []
            for record in live:
                if record.serial not in {r.serial for r in revoked}:
                    revoked += await self.revoke_in(tx, actor, record, Revocation(reason, now))
            disabled = await tx.get_identity(identity_id)
        if revoked:
            self.notify()
        assert disabled is not None
        return disabled, revoked

    async def revoke_superseded(self) -> list[CertificateRecord]:
        """Revoke predecessors whose successor was issued longer ago than their profile's
        grace period (reason superseded): a renewed certificate stays usable only for the
        grace period, so a client can switch over without a gap."""
        now = self._clock.now()
        graces = [p.renewal_grace for p in self._profiles.profiles.values()]
        shortest = min([*graces, DEFAULT_RENEWAL_GRACE])
        async with self._store.read() as tx:
            candidates = await tx.superseded_candidates(now - shortest)
        revoked: list[CertificateRecord] = []
        for predecessor, successor, renewed_at in candidates:
            profile = self._profiles.get(predecessor.profile)
            grace = profile.renewal_grace if profile else DEFAULT_RENEWAL_GRACE
            if renewed_at + grace > now:
                continue
            async with self._store.write() as tx:
                await tx.ensure_revocation_state(self.issuer_key_id)
                await tx.get_identity(predecessor.identity_id, for_update=True)
                current = await tx.get_certificate(
                    predecessor.issuer_key_id, predecessor.serial, for_update=True
                )
                if current is None or current.status is not CertificateStatus.ISSUED:
                    continue  # revoked meanwhile, here or by another instance
                revocation = Revocation(
                    RevocationReason.SUPERSEDED, now, details={"superseded_by": successor}
                )
                revoked += await self.revoke_in(tx, SERVICE, current, revocation)
        if revoked:
            self.notify()
        return revoked

    async def revoke_in(
        self, tx: StoreTx, actor: Actor, record: CertificateRecord, revocation: Revocation
    ) -> list[CertificateRecord]:
        """Revoke `record` inside the caller's transaction (which holds the identity's lock),
        and with a key compromise every other live certificate of the key, whichever CA issued
        it: the key is compromised, not the issuer, so it stays dead everywhere. Returns what
        was revoked; the caller calls `notify` once the transaction has committed."""
        first = await self._revoke_one(tx, actor, record, revocation)
        if first is None:
            raise Conflict(f"certificate {record.serial} is not an issued certificate")
        revoked = [first]
        if revocation.reason is RevocationReason.KEY_COMPROMISE:
            await tx.mark_key_compromised(record.public_key_sha256, revocation.at)
            spread = dataclasses.replace(
                revocation, details={"key_compromise_of": record.serial.hex}
            )
            for other in await tx.live_certificates_with_key(record.public_key_sha256):
                if (done := await self._revoke_one(tx, actor, other, spread)) is not None:
                    revoked.append(done)
        return revoked

    async def _revoke_one(
        self, tx: StoreTx, actor: Actor, record: CertificateRecord, revocation: Revocation
    ) -> CertificateRecord | None:
        """Issued -> revoked with its audit event and a count-up of the revision; None when
        the certificate was not issued (any more)."""
        if not await tx.revoke_certificate(
            record.issuer_key_id,
            record.serial,
            reason=revocation.reason,
            at=revocation.at,
            invalidity_date=revocation.invalidity_date,
        ):
            return None
        if record.issuer_key_id.hex != self.issuer_key_id:
            await tx.ensure_revocation_state(record.issuer_key_id.hex)
        await tx.count_revocation(record.issuer_key_id.hex)
        await tx.append_audit(self._event(actor, record, revocation))
        revoked = await tx.get_certificate(record.issuer_key_id, record.serial)
        assert revoked is not None
        return revoked

    def notify(self) -> None:
        for listener in self._listeners:
            listener()

    @staticmethod
    def _event(actor: Actor, record: CertificateRecord, revocation: Revocation) -> AuditEvent:
        details = {"issuer": record.issuer_key_id.hex, **revocation.details}
        if revocation.invalidity_date is not None:
            details["invalidity_date"] = revocation.invalidity_date.isoformat()
        return AuditEvent(
            action="certificate.revoked",
            outcome=Outcome.SUCCESS,
            actor=actor,
            at=revocation.at,
            identity_id=record.identity_id,
            serial=record.serial.hex,
            reason=revocation.reason.value,
            details=details,
        )
