"""Tokens, driven directly: an administrator's certificate as a principal."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from est_ca.admin.access import PrincipalKind, Scope
from est_ca.service import Service


def administrator_certificate(subject: x509.Name) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


async def test_an_administrator_certificate_is_its_common_name_with_the_configured_scopes(
    service: Service,
) -> None:
    certificate = administrator_certificate(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Ada Admin")])
    )
    der = certificate.public_bytes(serialization.Encoding.DER)
    scopes = frozenset({Scope.READ, Scope.REVOKE})
    principal = await service.tokens.authenticate_certificate(
        der, scopes=scopes, source="192.0.2.9"
    )
    assert principal.kind is PrincipalKind.ADMIN_CERTIFICATE
    assert principal.name == "Ada Admin"
    assert principal.scopes == scopes
    assert principal.cvr is None
    [used] = await service.audit.events(action="admin.certificate_used")
    assert used.actor == principal.actor
    assert used.serial == format(certificate.serial_number, "x")


async def test_a_certificate_without_a_common_name_is_named_by_its_whole_subject(
    service: Service,
) -> None:
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Ops")])
    der = administrator_certificate(subject).public_bytes(serialization.Encoding.DER)
    principal = await service.tokens.authenticate_certificate(
        der, scopes=frozenset({Scope.READ}), source=None
    )
    assert principal.name == "O=Ops"
