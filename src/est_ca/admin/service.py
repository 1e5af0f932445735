"""The admin operations, each asking the caller's principal before it touches anything.

This is where "every operation checks the caller's right to the object it touches" lives:
the HTTP layer only authenticates and parses; the scope and organisation checks are here, next
to the operations, so no route can forget them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from est_ca.admin.access import Principal, Scope
from est_ca.audit import AuditEvent, Outcome
from est_ca.ca.certificates import (
    CertificateRecord,
    CertificateStatus,
    KeyId,
    Serial,
    several_issuers,
)
from est_ca.clock import Clock
from est_ca.errors import EstCaError, NotFound
from est_ca.registration.approvals import EnrollmentRequest, RequestStatus
from est_ca.registration.identities import Identity, IdentityStatus, IdentityType
from est_ca.registration.importing import (
    ImportFormat,
    ImportRejected,
    ImportRow,
    RowError,
)
from est_ca.registration.orders import Order, OrderState, PlacedOrder
from est_ca.registration.organisations import Organisation, OrganisationStatus
from est_ca.registration.registry import ImportResult, Registry
from est_ca.revocation.publishing import RevocationPublishing
from est_ca.revocation.reasons import RevocationReason
from est_ca.revocation.revoker import Revocations
from est_ca.revocation.state import PublishedCrl
from est_ca.store.store import Store


class Administration:
    def __init__(
        self,
        *,
        registry: Registry,
        revocations: Revocations,
        publishing: RevocationPublishing | None,
        store: Store,
        clock: Clock,
    ) -> None:
        self._registry = registry
        self._revocations = revocations
        self._publishing = publishing
        self._store = store
        self._clock = clock

    async def refused(self, principal: Principal, operation: str, error: EstCaError) -> None:
        """An authenticated caller refused anything (a missing scope, another organisation's
        object, a second revocation, bad input) is security-relevant: the trail shows who tried
        what. One event each, as it happens; the operation names the request (method, path)."""
        await self._store.append_audit(
            AuditEvent(
                action="admin.refused",
                outcome=Outcome.REFUSED,
                actor=principal.actor,
                at=self._clock.now(),
                reason=error.audit_reason,
                details={"operation": operation},
            )
        )

    # -- organisations ----------------------------------------------------------------------

    async def create_organisation(
        self, principal: Principal, *, cvr: str, name: str, email_domains: Sequence[str]
    ) -> Organisation:
        """Only the CA's own administrators: an organisation must not name itself."""
        principal.require_unconfined()
        return await self._registry.create_organisation(
            principal.actor, cvr=cvr, name=name, email_domains=email_domains
        )

    async def update_organisation(
        self,
        principal: Principal,
        cvr: str,
        *,
        name: str | None,
        email_domains: Sequence[str] | None,
        status: OrganisationStatus | None,
    ) -> Organisation:
        principal.require_unconfined()
        return await self._registry.update_organisation(
            principal.actor, cvr, name=name, email_domains=email_domains, status=status
        )

    async def import_organisations(
        self, principal: Principal, text: str, kind: ImportFormat
    ) -> tuple[list[Organisation], list[Organisation]]:
        principal.require_unconfined()
        organisations = self._registry.parse_organisations(text, kind)
        return await self._registry.import_organisations(principal.actor, organisations)

    async def organisation(self, principal: Principal, cvr: str) -> Organisation:
        principal.require(Scope.READ)
        if principal.cvr is not None and principal.cvr != cvr.strip():
            raise NotFound(f"no organisation with CVR {cvr}")
        return await self._registry.get_organisation(cvr)

    async def organisations(
        self,
        principal: Principal,
        *,
        status: OrganisationStatus | None,
        limit: int,
        offset: int,
    ) -> list[Organisation]:
        """An organisation's own token sees its own record only."""
        principal.require(Scope.READ)
        return await self._registry.list_organisations(
            cvr=principal.cvr, status=status, limit=limit, offset=offset
        )

    async def identity_count(self, principal: Principal, cvr: str) -> int:
        """How many identities the organisation has; as `organisation`, another's is 404."""
        organisation = await self.organisation(principal, cvr)
        async with self._store.read() as tx:
            return await tx.count_identities(organisation.cvr)

    # -- identities -------------------------------------------------------------------------

    async def create_identity(
        self,
        principal: Principal,
        *,
        type: IdentityType,
        cvr: str,
        organisation_name: str | None = None,
        display_name: str | None = None,
        given_name: str | None = None,
        surname: str | None = None,
        email: str | None = None,
    ) -> Identity:
        principal.require(Scope.ORDER)
        principal.check_cvr(cvr.strip())
        return await self._registry.create_identity(
            principal.actor,
            type=type,
            organisation_name=organisation_name,
            cvr=cvr,
            display_name=display_name,
            given_name=given_name,
            surname=surname,
            email=email,
        )

    async def identity(self, principal: Principal, identity_id: uuid.UUID) -> Identity:
        principal.require(Scope.READ)
        return principal.check(await self._registry.get_identity(identity_id))

    async def identities(
        self,
        principal: Principal,
        *,
        type: IdentityType | None,
        cvr: str | None,
        status: IdentityStatus | None,
        limit: int,
        offset: int,
    ) -> list[Identity]:
        principal.require(Scope.READ)
        if cvr is not None:
            principal.check_cvr(cvr)
        return await self._registry.list_identities(
            type=type, cvr=principal.cvr or cvr, status=status, limit=limit, offset=offset
        )

    async def update_identity(
        self,
        principal: Principal,
        identity_id: uuid.UUID,
        *,
        display_name: str | None = None,
        given_name: str | None = None,
        surname: str | None = None,
        email: str | None = None,
    ) -> Identity:
        await self._touch(principal, Scope.ORDER, identity_id)
        return await self._registry.update_identity(
            principal.actor,
            identity_id,
            display_name=display_name,
            given_name=given_name,
            surname=surname,
            email=email,
        )

    async def disable_identity(
        self, principal: Principal, identity_id: uuid.UUID, reason: RevocationReason
    ) -> tuple[Identity, list[CertificateRecord]]:
        await self._touch(principal, Scope.REVOKE, identity_id)
        return await self._revocations.revoke_identity(principal.actor, identity_id, reason)

    async def import_file(
        self, principal: Principal, text: str, kind: ImportFormat, *, place_orders: bool
    ) -> ImportResult:
        """Check the caller's right first, then parse (on workers), then import."""
        principal.require(Scope.ORDER)
        rows = await self._registry.parse_import(text, kind)
        return await self.import_identities(principal, rows, place_orders=place_orders)

    async def import_identities(
        self, principal: Principal, rows: Sequence[ImportRow], *, place_orders: bool
    ) -> ImportResult:
        principal.require(Scope.ORDER)
        if principal.cvr is not None:
            foreign = [
                RowError(row.line, "cvr", f"this token is for CVR {principal.cvr} only")
                for row in rows
                if row.identity.cvr != principal.cvr
            ]
            if foreign:
                raise ImportRejected(foreign)
        return await self._registry.import_identities(
            principal.actor, rows, place_orders=place_orders
        )

    # -- orders -----------------------------------------------------------------------------

    async def place_order(
        self,
        principal: Principal,
        identity_id: uuid.UUID,
        *,
        profile: str | None = None,
        validity_days: int | None = None,
        ca_label: str | None = None,
        require_approval: bool = False,
    ) -> PlacedOrder:
        await self._touch(principal, Scope.ORDER, identity_id)
        return await self._registry.place_order(
            principal.actor,
            identity_id,
            profile=profile,
            validity_days=validity_days,
            ca_label=ca_label,
            require_approval=require_approval,
        )

    async def order(self, principal: Principal, reference: str) -> Order:
        principal.require(Scope.READ)
        return await self._visible_order(principal, reference)

    async def orders(
        self,
        principal: Principal,
        *,
        identity_id: uuid.UUID | None,
        state: OrderState | None,
        limit: int,
        offset: int,
    ) -> list[Order]:
        principal.require(Scope.READ)
        if identity_id is not None:
            await self.identity(principal, identity_id)
        return await self._registry.list_orders(
            identity_id=identity_id, state=state, cvr=principal.cvr, limit=limit, offset=offset
        )

    async def cancel_order(self, principal: Principal, reference: str) -> Order:
        principal.require(Scope.ORDER)
        order = await self._visible_order(principal, reference)
        return await self._registry.cancel_order(principal.actor, order.reference)

    async def unlock_order(self, principal: Principal, reference: str) -> Order:
        principal.require(Scope.ORDER)
        order = await self._visible_order(principal, reference)
        return await self._registry.unlock_order(principal.actor, order.reference)

    # -- enrollment requests awaiting approval ----------------------------------------------
    # The same rights as orders: reading needs read, deciding needs order, and a token
    # confined to an organisation sees and decides that organisation's requests only.

    async def requests(
        self,
        principal: Principal,
        *,
        status: RequestStatus | None,
        limit: int,
        offset: int,
    ) -> list[EnrollmentRequest]:
        principal.require(Scope.READ)
        return await self._registry.list_requests(
            status=status, cvr=principal.cvr, limit=limit, offset=offset
        )

    async def request(self, principal: Principal, reference: str) -> EnrollmentRequest:
        principal.require(Scope.READ)
        order = await self._visible_order(principal, reference)
        return await self._registry.get_request(order.reference)

    async def approve_request(self, principal: Principal, reference: str) -> EnrollmentRequest:
        principal.require(Scope.ORDER)
        order = await self._visible_order(principal, reference)
        return await self._registry.approve_request(principal.actor, order.reference)

    async def reject_request(
        self, principal: Principal, reference: str, reason: str | None = None
    ) -> EnrollmentRequest:
        principal.require(Scope.ORDER)
        order = await self._visible_order(principal, reference)
        return await self._registry.reject_request(principal.actor, order.reference, reason)

    # -- certificates -----------------------------------------------------------------------

    async def certificates(
        self,
        principal: Principal,
        *,
        identity_id: uuid.UUID | None,
        status: CertificateStatus | None,
        expires_after: dt.datetime | None,
        expires_before: dt.datetime | None,
        limit: int,
        offset: int,
        expiring_within: dt.timedelta | None = None,
        identity_type: IdentityType | None = None,
    ) -> list[CertificateRecord]:
        principal.require(Scope.READ)
        if identity_id is not None:
            await self.identity(principal, identity_id)
        return await self._registry.list_certificates(
            identity_id=identity_id,
            status=status,
            cvr=principal.cvr,
            expires_after=expires_after,
            expires_before=expires_before,
            expiring_within=expiring_within,
            limit=limit,
            offset=offset,
            identity_type=identity_type,
        )

    async def certificate(
        self, principal: Principal, serial: Serial, issuer: KeyId | None = None
    ) -> CertificateRecord:
        principal.require(Scope.READ)
        return await self._visible_certificate(principal, serial, issuer)

    async def revoke_certificate(
        self,
        principal: Principal,
        serial: Serial,
        reason: RevocationReason,
        invalidity_date: dt.datetime | None,
        issuer: KeyId | None = None,
    ) -> CertificateRecord:
        principal.require(Scope.REVOKE)
        record = await self._visible_certificate(principal, serial, issuer)
        return await self._revocations.revoke_certificate(
            principal.actor, serial, reason, invalidity_date, issuer=record.issuer_key_id
        )

    # -- the CA ---------------------------------------------------------------------------------

    async def regenerate_crls(self, principal: Principal) -> list[tuple[str, PublishedCrl]]:
        principal.require_unconfined()
        if self._publishing is None:
            raise NotFound("this instance does not publish CRLs")
        return [
            (issuer.name, await self._publishing.crls.regenerate(issuer.key_id))
            for issuer in self._publishing.issuers
        ]

    # -- checks ---------------------------------------------------------------------------------

    async def _touch(self, principal: Principal, scope: Scope, identity_id: uuid.UUID) -> Identity:
        principal.require(scope)
        return principal.check(await self._registry.get_identity(identity_id))

    async def _visible_order(self, principal: Principal, reference: str) -> Order:
        order = await self._registry.get_order(reference)
        identity = await self._registry.get_identity(order.identity_id)
        if not principal.may_see(identity):
            raise NotFound(f"no order {reference!r}")
        return order

    async def _visible_certificate(
        self, principal: Principal, serial: Serial, issuer: KeyId | None = None
    ) -> CertificateRecord:
        """The certificate if the principal may see it; a serial given alone must name one
        certificate among those it may see (a confined token learns nothing of the others)."""
        if issuer is not None:
            candidates = [await self._registry.get_certificate(serial, issuer=issuer)]
        else:
            candidates = await self._registry.certificates_with_serial(serial)
        visible = [
            record
            for record in candidates
            if principal.may_see(await self._registry.get_identity(record.identity_id))
        ]
        if not visible:
            raise NotFound(f"no certificate with serial {serial}")
        if len(visible) > 1:
            raise several_issuers(serial, visible)
        return visible[0]
