"""Issuing a certificate to revoke, and asking OCSP about it, for the revocation tests."""

from __future__ import annotations

import datetime as dt
import os
import secrets
from collections.abc import Sequence

from asn1crypto import core
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from est_ca.ca.certificates import CertificateRecord, CertificateStatus, KeyId, Serial
from est_ca.revocation.reasons import RevocationReason
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


# A CA this service does not serve; its certificates share the store with ours.
OTHER_ISSUER = KeyId("ab" * 20)


async def record_under_other_issuer(
    service: Service,
    serial: Serial,
    *,
    revoked: bool = False,
    issuer: KeyId = OTHER_ISSUER,
    der: bytes | None = None,
) -> None:
    """Record an issued (and perhaps revoked) certificate of `issuer` (by default a CA this
    service does not serve) with `serial`, directly through the store, as a second CA's
    issuance would; `der` is the certificate, else a stand-in with that serial."""
    identity = await new_system(service, f"other-{serial.hex[:12]}")
    now = service.clock.now()
    async with service.store.write() as tx:
        await tx.insert_reservation(
            CertificateRecord(
                serial=serial,
                issuer_key_id=issuer,
                identity_id=identity.id,
                order_id=None,
                renewal_of=None,
                profile="system",
                status=CertificateStatus.RESERVED,
                public_key_sha256=secrets.token_hex(32),
                created_at=now,
            )
        )
        await tx.mark_issued(
            issuer,
            serial,
            der=der or _stand_in(serial, now),
            not_before=now - dt.timedelta(days=1),
            not_after=now + dt.timedelta(days=30),
            issued_at=now,
        )
        if revoked:
            await tx.revoke_certificate(
                issuer, serial, reason=RevocationReason.KEY_COMPROMISE, at=now
            )


def _stand_in(serial: Serial, now: dt.datetime) -> bytes:
    """A real certificate with `serial`, for views that parse the stored DER."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "another CA's subscriber")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial.value)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
