"""The service's own TLS certificate, issued by its default issuing CA when the operator
configures none.

Why: a client that bootstraps trust from /cacerts (RFC 7030 4.1.1: fetch it unverified, take
the root, then verify everything with that root alone) can then verify the listener too, with
no second trust anchor. The content is fixed here rather than in an OCES3 profile under
ca-config/, so no EST order can ever ask for it: serverAuth only, digitalSignature only, the
service's names as subjectAltName, one year but never past the CA's own end.

Pure functions: what to issue and whether the one on disk still fits. Recording it and
writing the files is tls_files.py's job (an issued certificate is recorded before it is used).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Iterable

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from est_ca.ca.authority import CertificateAuthority
from est_ca.ca.building import own_certificate_builder
from est_ca.ca.certificates import Serial
from est_ca.ca.signing import SignatureScheme, draft_certificate, signed_with
from est_ca.ca.spki import public_key_der
from est_ca.errors import ConfigurationError

SERVICE_TLS_VALIDITY = dt.timedelta(days=365)
# Re-issued at a start when less than this is left.
SERVICE_TLS_RENEW_BEFORE = dt.timedelta(days=30)
# Always named: a client on the host itself reaches the service by these.
LOCAL_NAMES = ("localhost", "127.0.0.1")
# A DNS name as a subjectAltName holds it (RFC 5280 4.2.1.6): ASCII labels, a wildcard first.
_HOST_NAME = re.compile(
    r"(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)


def service_names(host: str, extra: Iterable[str]) -> tuple[x509.GeneralName, ...]:
    """The subjectAltName entries: `host` (an IP address entry when it is one, a DNS name
    otherwise; a wildcard bind address names no host), localhost and 127.0.0.1, then the
    configured extra names, each once, in that order."""
    names: list[x509.GeneralName] = []
    for name in (host, *LOCAL_NAMES, *extra):
        name = name.strip()
        if not name:
            continue
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            if not _HOST_NAME.fullmatch(name):
                raise ConfigurationError(
                    f"{name!r} is neither an IP address nor a DNS name (service.host, "
                    "tls.names); write an internationalised name in its xn-- form"
                ) from None
            entry: x509.GeneralName = x509.DNSName(name.lower())
        else:
            if address.is_unspecified:
                continue
            entry = x509.IPAddress(address)
        if entry not in names:
            names.append(entry)
    return tuple(names)


def service_certificate(
    ca: CertificateAuthority,
    scheme: SignatureScheme,
    public_key: ec.EllipticCurvePublicKey,
    serial: Serial,
    now: dt.datetime,
    names: tuple[x509.GeneralName, ...],
) -> x509.Certificate:
    """The listener's certificate, signed through the CA's Signer (a token or a key file
    alike). Blocking (a CA signature): run it on a worker thread."""
    not_before = now.replace(microsecond=0)
    not_after = min(not_before + SERVICE_TLS_VALIDITY, ca.certificate.not_valid_after_utc)
    first = names[0].value if names else "localhost"
    builder = own_certificate_builder(
        ca,
        common_name=str(first),
        public_key=public_key,
        serial=serial,
        not_before=not_before,
        not_after=not_after,
        purpose=ExtendedKeyUsageOID.SERVER_AUTH,
    ).add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    return signed_with(draft_certificate(builder, scheme), ca.signer, scheme)


def why_reissue(
    certificate: x509.Certificate | None,
    key: ec.EllipticCurvePrivateKey | None,
    ca: CertificateAuthority,
    names: tuple[x509.GeneralName, ...],
    now: dt.datetime,
) -> str | None:
    """Why the certificate on disk must be replaced, or None when it still fits: missing or
    unreadable (with its key), issued by another CA (a self-signed one of earlier versions, a
    CA since replaced), its key not the one beside it (a crash between the two writes), less
    than SERVICE_TLS_RENEW_BEFORE left, or other names than configured."""
    if certificate is None or key is None:
        return "missing"
    if certificate.issuer != ca.subject:
        return "another issuer"
    try:
        certificate.verify_directly_issued_by(ca.certificate)
    except (ValueError, TypeError, InvalidSignature):
        return "another issuer"
    if public_key_der(certificate.public_key()) != public_key_der(key.public_key()):
        return "key mismatch"
    # Due, unless it already ends with the CA: a new one could not last longer.
    if (
        certificate.not_valid_after_utc - now < SERVICE_TLS_RENEW_BEFORE
        and certificate.not_valid_after_utc < ca.certificate.not_valid_after_utc
    ):
        return "due"
    try:
        present = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return "names changed"
    if set(present.value) != set(names):
        return "names changed"
    return None
