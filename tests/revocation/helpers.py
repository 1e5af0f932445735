"""Issuing a certificate to revoke, and asking OCSP about it, for the revocation tests."""

from __future__ import annotations

import os
from collections.abc import Sequence

from asn1crypto import core
from asn1crypto import ocsp as asn1_ocsp
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


def cert_id(
    certificate: x509.Certificate,
    issuer: x509.Certificate,
    algorithm: hashes.HashAlgorithm | None = None,
) -> asn1_ocsp.CertId:
    request = asn1_ocsp.OCSPRequest.load(ocsp_request(certificate, issuer, algorithm=algorithm))
    return request["tbs_request"]["request_list"][0]["req_cert"]


def several_request(cert_ids: Sequence[asn1_ocsp.CertId], nonce: bytes | None = None) -> bytes:
    """One request for several CertIDs, as `openssl ocsp -cert a.pem -cert b.pem` sends;
    cryptography's request builder takes only one."""
    tbs: dict[str, object] = {"request_list": [{"req_cert": c} for c in cert_ids]}
    if nonce is not None:
        tbs["request_extensions"] = [
            {
                "extn_id": "nonce",
                "critical": False,
                "extn_value": core.ParsableOctetString(core.OctetString(nonce).dump()),
            }
        ]
    return bytes(asn1_ocsp.OCSPRequest({"tbs_request": tbs}).dump())
