"""Issuing a certificate to revoke, and asking OCSP about it, for the revocation tests."""

from __future__ import annotations

import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from est_ca.service import Service
from tests.helpers import KeyPool, csr_der, make_csr, new_order, new_system


async def issue(service: Service, keys: KeyPool, index: int = 0) -> x509.Certificate:
    assert service.authority is not None
    placed = await new_order(service, await new_system(service, f"system-{index}"))
    return await service.authority.enroll_with_order(
        placed.order.reference,
        placed.one_time_code,
        csr_der(make_csr(keys.rsa(index).key)),
        source="test",
    )


def ocsp_request(
    certificate: x509.Certificate,
    issuer: x509.Certificate,
    *,
    algorithm: hashes.HashAlgorithm | None = None,
    nonce: bytes | None = None,
) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(
        certificate,
        issuer,
        algorithm or hashes.SHA1(),  # noqa: S303 - RFC 5019's CertID hash
    )
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def random_nonce(octets: int = 16) -> bytes:
    return os.urandom(octets)
