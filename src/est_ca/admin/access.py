"""Who is calling the admin API, and what they may touch.

A principal holds scopes and, for an organisation's token, the one CVR it is confined to.
Every admin operation asks the principal first; objects of another organisation are reported
as not found, so a token cannot even learn that they exist.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from enum import StrEnum

from est_ca.audit import Actor
from est_ca.ca.certificates import CertificateStatus
from est_ca.errors import BadRequest, NotEntitled, NotFound
from est_ca.registration.identities import Identity, IdentityStatus, IdentityType
from est_ca.registration.organisations import OrganisationStatus


class Scope(StrEnum):
    # Read identities, orders, certificates.
    READ = "read"
    # Create and update identities (also by import), place, cancel and unlock orders.
    ORDER = "order"
    # Revoke certificates, disable identities.
    REVOKE = "revoke"
    # Everything, including operations on the CA itself (CRL regeneration).
    ADMIN = "admin"

    @classmethod
    def parse_many(cls, text: str) -> frozenset[Scope]:
        names = [part.strip() for part in text.split(",") if part.strip()]
        try:
            scopes = frozenset(cls(name) for name in names)
        except ValueError as exc:
            allowed = ", ".join(scope.value for scope in cls)
            raise BadRequest(
                f"scopes are a comma-separated list of {allowed}", field="scopes"
            ) from exc
        if not scopes:
            raise BadRequest("a token needs at least one scope", field="scopes")
        return scopes


@dataclasses.dataclass(frozen=True)
class CertificateLink:
    """The system certificate (issuer key id and serial, lower-case hex) a token stands on."""

    issuer_key_id: str
    serial: str
    identity_id: uuid.UUID


@dataclasses.dataclass(frozen=True)
class AdministrationGrant:
    """The right of a system identity (an organisation's IdM) to administer its organisation's
    identities with these scopes, granted by an unconfined administrator."""

    identity_id: uuid.UUID
    scopes: frozenset[Scope]
    granted_by: str
    granted_at: dt.datetime


# What an IdM may be granted: never `admin`, which includes operations on the CA itself.
GRANTABLE = frozenset({Scope.READ, Scope.ORDER, Scope.REVOKE})


@dataclasses.dataclass(frozen=True)
class IdmStanding:
    """What one query says about a certificate presented by an IdM, checked on every use."""

    der: bytes | None
    status: str
    not_before: dt.datetime | None
    not_after: dt.datetime | None
    key_compromised: bool
    identity_id: uuid.UUID
    identity_type: str
    identity_status: str
    cvr: str
    organisation_status: str | None
    # None: no administration grant.
    scopes: frozenset[Scope] | None

    def refusal(self, now: dt.datetime, der: bytes | None = None) -> str | None:
        """Why this certificate may not administer its organisation now (None: it may).
        `der`: the certificate presented, which must be the very one recorded."""
        if der is not None and self.der != der:
            return "the certificate is not one this CA issued"
        if self.status == CertificateStatus.REVOKED:
            return "the certificate is revoked"
        if self.status != CertificateStatus.ISSUED:
            return "the certificate was never issued"
        if self.key_compromised:
            return "the certificate's key was reported compromised"
        if (
            self.not_after is None
            or now >= self.not_after
            or (self.not_before is not None and now < self.not_before)
        ):
            return "the certificate is expired or not yet valid"
        if self.identity_type != IdentityType.SYSTEM:
            return (
                f"only a system certificate administers an organisation; this one is an "
                f"identity of type {self.identity_type}"
            )
        if self.identity_status != IdentityStatus.ACTIVE:
            return "the certificate's identity is disabled"
        if self.organisation_status != OrganisationStatus.ACTIVE:
            return f"the organisation {self.cvr} is disabled"
        if self.scopes is None:
            return "the certificate's identity has not been granted the administration right"
        return None


@dataclasses.dataclass(frozen=True)
class ApiToken:
    id: uuid.UUID
    name: str
    scopes: frozenset[Scope]
    cvr: str | None
    created_at: dt.datetime
    expires_at: dt.datetime
    revoked_at: dt.datetime | None = None
    last_used_at: dt.datetime | None = None
    # Set for a token an IdM obtained by logging in with its system certificate: the token is
    # good only while that certificate and the identity's administration grant are.
    certificate: CertificateLink | None = None

    def usable_at(self, now: dt.datetime) -> bool:
        return self.revoked_at is None and now < self.expires_at


class PrincipalKind(StrEnum):
    """How the caller proved who it is; also the kind of actor its audit events name."""

    # A Bearer API token.
    TOKEN = "token"  # noqa: S105 - the name of a kind, not a secret
    # A client certificate issued by the admin trust anchor (not one of our subscribers').
    ADMIN_CERTIFICATE = "admin-certificate"
    # An organisation's IdM: a token it got by logging in with its system certificate.
    IDM_TOKEN = "idm-token"  # noqa: S105 - the name of a kind, not a secret
    # An organisation's IdM presenting its system certificate (issued by this CA) directly.
    IDM_CERTIFICATE = "idm-certificate"


@dataclasses.dataclass(frozen=True)
class Principal:
    kind: PrincipalKind
    name: str
    scopes: frozenset[Scope]
    # Set: confined to identities of this organisation.
    cvr: str | None
    source: str | None = None

    @property
    def actor(self) -> Actor:
        return Actor(self.kind.value, self.name, self.source)

    def require(self, scope: Scope) -> None:
        if scope not in self.scopes and Scope.ADMIN not in self.scopes:
            raise NotEntitled(f"this operation needs the {scope.value!r} scope")

    def require_unconfined(self, scope: Scope = Scope.ADMIN) -> None:
        """Operations on the CA itself are not an organisation's to make, nor are CA-wide
        figures (metrics) an organisation's to read: `scope` plus no CVR."""
        self.require(scope)
        if self.cvr is not None:
            raise NotEntitled("this operation is not open to an organisation's token")

    def may_see(self, identity: Identity) -> bool:
        return self.cvr is None or identity.cvr == self.cvr

    def check(self, identity: Identity) -> Identity:
        """The identity, if this principal may touch it; otherwise it does not exist."""
        if not self.may_see(identity):
            raise NotFound(f"no identity {identity.id}")
        return identity

    def check_cvr(self, cvr: str) -> None:
        if self.cvr is not None and cvr != self.cvr:
            raise NotEntitled(
                f"this token is for CVR {self.cvr} only",
            )
