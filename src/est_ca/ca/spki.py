"""SubjectPublicKeyInfo: the DER by which two keys are compared, and the bits that get hashed.

Key identifiers (RFC 5280 4.2.1.2 method 1), an OCSP responder's KeyHash and a CertID's
issuerKeyHash (RFC 6960 4.1.1, 4.2.1) all hash the subjectPublicKey BIT STRING's bits, not the
whole SubjectPublicKeyInfo: one function extracts them for all three.
"""

from __future__ import annotations

from asn1crypto import keys
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes


def public_key_der(key: CertificatePublicKeyTypes) -> bytes:
    """SubjectPublicKeyInfo DER, the form in which two keys are compared."""
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def subject_public_key_bits(spki_der: bytes) -> bytes:
    """The subjectPublicKey BIT STRING's bits (without its unused-bits octet) of a
    SubjectPublicKeyInfo in DER: what key identifiers and OCSP key hashes are hashes of."""
    return bytes(keys.PublicKeyInfo.load(spki_der)["public_key"].contents[1:])
