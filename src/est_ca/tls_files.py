"""The listeners' own TLS certificate when the operator gives none: issued by the default
issuing CA at every start that needs one (`ensure_service_certificate`, called by Service.open
once the store is open), and a self-signed one that tests use as an operator's certificate.

It is a file on disk, not HTTP, so it lives outside web/: the web layer only reads it
(est_ca.web.tls.server_context).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
from pathlib import Path

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from est_ca.audit import SERVICE, AuditEvent, Outcome
from est_ca.ca.authority import CertificateAuthority
from est_ca.ca.certificates import Serial
from est_ca.ca.server_tls import service_certificate, why_reissue
from est_ca.ca.signing import SignatureScheme
from est_ca.clock import Clock
from est_ca.errors import BadRequest
from est_ca.private_files import write_private
from est_ca.store.store import Store

_log = structlog.get_logger(__name__)

TLS_CERT_VALIDITY = dt.timedelta(days=825)


def generate_self_signed(cert_file: Path, key_file: Path, host_names: list[str]) -> None:
    """A P-256 TLS certificate for the given names (localhost and loopback addresses included)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    names: list[x509.GeneralName] = []
    for name in ["localhost", "127.0.0.1", "::1", *host_names]:
        try:
            entry: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(name))
        except ValueError:
            entry = x509.DNSName(name)
        if entry not in names:
            names.append(entry)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "est-ca TLS (self-signed demo)"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "est-ca Demo"),
        ]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + TLS_CERT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file.parent.mkdir(parents=True, exist_ok=True)
    write_private(
        key_file,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


async def ensure_service_certificate(
    store: Store,
    ca: CertificateAuthority,
    scheme: SignatureScheme,
    cert_file: Path,
    key_file: Path,
    names: tuple[x509.GeneralName, ...],
    clock: Clock,
) -> x509.Certificate:
    """The listener's certificate from `ca`: the one in the files while it still fits and is
    recorded, else a new one (ca/server_tls.why_reissue says when), recorded in the store
    before its files are written, so no listener ever serves a certificate the store (and
    so OCSP) does not know. Returns the certificate the files now hold."""
    certificate, key = await asyncio.to_thread(_read, cert_file, key_file)
    now = clock.now()
    reason = why_reissue(certificate, key, ca, names, now)
    if reason is None and certificate is not None:
        try:
            serial = Serial(certificate.serial_number)
        except BadRequest:
            reason = "not recorded"
        else:
            async with store.read() as tx:
                if not await tx.is_service_certificate(ca.key_id.hex, serial):
                    reason = "not recorded"
    if reason is None and certificate is not None:
        return certificate
    serial = Serial.random()
    new_key, issued = await asyncio.to_thread(_new_credential, ca, scheme, serial, now, names)
    async with store.write() as tx:  # recorded before it is ever used
        await tx.insert_service_certificate(
            serial=serial,
            issuer_key_id=ca.key_id.hex,
            not_before=issued.not_valid_before_utc,
            not_after=issued.not_valid_after_utc,
            der=issued.public_bytes(serialization.Encoding.DER),
            created_at=now,
        )
        await tx.append_audit(
            AuditEvent(
                action="service_certificate.issued",
                outcome=Outcome.SUCCESS,
                actor=SERVICE,
                at=now,
                serial=serial.hex,
                reason=reason,
                details={"not_after": issued.not_valid_after_utc.isoformat()},
            )
        )
    chain = (issued, ca.certificate, *ca.chain[:-1])  # the root stays the client's anchor
    await asyncio.to_thread(_write, cert_file, key_file, new_key, chain)
    _log.info(
        "TLS certificate issued by the CA",
        path=str(cert_file),
        serial=serial.hex,
        reason=reason,
        not_after=issued.not_valid_after_utc.isoformat(),
    )
    return issued


def _read(
    cert_file: Path, key_file: Path
) -> tuple[x509.Certificate | None, ec.EllipticCurvePrivateKey | None]:
    """The certificate (the first in the file) and its key, each None when missing or
    unreadable: either way a new one is issued. Blocking: run it on a thread."""
    try:
        certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
    except (OSError, ValueError):
        certificate = None
    try:
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        key = None
    return certificate, key if isinstance(key, ec.EllipticCurvePrivateKey) else None


def _new_credential(
    ca: CertificateAuthority,
    scheme: SignatureScheme,
    serial: Serial,
    now: dt.datetime,
    names: tuple[x509.GeneralName, ...],
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Blocking (a new key, a CA signature): run it on a thread."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key, service_certificate(ca, scheme, key.public_key(), serial, now, names)


def _write(
    cert_file: Path,
    key_file: Path,
    key: ec.EllipticCurvePrivateKey,
    chain: tuple[x509.Certificate, ...],
) -> None:
    """Key first, then the certificate, each replaced in one step (0600): a crash between the
    two leaves a certificate whose key is not beside it, which the next start replaces.
    Blocking (fsync): run it on a thread."""
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private(key_file, key_pem, replace=True)
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    write_private(cert_file, pem, replace=True)
