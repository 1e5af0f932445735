"""The OCSP responder: statuses, CertID hashes, nonces, pre-produced responses, validity
windows, malformed requests, the delegated responder certificate, and lint."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from asn1crypto import core
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from est_ca.ca.certificates import Serial
from est_ca.clock import SettableClock
from est_ca.revocation.publishing import RevocationPublishing
from est_ca.revocation.reasons import RevocationReason
from est_ca.service import Service
from tests.helpers import ADMIN, KeyPool
from tests.lint import blocking, ocsp_findings
from tests.revocation.helpers import (
    issue,
    ocsp_request,
    random_nonce,
    record_under_other_issuer,
)


async def ask(publishing: RevocationPublishing, request: bytes) -> ocsp.OCSPResponse:
    answer = await publishing.responder.answer(request)
    return ocsp.load_der_ocsp_response(answer.der)


def issuing(service: Service) -> x509.Certificate:
    assert service.ca is not None
    return service.ca.certificate


def verify_signature(response: ocsp.OCSPResponse) -> x509.Certificate:
    """The response verifies with its embedded responder certificate; returns that one."""
    [responder] = response.certificates
    key = responder.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert response.signature_hash_algorithm is not None
    key.verify(
        response.signature, response.tbs_response_bytes, ec.ECDSA(response.signature_hash_algorithm)
    )
    return responder


@pytest.mark.parametrize(
    "algorithm",
    [hashes.SHA1(), hashes.SHA256()],  # noqa: S303 - CertIDs name certificates; SHA-1 is RFC 5019's
    ids=["sha1", "sha256"],
)
async def test_an_issued_certificate_is_good_under_either_certid_hash(
    service: Service,
    keys: KeyPool,
    publishing: RevocationPublishing,
    algorithm: hashes.HashAlgorithm,
) -> None:
    certificate = await issue(service, keys)
    response = await ask(
        publishing, ocsp_request(certificate, issuing(service), algorithm=algorithm)
    )
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert response.serial_number == certificate.serial_number
    assert response.hash_algorithm.name == algorithm.name
    verify_signature(response)


async def test_a_revoked_certificate_is_revoked_with_time_and_reason_at_once(
    service: Service, keys: KeyPool, publishing: RevocationPublishing
) -> None:
    certificate = await issue(service, keys)
    request = ocsp_request(certificate, issuing(service))
    assert (await ask(publishing, request)).certificate_status is ocsp.OCSPCertStatus.GOOD
    await service.revocations.revoke_certificate(
        ADMIN, Serial(certificate.serial_number), RevocationReason.KEY_COMPROMISE
    )
    response = await ask(publishing, request)  # no poll, no sleep: the cache was dropped
    assert response.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert response.revocation_time_utc == service.clock.now()
    assert response.revocation_reason is x509.ReasonFlags.key_compromise


async def test_an_unspecified_revocation_has_no_reason(
    service: Service, keys: KeyPool, publishing: RevocationPublishing
) -> None:
    certificate = await issue(service, keys)
    await service.revocations.revoke_certificate(ADMIN, Serial(certificate.serial_number))
    response = await ask(publishing, ocsp_request(certificate, issuing(service)))
    assert response.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert response.revocation_reason is None


async def test_a_serial_we_never_issued_is_unknown(
    service: Service, keys: KeyPool, publishing: RevocationPublishing
) -> None:
    certificate = await issue(service, keys)
    forged = _with_serial(certificate, Serial.random().value)
    response = await ask(publishing, ocsp_request(forged, issuing(service)))
    assert response.certificate_status is ocsp.OCSPCertStatus.UNKNOWN


async def test_a_serial_only_another_issuer_has_is_unknown(
    service: Service, keys: KeyPool, publishing: RevocationPublishing
) -> None:
    certificate = await issue(service, keys)
    theirs = Serial.random()
    await record_under_other_issuer(service, theirs)
    forged = _with_serial(certificate, theirs.value)
    response = await ask(publishing, ocsp_request(forged, issuing(service)))
    assert response.certificate_status is ocsp.OCSPCertStatus.UNKNOWN


async def test_another_issuers_revocation_of_the_same_serial_leaves_ours_good(
    service: Service, keys: KeyPool, publishing: RevocationPublishing
) -> None:
    certificate = await issue(service, keys)
    await record_under_other_issuer(service, Serial(certificate.serial_number), revoked=True)
    response = await ask(publishing, ocsp_request(certificate, issuing(service)))
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD


@pytest.mark.parametrize("serial", [0, 1 << 160])
async def test_a_serial_outside_rfc_5280s_range_is_unknown(
    service: Service, publishing: RevocationPublishing, serial: int
) -> None:
    issuer = issuing(service)
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate_by_hash(
            hashlib.sha1(issuer.subject.public_bytes()).digest(),  # noqa: S324 - a CertID
            x509.SubjectKeyIdentifier.from_public_key(issuer.public_key()).digest,
            serial,
            hashes.SHA1(),  # noqa: S303 - RFC 5019's CertID hash
        )
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    response = await ask(publishing, request)
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.certificate_status is ocsp.OCSPCertStatus.UNKNOWN


async def test_a_certificate_of_an_issuer_we_do_not_serve_is_unknown(
    service: Service, keys: KeyPool, publishing: RevocationPublishing
) -> None:
    certificate = await issue(service, keys)
    foreign_key = rsa.generate_private_key(65537, 2048)
    foreign = _with_serial(certificate, certificate.serial_number, issuer_key=foreign_key)
    response = await ask(publishing, ocsp_request(certificate, foreign))
    assert response.certificate_status is ocsp.OCSPCertStatus.UNKNOWN


def _cert_id_of(response: ocsp.OCSPResponse) -> tuple[str, bytes, bytes, int]:
    return (
        response.hash_algorithm.name,
        response.issuer_name_hash,
        response.issuer_key_hash,
        response.serial_number,
    )


def _cert_id_request(
    name_hash: bytes, key_hash: bytes, serial: int, algorithm: hashes.HashAlgorithm
) -> bytes:
    request = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        name_hash, key_hash, serial, algorithm
    )
    return request.build().public_bytes(serialization.Encoding.DER)


async def test_one_serial_under_two_unknown_issuers_gets_each_its_own_certid(
    service: Service, keys: KeyPool, publishing: RevocationPublishing
) -> None:
    """A pre-produced response answers exactly the CertID it was made for: a response naming
    another issuer's hashes would tell the second relying party nothing about its certificate."""
    serial = (await issue(service, keys)).serial_number
    sha1 = hashes.SHA1()  # noqa: S303 - RFC 5019's CertID hash
    first = _cert_id_request(b"\x01" * 20, b"\x02" * 20, serial, sha1)
    second = _cert_id_request(b"\x03" * 20, b"\x04" * 20, serial, sha1)
    for request in (first, second, first):
        asked = ocsp.load_der_ocsp_request(request)
        response = await ask(publishing, request)
        assert _cert_id_of(response) == (
            "sha1",
            asked.issuer_name_hash,
            asked.issuer_key_hash,
            serial,
        )
        assert response.certificate_status is ocsp.OCSPCertStatus.UNKNOWN


