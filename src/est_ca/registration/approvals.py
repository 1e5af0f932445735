"""Enrollment requests that wait for an administrator (RFC 7030 4.2.3, manual approval).

An order placed with `require_approval` does not issue on its first enrollment: the CSR is
stored as the order's one request and the client is told to come back (202, Retry-After). An
administrator approves or rejects it; the client's retry with the same credentials and the
byte-identical CSR then gets the certificate, or the refusal. One order, one request: the
order's reference names the request, for administrators and in the audit trail.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import uuid
from enum import StrEnum

REJECTED = "rejected by an administrator"
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
        """A retry must send the very CSR that was approved: compared as DER bytes (by hash),
        so an approval never covers a key or a name the administrator did not see."""
        return csr_digest(csr_der) == self.csr_sha256


def csr_digest(csr_der: bytes) -> str:
    return hashlib.sha256(csr_der).hexdigest()
