"""The tables. Changes here go with a migration in store/migrations/versions (a test compares them).

Times are stored as UTC and always come back timezone-aware, on SQLite as on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, whatever the database keeps."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use UTC")
        return value.astimezone(dt.UTC)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class OrganisationRow(Base):
    """One per CVR: the name certificates carry and the email domains its identities may use."""

    __tablename__ = "organisations"

    cvr: Mapped[str] = mapped_column(String(8), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # Lower-case ASCII domain names, comma-separated.
    email_domains: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class IdentityRow(Base):
    __tablename__ = "identities"
    # An organisation's own id for the person or system: bulk imports are idempotent on it.
    __table_args__ = (UniqueConstraint("cvr", "external_id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    type: Mapped[str] = mapped_column(String(16))
    display_name: Mapped[str] = mapped_column(String(200))
    # The organisation (its name comes from there; the domain checks that it exists).
    cvr: Mapped[str] = mapped_column(String(8), index=True)
    given_name: Mapped[str | None] = mapped_column(String(200))
    surname: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class OrderRow(Base):
    __tablename__ = "orders"
    __table_args__ = (Index("ix_orders_identity_id_status", "identity_id", "status"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    reference: Mapped[str] = mapped_column(String(32), unique=True)
    identity_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("identities.id"))
    profile: Mapped[str] = mapped_column(String(64))
    code_hash: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    failed_attempts: Mapped[int] = mapped_column(Integer)
    locked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    claimed_serial: Mapped[str | None] = mapped_column(String(40))
    claimed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    consumed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    certificate_serial: Mapped[str | None] = mapped_column(String(40))
    # The CA label the order is enrolled under; NULL: the default label (older orders).
    ca_label: Mapped[str | None] = mapped_column(String(64))
    # Manual approval (RFC 7030 4.2.3): enrollment stores the CSR in enrollment_requests.
    require_approval: Mapped[bool] = mapped_column(Boolean, server_default=false())


class EnrollmentRequestRow(Base):
    """The CSR an order that requires approval was enrolled with, and the decision on it:
    one per order (the order's reference names it)."""

    __tablename__ = "enrollment_requests"
    __table_args__ = (Index("ix_enrollment_requests_status_created_at", "status", "created_at"),)

    order_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("orders.id"), primary_key=True)
    identity_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("identities.id"))
    csr_der: Mapped[bytes] = mapped_column(LargeBinary)
    csr_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    decided_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)


class CertificateRow(Base):
    __tablename__ = "certificates"
    __table_args__ = (Index("ix_certificates_status_not_after", "status", "not_after"),)

    # The issuing CA's key id (ca.certificates.KeyId), lower-case hex. A serial is unique per
    # issuer (RFC 5280 4.1.2.2): the primary key (issuer_key_id, serial) guarantees it.
    issuer_key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Lower-case hex; indexed too, for the administrator's lookups by serial alone.
    serial: Mapped[str] = mapped_column(String(40), primary_key=True, index=True)
    identity_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("identities.id"), index=True)
    order_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("orders.id"))
    # The certificate this one renewed; a certificate has at most one live successor.
    renewal_of: Mapped[str | None] = mapped_column(String(40), index=True)
    profile: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    public_key_sha256: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    not_before: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    not_after: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    issued_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    der: Mapped[bytes | None] = mapped_column(LargeBinary)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    revocation_reason: Mapped[str | None] = mapped_column(String(32))
    invalidity_date: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class SubscriberKeyRow(Base):
    """Every public key we were asked to certify, bound to the one identity that proved it
    holds it. The row is also the lock that orders issuance against a key-compromise report:
    both read it FOR UPDATE, so neither can miss the other."""

    __tablename__ = "subscriber_keys"

    # SHA-256 of the SubjectPublicKeyInfo, lower-case hex.
    public_key_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    identity_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("identities.id"), index=True)
    bound_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    # Set once, for ever: no certificate is issued for this key again.
    compromised_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class AuditEventRow(Base):
    """Append-only (database triggers refuse UPDATE and DELETE) and hash-chained: each row
    carries the hash of the one before, so a changed, removed or inserted row shows."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # Position in the chain: 1, 2, 3, ... without gaps.
    seq: Mapped[int] = mapped_column(Integer, unique=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)
    action: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(200))
    source: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    identity_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    order_reference: Mapped[str | None] = mapped_column(String(32))
    serial: Mapped[str | None] = mapped_column(String(40))
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[str] = mapped_column(Text)
    # HMAC of (seq, hash) under the audit key (audit.AuditSeal); NULL before sealing began.
    mac: Mapped[str | None] = mapped_column(String(64))


class RevocationStateRow(Base):
    """Per CA: a revision counted up by every revocation, and the newest CRL published.

    Instances compare `revision` with `crl_revision` to know a new CRL is due, and share the
    CRL number sequence, so cRLNumber only grows whichever instance signs.
    """

    __tablename__ = "revocation_state"

    # The CA's subjectKeyIdentifier, lower-case hex.
    issuer_key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    revision: Mapped[int] = mapped_column(Integer)
    # The last cRLNumber handed out; the published CRL's own number is crl_number.
    last_crl_number: Mapped[int] = mapped_column(Integer)
    crl_number: Mapped[int | None] = mapped_column(Integer)
    crl_revision: Mapped[int | None] = mapped_column(Integer)
    crl_this_update: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    crl_next_update: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    crl_der: Mapped[bytes | None] = mapped_column(LargeBinary)


class OcspResponderRow(Base):
    """Delegated OCSP responder certificates we issued (recorded before they are used). The
    newest one of a CA is the whole cluster's (revocation/responders.py): its key is here
    wrapped under a key kept outside the database (`wrapped_key`), or it is on the shared
    PKCS#11 token under `key_label`. Rows from before both columns name no usable key."""

    __tablename__ = "ocsp_responders"

    serial: Mapped[str] = mapped_column(String(40), primary_key=True)
    issuer_key_id: Mapped[str] = mapped_column(String(64), index=True)
    not_before: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    not_after: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    der: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    key_label: Mapped[str | None] = mapped_column(String(200))