async def test_one_certificate_asked_by_sha1_and_sha256_certids_gets_each_its_own_certid(
    service: Service, keys: KeyPool, publishing: RevocationPublishing
) -> None:
    certificate = await issue(service, keys)
    for algorithm in (hashes.SHA1(), hashes.SHA256(), hashes.SHA1()):  # noqa: S303 - RFC 5019
        request = ocsp_request(certificate, issuing(service), algorithm=algorithm)
        asked = ocsp.load_der_ocsp_request(request)
        response = await ask(publishing, request)
        assert _cert_id_of(response) == (
            algorithm.name,
            asked.issuer_name_hash,
            asked.issuer_key_hash,
            certificate.serial_number,
        )
        assert response.certificate_status is ocsp.OCSPCertStatus.GOOD


async def test_the_root_answers_for_the_issuing_ca(
    service: Service, publishing: RevocationPublishing
) -> None:
    assert service.ca is not None
    response = await ask(publishing, ocsp_request(service.ca.certificate, service.ca.root))
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
    responder = verify_signature(response)
    assert responder.issuer == service.ca.root.subject


@pytest.mark.parametrize("octets", [1, 16, 32])
async def test_a_nonce_of_1_to_32_octets_is_echoed_in_a_fresh_response(
    service: Service, keys: KeyPool, publishing: RevocationPublishing, octets: int
) -> None:
    certificate = await issue(service, keys)
    nonce = random_nonce(octets)
    response = await ask(publishing, ocsp_request(certificate, issuing(service), nonce=nonce))
    assert response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce


