"""Enrollment requests that wait for an administrator (RFC 7030 4.2.3, manual approval).

An order placed with `require_approval` does not issue on its first enrollment: the CSR is
stored as the order's one request and the client is told to come back (202, Retry-After). An
administrator approves or rejects it; the client's retry with the same credentials and the
same CSR (byte-identical, or differing only in its challengePassword: see `same_csr`) then
gets the certificate, or the refusal. One order, one request: the
order's reference names the request, for administrators and in the audit trail.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import uuid
from enum import StrEnum

from asn1crypto import csr as asn1_csr
from cryptography.x509.oid import AttributeOID

REJECTED = "rejected by an administrator"
# PKCS#9 challengePassword: under channel binding (RFC 7030 3.5) it carries the session's
# tls-unique, so a retry on a new connection carries another one.
_CHALLENGE_PASSWORD_OID = AttributeOID.CHALLENGE_PASSWORD.dotted_string
# The reason a pending request is given when its order is cancelled (or its identity disabled).
ORDER_CANCELLED = "its order was cancelled"


class RequestStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


@dataclasses.dataclass(frozen=True)
class EnrollmentRequest:
    """A CSR stored for an order that requires approval, and the decision on it."""

    order_id: uuid.UUID
    order_reference: str
    identity_id: uuid.UUID
    csr_der: bytes = dataclasses.field(repr=False)
    csr_sha256: str
    status: RequestStatus
    created_at: dt.datetime
    decided_at: dt.datetime | None = None
    decided_by: str | None = None
    reason: str | None = None

    @classmethod
    def submit(
        cls,
        *,
        order_id: uuid.UUID,
        order_reference: str,
        identity_id: uuid.UUID,
        csr_der: bytes,
        now: dt.datetime,
    ) -> EnrollmentRequest:
        return cls(
            order_id=order_id,
            order_reference=order_reference,
            identity_id=identity_id,
            csr_der=csr_der,
            csr_sha256=csr_digest(csr_der),
            status=RequestStatus.PENDING,
            created_at=now,
        )

    def same_csr(self, csr_der: bytes) -> bool:
        """A retry must send the very CSR that was approved, so an approval never covers a key
        or a name the administrator did not see: the same DER bytes, or the same request
        (version, subject, key and every attribute, extensions included) whose only difference
        is the challengePassword. A client bound to its TLS session (RFC 7030 3.5) must put a
        retry's new tls-unique there, as libest's client does; byte equality left every
        approval under a label requiring binding waiting forever."""
        if csr_digest(csr_der) == self.csr_sha256:
            return True
        retried = _request_content(csr_der)
        return retried is not None and retried == _request_content(self.csr_der)


def csr_digest(csr_der: bytes) -> str:
    return hashlib.sha256(csr_der).hexdigest()


def _request_content(csr_der: bytes) -> bytes | None:
    """What the CSR asks for, without its challengePassword and signature: the DER of its
    version, subject, public key and other attributes in order (each element carries its
    own length, so the concatenation is unambiguous). None: not a parseable CSR."""
    try:
        info = asn1_csr.CertificationRequest.load(csr_der, strict=True)[
            "certification_request_info"
        ]
        kept = [
            attribute.dump()
            for attribute in info["attributes"]
            if attribute["type"].dotted != _CHALLENGE_PASSWORD_OID
        ]
        return b"".join(
            [info["version"].dump(), info["subject"].dump(), info["subject_pk_info"].dump(), *kept]
        )
    except (ValueError, TypeError, KeyError):
        return None
