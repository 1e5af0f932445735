"""An organisation's IdM administering its own identities with a system certificate.

An unconfined administrator grants a system identity the "administration" right with scopes
(read, order, revoke; never admin). A certificate this CA issued to that identity then logs in
over mTLS for a bearer token valid for an hour, or is presented on each request directly; both
are confined to the identity's CVR and the granted scopes. Every use re-reads the certificate's
status, its identity's and organisation's, and the grant (one query, no cache), so a revocation
or a withdrawal ends the access from the next request on, tokens included.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable

from cryptography import x509

from est_ca.admin.access import (
    GRANTABLE,
    AdministrationGrant,
    ApiToken,
    CertificateLink,
    Principal,
    PrincipalKind,
    Scope,
)
from est_ca.admin.tokens import Tokens
from est_ca.audit import Actor, AuditEvent, Outcome
from est_ca.ca.authority import issuer_key_id
from est_ca.ca.certificates import Serial
from est_ca.clock import Clock
from est_ca.errors import BadRequest, Conflict, NotEntitled, NotFound
from est_ca.registration.identities import IdentityType
from est_ca.store.store import Store

TOKEN_LIFETIME = dt.timedelta(hours=1)
# A row per login would pile up: the cluster's maintenance deletes login tokens this long after
# they expired (a revoked one expires within its hour too). Their audit events stay.
TOKEN_RETENTION = dt.timedelta(days=1)
# Live tokens per certificate: a new login always succeeds (an IdM that logs in on every run
# keeps working, where a refusal would lock it out for the hour) and revokes the oldest beyond
# these, so a loop or a stolen key cannot hold an unbounded number of live tokens.
LIVE_TOKENS = 5
NO_CERTIFICATE = "log in over TLS with a system certificate issued by this CA"


def grantable_scopes(names: Iterable[str]) -> frozenset[Scope]:
    """The scopes of a grant: at least one of read, order, revoke."""
    refused = BadRequest("scopes are one or more of read, order, revoke", field="scopes")
    try:
        scopes = frozenset(Scope(name) for name in names)
    except ValueError as exc:
        raise refused from exc
    if not scopes or not scopes <= GRANTABLE:
        raise refused
    return scopes


class Idm:
    def __init__(self, *, store: Store, clock: Clock, tokens: Tokens) -> None:
        self._store = store
        self._clock = clock
        self._tokens = tokens

    # -- the right --------------------------------------------------------------------------

    async def grant(
        self, principal: Principal, identity_id: uuid.UUID, scopes: frozenset[Scope]
    ) -> AdministrationGrant:
        """Only the CA's own administrators: an organisation must not empower itself."""
        principal.require_unconfined()
        return await self.grant_by(principal.actor, identity_id, scopes)

    async def grant_by(
        self, actor: Actor, identity_id: uuid.UUID, scopes: frozenset[Scope]
    ) -> AdministrationGrant:
        """The grant itself, by an actor already known to be unconfined (the operator's CLI)."""
        scopes = grantable_scopes(scopes)
        now = self._clock.now()
        async with self._store.write() as tx:
            identity = await tx.get_identity(identity_id)
            if identity is None:
                raise NotFound(f"no identity {identity_id}")
            if identity.type is not IdentityType.SYSTEM:
                raise Conflict(
                    f"only a system identity may be granted administration; this one is of "
                    f"type {identity.type.value}"
                )
            grant = AdministrationGrant(identity.id, scopes, actor.name, now)
            await tx.put_administration_grant(grant)
            await tx.append_audit(
                AuditEvent(
                    action="identity.administration_granted",
                    outcome=Outcome.SUCCESS,
                    actor=actor,
                    at=now,
                    identity_id=identity.id,
                    details={"cvr": identity.cvr, "scopes": ",".join(sorted(scopes))},
                )
            )
        return grant

    async def withdraw(self, principal: Principal, identity_id: uuid.UUID) -> None:
        """Ends the IdM's access from its next request on; its tokens are revoked for good."""
        principal.require_unconfined()
        await self.withdraw_by(principal.actor, identity_id)

    async def withdraw_by(self, actor: Actor, identity_id: uuid.UUID) -> None:
        now = self._clock.now()
        async with self._store.write() as tx:
            identity = await tx.get_identity(identity_id)
            if identity is None:
                raise NotFound(f"no identity {identity_id}")
            if not await tx.delete_administration_grant(identity_id):
                raise NotFound(f"the identity {identity_id} has no administration right")
            # For good: a grant made again later must not bring a leaked token back to life.
            revoked = await tx.revoke_idm_tokens(identity_id, now)
            await tx.append_audit(
                AuditEvent(
                    action="identity.administration_withdrawn",
                    outcome=Outcome.SUCCESS,
                    actor=actor,
                    at=now,
                    identity_id=identity_id,
                    details={"cvr": identity.cvr, "tokens_revoked": str(revoked)},
                )
            )

    async def grant_of(
        self, principal: Principal, identity_id: uuid.UUID
    ) -> AdministrationGrant | None:
        """The identity's grant, to a principal that may read the identity."""
        principal.require(Scope.READ)
        async with self._store.read() as tx:
            identity = await tx.get_identity(identity_id)
            if identity is None:
                raise NotFound(f"no identity {identity_id}")
            principal.check(identity)
            return await tx.get_administration_grant(identity_id)

    async def forget_expired_tokens(self) -> int:
        """Delete login tokens expired more than TOKEN_RETENTION ago (the cluster's
        maintenance); how many."""
        async with self._store.write() as tx:
            return await tx.forget_idm_tokens(self._clock.now() - TOKEN_RETENTION)

    # -- the certificate ----------------------------------------------------------------------

    async def login(self, der: bytes | None, source: str | None) -> tuple[ApiToken, str]:
        """A token for an hour, confined to the certificate's organisation and granted scopes.
        Any refusal is a 403 that says why (audited as idm.login_refused)."""
        link, principal = await self._check(der, source, "idm.login_refused")
        name = f"idm.{principal.cvr}.{link.serial[:32]}.{uuid.uuid4().hex[:8]}"
        return await self._tokens.create_linked(
            principal.actor,
            name=name,
            scopes=principal.scopes,
            cvr=link_cvr(principal),
            lifetime=TOKEN_LIFETIME,
            certificate=link,
            live=LIVE_TOKENS,
        )

    async def authenticate_certificate(self, der: bytes, source: str | None) -> Principal:
        """The principal of a system certificate presented on an admin request (no token)."""
        link, principal = await self._check(der, source, "idm.certificate_refused")
        await self._store.append_audit(
            AuditEvent(
                action="idm.certificate_used",
                outcome=Outcome.SUCCESS,
                actor=principal.actor,
                at=self._clock.now(),
                identity_id=link.identity_id,
                serial=link.serial,
            )
        )
        return principal

    async def _check(
        self, der: bytes | None, source: str | None, refused_action: str
    ) -> tuple[CertificateLink, Principal]:
        certificate = None
        if der is not None:
            try:
                certificate = x509.load_der_x509_certificate(der)
            except ValueError:
                certificate = None
        if der is None or certificate is None:
            anonymous = Actor("anonymous", "-", source)
            await self._refused(refused_action, anonymous, None, NO_CERTIFICATE)
            raise NotEntitled(NO_CERTIFICATE)
        serial = format(certificate.serial_number, "x")
        actor = Actor(PrincipalKind.IDM_CERTIFICATE.value, _name(certificate), source)
        issuer = issuer_key_id(certificate)
        standing = None
        if self._tokens.is_ours(certificate) and issuer is not None:
            async with self._store.read() as tx:
                standing = await tx.idm_standing(issuer, Serial(certificate.serial_number))
        reason = (
            standing.refusal(self._clock.now(), der)
            if standing is not None
            else "the certificate is not one this CA issued (an administrator's certificate "
            "does not log in here)"
        )
        if reason is not None:
            await self._refused(refused_action, actor, serial, reason)
            raise NotEntitled(reason)
        assert standing is not None
        assert standing.scopes is not None
        assert issuer is not None
        link = CertificateLink(issuer.hex, serial, standing.identity_id)
        principal = Principal(
            kind=PrincipalKind.IDM_CERTIFICATE,
            name=actor.name,
            scopes=standing.scopes,
            cvr=standing.cvr,
            source=source,
        )
        return link, principal

    async def _refused(self, action: str, actor: Actor, serial: str | None, reason: str) -> None:
        await self._tokens.record_refusal(
            AuditEvent(
                action=action,
                outcome=Outcome.REFUSED,
                actor=actor,
                at=self._clock.now(),
                serial=serial,
                reason=reason,
            )
        )


def link_cvr(principal: Principal) -> str:
    assert principal.cvr is not None  # an IdM's principal is always confined
    return principal.cvr


def _name(certificate: x509.Certificate) -> str:
    """How the audit trail names the IdM: its certificate's subject."""
    return certificate.subject.rfc4514_string()[:200]
