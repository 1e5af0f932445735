"""The listeners' own TLS certificate when the operator gives none: a self-signed one, written
on first start (bootstrap) and by tests.

It is a file on disk, not HTTP, so it lives outside web/: the first start writes it without
loading the web layer, which only reads it (est_ca.web.tls.server_context).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from est_ca.private_files import write_private

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