@pytest.mark.parametrize("octets", [0, 33, 64])
async def test_a_nonce_outside_1_to_32_octets_is_a_malformed_request(
    service: Service, keys: KeyPool, publishing: RevocationPublishing, octets: int
) -> None:
    certificate = await issue(service, keys)
    response = await ask(
        publishing, ocsp_request(certificate, issuing(service), nonce=random_nonce(octets))
    )
    assert response.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


async def test_a_request_without_a_nonce_gets_the_pre_produced_response(
    service: Service, keys: KeyPool, publishing: RevocationPublishing, clock: SettableClock
) -> None:
    certificate = await issue(service, keys)
    request = ocsp_request(certificate, issuing(service))
    first = await publishing.responder.answer(request)
    clock.advance(dt.timedelta(hours=35))
    assert (await publishing.responder.answer(request)).der == first.der
    clock.advance(dt.timedelta(hours=1))  # half of the 72 h validity: re-signed
    refreshed = await publishing.responder.answer(request)
    assert refreshed.der != first.der
    assert first.this_update is not None
    assert refreshed.this_update == first.this_update + dt.timedelta(hours=36)


async def test_the_validity_window_is_within_8_hours_and_10_days(
    service: Service, keys: KeyPool, publishing: RevocationPublishing
) -> None:
    certificate = await issue(service, keys)
    response = await ask(publishing, ocsp_request(certificate, issuing(service)))
    assert response.next_update_utc is not None
    window = response.next_update_utc - response.this_update_utc
    assert dt.timedelta(hours=8) <= window <= dt.timedelta(days=10)
    assert window == dt.timedelta(hours=service.settings.ocsp.response_validity_hours)
    assert response.this_update_utc == service.clock.now()
    assert abs(response.produced_at_utc - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)
    [responder] = response.certificates
    assert response.next_update_utc <= responder.not_valid_after_utc


async def test_the_responder_is_a_delegated_ocsp_signing_certificate_we_recorded(
    service: Service, keys: KeyPool, publishing: RevocationPublishing
) -> None:
    certificate = await issue(service, keys)
    response = await ask(publishing, ocsp_request(certificate, issuing(service)))
    responder = verify_signature(response)
    assert service.ca is not None
    responder.verify_directly_issued_by(service.ca.certificate)
    assert responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == (
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING])
    )
    assert responder.extensions.get_extension_for_class(x509.OCSPNoCheck)
    key_bits = responder.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    assert response.responder_key_hash == hashlib.sha1(key_bits).digest()  # noqa: S324
    async with service.store.read() as tx:
        assert await tx.is_ocsp_responder(
            service.ca.key_identifier.hex(), Serial(responder.serial_number)
        )


async def test_the_responder_certificate_is_replaced_before_it_expires(
    service: Service, keys: KeyPool, publishing: RevocationPublishing, clock: SettableClock
) -> None:
    certificate = await issue(service, keys)
    request = ocsp_request(certificate, issuing(service), nonce=random_nonce())
    [before] = (await ask(publishing, request)).certificates
    clock.advance(dt.timedelta(days=19))
    await publishing.check()
    [same] = (await ask(publishing, request)).certificates
    assert same.serial_number == before.serial_number
    clock.advance(dt.timedelta(days=1))  # 10 days before expiry: renewed
    await publishing.check()
    response = await ask(publishing, request)
    [after] = response.certificates
    assert after.serial_number != before.serial_number
    assert response.next_update_utc is not None
    assert response.next_update_utc <= after.not_valid_after_utc


