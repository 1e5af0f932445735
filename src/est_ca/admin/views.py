"""JSON views of identities, orders and certificates: one shape for the API and `--json`."""

from __future__ import annotations

import datetime as dt
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from est_ca.admin.access import ApiToken
from est_ca.audit import AuditEvent
from est_ca.ca.certificates import CertificateRecord
from est_ca.registration.approvals import EnrollmentRequest
from est_ca.registration.identities import Identity
from est_ca.registration.orders import Order, OrderState, PlacedOrder
from est_ca.registration.organisations import Organisation

# Short names for subject attributes that RFC 4514 would print as dotted OIDs.
_ATTRIBUTE_NAMES = {
    NameOID.ORGANIZATION_IDENTIFIER: "organizationIdentifier",
    NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.SURNAME: "SN",
    NameOID.GIVEN_NAME: "GN",
}


def _time(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def organisation_view(organisation: Organisation) -> dict[str, Any]:
    return {
        "cvr": organisation.cvr,
        "name": organisation.name,
        "email_domains": list(organisation.email_domains),
        "status": organisation.status.value,
        "created_at": _time(organisation.created_at),
    }


def identity_view(identity: Identity) -> dict[str, Any]:
    return {
        "id": str(identity.id),
        "type": identity.type.value,
        "display_name": identity.display_name,
        "organisation_name": identity.organisation_name,
        "cvr": identity.cvr,
        "given_name": identity.given_name,
        "surname": identity.surname,
        "email": identity.email,
        "status": identity.status.value,
        "external_id": identity.external_id,
        "created_at": _time(identity.created_at),
    }


def order_view(order: Order, state: OrderState) -> dict[str, Any]:
    return {
        "reference": order.reference,
        "identity_id": str(order.identity_id),
        "profile": order.profile,
        # null: placed before CA labels, enrolled under the default label
        "ca_label": order.ca_label,
        "state": state.value,
        "failed_attempts": order.failed_attempts,
        "created_at": _time(order.created_at),
        "expires_at": _time(order.expires_at),
        "certificate_serial": order.certificate_serial.hex if order.certificate_serial else None,
        "require_approval": order.require_approval,
    }


def request_view(request: EnrollmentRequest) -> dict[str, Any]:
    """An enrollment request awaiting (or past) an administrator's decision: what the
    administrator decides on is the CSR, so its subject and key are shown with its hash."""
    view: dict[str, Any] = {
        "order_reference": request.order_reference,
        "identity_id": str(request.identity_id),
        "status": request.status.value,
        "csr_sha256": request.csr_sha256,
        "created_at": _time(request.created_at),
        "decided_at": _time(request.decided_at),
        "decided_by": request.decided_by,
        "reason": request.reason,
    }
    try:
        csr = x509.load_der_x509_csr(request.csr_der)
        view["csr_subject"] = _visible(csr.subject.rfc4514_string())
        view["csr_pem"] = csr.public_bytes(serialization.Encoding.PEM).decode("ascii")
    except ValueError:  # stored only after the CSR checks passed; never expected
        view["csr_subject"] = None
        view["csr_pem"] = None
    return view


def _visible(text: str) -> str:
    """A client's text as an administrator may be shown it: RFC 4514 escapes neither control
    characters nor other invisible ones, and a CSR subject carrying ESC or CR could redraw the
    terminal the approver reads `est-ca request list` in. Each such character is written as
    \\uXXXX instead."""
    return "".join(ch if ch.isprintable() else f"\\u{ord(ch):04x}" for ch in text)


def placed_order_view(placed: PlacedOrder, state: OrderState) -> dict[str, Any]:
    """The only view that carries a one-time code: the answer to placing the order."""
    return order_view(placed.order, state) | {"one_time_code": placed.one_time_code}


def certificate_view(record: CertificateRecord, *, with_pem: bool = False) -> dict[str, Any]:
    certificate = x509.load_der_x509_certificate(record.der) if record.der else None
    view: dict[str, Any] = {
        "serial": record.serial.hex,
        "issuer_key_id": record.issuer_key_id.hex,
        "identity_id": str(record.identity_id),
        "profile": record.profile,
        "status": record.status.value,
        "subject": certificate.subject.rfc4514_string(_ATTRIBUTE_NAMES) if certificate else None,
        "not_before": _time(record.not_before),
        "not_after": _time(record.not_after),
        "renewal_of": record.renewal_of.hex if record.renewal_of else None,
        "revoked_at": _time(record.revoked_at),
        "revocation_reason": record.revocation_reason.value if record.revocation_reason else None,
        "invalidity_date": _time(record.invalidity_date),
    }
    if with_pem:
        view["pem"] = (
            certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
            if certificate
            else None
        )
    return view


def token_view(token: ApiToken) -> dict[str, Any]:
    return {
        "name": token.name,
        "scopes": ",".join(sorted(token.scopes)),
        "cvr": token.cvr,
        "created_at": _time(token.created_at),
        "expires_at": _time(token.expires_at),
        "revoked_at": _time(token.revoked_at),
        "last_used_at": _time(token.last_used_at),
    }


def audit_view(seq: int | None, event: AuditEvent) -> dict[str, Any]:
    return ({"seq": seq} if seq is not None else {}) | event.fields()