class OcspResponseRow(Base):
    """Pre-produced OCSP responses (one CertID, no nonce), signed by one instance and served
    by all until `refresh_at`. `status` is what the response says, compared with the
    certificate's status read in the same transaction before one is served; a revocation
    deletes the certificate's rows in its own transaction as well."""

    __tablename__ = "ocsp_responses"

    issuer_key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    serial: Mapped[str] = mapped_column(String(40), primary_key=True)
    # The CertID's hash algorithm: the issuer's hashes follow from it and the issuer.
    hash_name: Mapped[str] = mapped_column(String(16), primary_key=True)
    status: Mapped[str] = mapped_column(String(100))
    der: Mapped[bytes] = mapped_column(LargeBinary)
    this_update: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    next_update: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)
    refresh_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class ServiceCertificateRow(Base):
    """The service's own TLS certificates, issued by its CA when the operator configures none
    (ca/server_tls.py; recorded before the listener uses them, so OCSP answers "good")."""

    __tablename__ = "service_certificates"

    serial: Mapped[str] = mapped_column(String(40), primary_key=True)
    issuer_key_id: Mapped[str] = mapped_column(String(64), index=True)
    not_before: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    not_after: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    der: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class SourceFailureRow(Base):
    """Failed authentications by source address, one row each, so that every instance of a
    cluster counts those of all (throttle.py); rows older than the window are removed."""

    __tablename__ = "source_failures"
    __table_args__ = (Index("ix_source_failures_source_at", "source", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class AuditChainRow(Base):
    """The chain's head, one row: appending locks it, so appends are strictly one after another
    on SQLite and on PostgreSQL alike."""

    __tablename__ = "audit_chain"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
    # Where sealing with the audit key began, and that point's seal; then the head's own seal.
    anchor_seq: Mapped[int | None] = mapped_column(Integer)
    anchor_mac: Mapped[str | None] = mapped_column(String(64))
    mac: Mapped[str | None] = mapped_column(String(64))


class ApiTokenRow(Base):
    """Admin API tokens: only a hash of the secret is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # "hmac-sha256$<hex>" (keyed, see registration/codes.py) or a bare SHA-256 of older tokens.
    secret_hash: Mapped[str] = mapped_column(String(100))
    scopes: Mapped[str] = mapped_column(String(100))
    # Set: the token only sees identities of this CVR.
    cvr: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    # Set for a token an IdM got by logging in with its system certificate: the token is good
    # only while that certificate (and the identity's administration grant) is.
    certificate_issuer_key_id: Mapped[str | None] = mapped_column(String(64))
    certificate_serial: Mapped[str | None] = mapped_column(String(40))
    identity_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)


class AdministrationGrantRow(Base):
    """A system identity an unconfined administrator has given the "administration" right:
    its certificates may administer the identities of its organisation, with these scopes."""

    __tablename__ = "administration_grants"

    identity_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("identities.id"), primary_key=True
    )
    # Comma-separated, a subset of read, order, revoke.
    scopes: Mapped[str] = mapped_column(String(100))
    granted_by: Mapped[str] = mapped_column(String(200))
    granted_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class ConsoleSessionRow(Base):
    """Web console sessions (console/sessions.py), so that a restart signs no one out and the
    instances behind one name share them. Only the HMAC of the cookie's secret is kept; the
    CSRF token and the key of the one-time codes shown on the next page derive from the
    secret, so this table alone opens no session and shows no code."""

    __tablename__ = "console_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(100))
    principal_kind: Mapped[str] = mapped_column(String(32))
    principal_name: Mapped[str] = mapped_column(String(200))
    scopes: Mapped[str] = mapped_column(String(100))
    cvr: Mapped[str | None] = mapped_column(String(8))
    source: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    last_seen: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    certificate_sha256: Mapped[str | None] = mapped_column(String(64))
    token_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    # JSON: reference -> one-time code sealed (AES-GCM) under the key the cookie's secret gives.
    handouts: Mapped[str] = mapped_column(Text)
