"""The CAs whose revocation status this service publishes: the issuing CA (or every listed
authority), and the root when its key is available.

Each has its own CRL (RFC 5280: one issuer per CRL, no indirect CRLs), its own delegated OCSP
responder, and is recognised in OCSP requests by the hashes of its name and key.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib

from est_ca.ca.authority import CertificateAuthority
from est_ca.ca.signing import SignatureScheme
from est_ca.ca.spki import public_key_der, subject_public_key_bits

# CertID hash algorithms we accept in OCSP requests (RFC 6960 clients send SHA-1 or SHA-256).
CERT_ID_HASHES = ("sha1", "sha256", "sha384", "sha512")


@dataclasses.dataclass(frozen=True)
class ServedIssuer:
    """One CA's publication: how its CRL and OCSP responses are signed and how long they live."""

    name: str
    ca: CertificateAuthority
    # How this CA signs CRLs and responder certificates.
    scheme: SignatureScheme
    crl_path: str
    crl_validity: dt.timedelta
    crl_refresh: dt.timedelta
    # True for the issuing CA: its CRL lists the subscribers' revoked certificates. The root's
    # lists revoked CA certificates, of which there are none.
    lists_subscribers: bool

    @functools.cached_property
    def key_id(self) -> str:
        """The CA's subjectKeyIdentifier in hex: how the store names the CA (once: every OCSP
        request looks its CA up by it)."""
        return self.ca.key_identifier.hex()

    @functools.cached_property
    def cert_id_hashes(self) -> dict[str, tuple[bytes, bytes]]:
        """(issuerNameHash, issuerKeyHash) for each accepted CertID hash algorithm: computed
        once (every OCSP request compares them; recomputing was a sixth of a cached answer)."""
        name = self.ca.certificate.subject.public_bytes()
        key_bits = subject_public_key_bits(public_key_der(self.ca.certificate.public_key()))
        return {
            algorithm: (
                hashlib.new(algorithm, name).digest(),
                hashlib.new(algorithm, key_bits).digest(),
            )
            for algorithm in CERT_ID_HASHES
        }
