"""The service's TLS: a server context that asks for (but does not require) client certificates.

Client certificates are verified against our own CA chain during the handshake, with one
deliberate exception: OpenSSL is told not to check validity times. An expired client
certificate therefore reaches the application, which refuses it with a 403 that says why,
instead of a handshake failure the client cannot explain. Revocation, expiry and "is this
certificate in our database" are the registration authority's checks, made per request.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from est_ca.private_files import write_private

# X509_V_FLAG_NO_CHECK_TIME from OpenSSL's x509_vfy.h; Python's ssl module has no name for it.
X509_V_FLAG_NO_CHECK_TIME = 0x200000
TLS_CERT_VALIDITY = dt.timedelta(days=825)


def server_context(
    cert_file: Path, key_file: Path, client_ca_pem: bytes | None, *, check_time: bool = False
) -> ssl.SSLContext:
    """`check_time`: also refuse expired client certificates in the handshake (administrators);
    EST leaves that to the service so the client learns why (see the module's docstring)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # TLS 1.2 stays on: libest's client speaks nothing newer.
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    context.options |= ssl.OP_NO_RENEGOTIATION
    if client_ca_pem is not None:
        context.verify_mode = ssl.CERT_OPTIONAL
        context.load_verify_locations(cadata=client_ca_pem.decode("ascii"))
        if not check_time:
            context.verify_flags = context.verify_flags | X509_V_FLAG_NO_CHECK_TIME
    return context


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