# -- malformed requests ---------------------------------------------------------------------


def _cert_id(service: Service, certificate: x509.Certificate) -> asn1_ocsp.CertId:
    request = asn1_ocsp.OCSPRequest.load(ocsp_request(certificate, issuing(service)))
    return request["tbs_request"]["request_list"][0]["req_cert"]


def _request(**tbs: object) -> bytes:
    return bytes(asn1_ocsp.OCSPRequest({"tbs_request": tbs}).dump())


async def malformed_requests(service: Service, keys: KeyPool) -> dict[str, bytes]:
    certificate = await issue(service, keys)
    cert_id = _cert_id(service, certificate)
    md5_id = asn1_ocsp.CertId(
        {
            "hash_algorithm": {"algorithm": "md5"},
            "issuer_name_hash": b"\0" * 16,
            "issuer_key_hash": b"\0" * 16,
            "serial_number": certificate.serial_number,
        }
    )
    critical_unknown = {
        "extn_id": "1.3.6.1.4.1.99999.7",
        "critical": True,
        "extn_value": core.ParsableOctetString(core.Null().dump()),
    }
    nonce = {
        "extn_id": "nonce",
        "critical": False,
        "extn_value": core.ParsableOctetString(core.OctetString(b"x" * 16).dump()),
    }
    valid = ocsp_request(certificate, issuing(service))
    return {
        "two requests": _request(request_list=[{"req_cert": cert_id}, {"req_cert": cert_id}]),
        "no request": _request(request_list=[]),
        "version 2": _request(version=1, request_list=[{"req_cert": cert_id}]),
        "md5 certid": _request(request_list=[{"req_cert": md5_id}]),
        "unknown critical extension": _request(
            request_list=[{"req_cert": cert_id}], request_extensions=[critical_unknown]
        ),
        "duplicate nonce": _request(
            request_list=[{"req_cert": cert_id}], request_extensions=[nonce, nonce]
        ),
        "garbage": b"\x30\x03garbage",
        "empty": b"",
        "trailing bytes": valid + b"\x00",
        "truncated": valid[:-3],
    }


async def test_every_malformed_request_gets_malformed_request(
    service: Service, keys: KeyPool, publishing: RevocationPublishing
) -> None:
    for name, request in (await malformed_requests(service, keys)).items():
        answer = await publishing.responder.answer(request)
        response = ocsp.load_der_ocsp_response(answer.der)
        assert response.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST, name
        assert not answer.cacheable


# -- lint -------------------------------------------------------------------------------------


async def test_pkilint_finds_no_error_in_good_revoked_unknown_and_malformed_responses(
    service: Service, keys: KeyPool, publishing: RevocationPublishing
) -> None:
    good = await issue(service, keys, 0)
    revoked = await issue(service, keys, 1)
    await service.revocations.revoke_certificate(
        ADMIN, Serial(revoked.serial_number), RevocationReason.SUPERSEDED
    )
    unknown = _with_serial(good, Serial.random().value)
    answers = [
        await publishing.responder.answer(ocsp_request(c, issuing(service), nonce=n))
        for c in (good, revoked, unknown)
        for n in (None, random_nonce())
    ]
    answers.append(await publishing.responder.answer(b"garbage"))
    for answer in answers:
        findings = ocsp_findings(answer.der)
        assert blocking(findings) == [], findings


def _with_serial(
    certificate: x509.Certificate, serial: int, issuer_key: rsa.RSAPrivateKey | None = None
) -> x509.Certificate:
    """A look-alike certificate (for CertIDs only: it is never validated)."""
    key = issuer_key or rsa.generate_private_key(65537, 2048)
    builder = (
        x509.CertificateBuilder()
        .issuer_name(certificate.issuer)
        .subject_name(certificate.subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(certificate.not_valid_before_utc)
        .not_valid_after(certificate.not_valid_after_utc)
    )
    return builder.sign(key, hashes.SHA256())
