"""The OCSP responder: statuses, CertID hashes, nonces, pre-produced responses, validity
windows, malformed requests, the delegated responder certificate, and lint."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from typing import Any, Protocol, TypeVar

import hypothesis.strategies as st
import pytest
from asn1crypto import core
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import event, given

from est_ca.ca.certificates import Serial
from est_ca.ca.signing import ocsp_response
from est_ca.clock import SettableClock
from est_ca.revocation import ocsp as ocsp_module
from est_ca.revocation.ocsp import MAX_CERT_IDS
from est_ca.revocation.publishing import RevocationPublishing
from est_ca.revocation.reasons import RevocationReason
from est_ca.service import Service
from tests.helpers import ADMIN, KeyPool
from tests.lint import blocking, ocsp_findings
from tests.revocation.helpers import (
    cert_id,
    issue,
    ocsp_request,
    random_nonce,
    record_under_other_issuer,
    several_request,
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


async def test_a_burst_of_requests_for_one_certid_is_answered_with_one_signature(
    service: Service,
    keys: KeyPool,
    publishing: RevocationPublishing,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    certificate = await issue(service, keys)
    request = ocsp_request(certificate, issuing(service))
    signatures = []
    signing = ocsp_response

    def counted(*arguments: Any) -> bytes:
        signatures.append(1)
        return signing(*arguments)

    monkeypatch.setattr(ocsp_module, "ocsp_response", counted)
    answers = await asyncio.gather(*(publishing.responder.answer(request) for _ in range(10)))
    assert len({answer.der for answer in answers}) == 1
    assert len(signatures) == 1


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


# -- several CertIDs in one request ---------------------------------------------------------


async def test_several_certids_are_answered_each_in_the_order_asked_under_one_signature(
    service: Service, keys: KeyPool, publishing: RevocationPublishing
) -> None:
    good = await issue(service, keys, 0)
    revoked = await issue(service, keys, 1)
    await service.revocations.revoke_certificate(
        ADMIN, Serial(revoked.serial_number), RevocationReason.KEY_COMPROMISE
    )
    never_issued = _with_serial(good, Serial.random().value)
    asked = [good, revoked, never_issued, good]  # a duplicate is answered where it is listed
    answer = await publishing.responder.answer(
        several_request([_cert_id(service, certificate) for certificate in asked])
    )
    response = ocsp.load_der_ocsp_response(answer.der)
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    verify_signature(response)
    assert [(single.serial_number, single.certificate_status) for single in response.responses] == [
        (good.serial_number, ocsp.OCSPCertStatus.GOOD),
        (revoked.serial_number, ocsp.OCSPCertStatus.REVOKED),
        (never_issued.serial_number, ocsp.OCSPCertStatus.UNKNOWN),
        (good.serial_number, ocsp.OCSPCertStatus.GOOD),
    ]
    [_, revoked_single, *_] = response.responses
    assert revoked_single.revocation_reason is x509.ReasonFlags.key_compromise
    assert not answer.cacheable


async def test_a_nonce_beside_several_certids_is_echoed(
    service: Service, keys: KeyPool, publishing: RevocationPublishing
) -> None:
    certificate = await issue(service, keys)
    nonce = random_nonce()
    cert_id = _cert_id(service, certificate)
    response = await ask(publishing, several_request([cert_id, cert_id], nonce=nonce))
    assert response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce
    assert len(list(response.responses)) == 2


async def test_up_to_20_certids_are_answered_and_21_are_a_malformed_request(
    service: Service, keys: KeyPool, publishing: RevocationPublishing
) -> None:
    cert_id = _cert_id(service, await issue(service, keys))
    response = await ask(publishing, several_request([cert_id] * MAX_CERT_IDS))
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert len(list(response.responses)) == MAX_CERT_IDS == 20
    too_many = await ask(publishing, several_request([cert_id] * (MAX_CERT_IDS + 1)))
    assert too_many.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


async def test_certids_of_two_cas_we_serve_in_one_request_are_unauthorized(
    service: Service, keys: KeyPool, publishing: RevocationPublishing
) -> None:
    """Each CA's responder is authorized for that CA's certificates only (RFC 6960 4.2.2.2):
    no one signature can answer for the issuing CA's and the root's certificates together."""
    assert service.ca is not None
    leaf = _cert_id(service, await issue(service, keys))
    issuing_ca = _cert_id(service, service.ca.certificate, service.ca.root)
    response = await ask(publishing, several_request([leaf, issuing_ca]))
    assert response.response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED


async def test_a_foreign_issuers_certid_beside_ours_is_unknown_and_ours_answered(
    service: Service, keys: KeyPool, publishing: RevocationPublishing
) -> None:
    certificate = await issue(service, keys)
    foreign_issuer = _with_serial(certificate, 7)
    foreign = _cert_id(service, certificate, foreign_issuer)
    response = await ask(publishing, several_request([foreign, _cert_id(service, certificate)]))
    assert [single.certificate_status for single in response.responses] == [
        ocsp.OCSPCertStatus.UNKNOWN,
        ocsp.OCSPCertStatus.GOOD,
    ]
    responder = verify_signature(response)
    assert service.ca is not None
    responder.verify_directly_issued_by(service.ca.certificate)


async def test_a_single_certid_request_still_gets_the_pre_produced_response(
    service: Service, keys: KeyPool, publishing: RevocationPublishing
) -> None:
    cert_id = _cert_id(service, await issue(service, keys))
    await publishing.responder.answer(several_request([cert_id, cert_id]))
    single = await publishing.responder.answer(several_request([cert_id]))
    assert single.cacheable
    assert (await publishing.responder.answer(several_request([cert_id]))).der == single.der


# -- malformed requests ---------------------------------------------------------------------


def _cert_id(
    service: Service, certificate: x509.Certificate, issuer: x509.Certificate | None = None
) -> asn1_ocsp.CertId:
    return cert_id(certificate, issuer or issuing(service))


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
    long_hash = asn1_ocsp.CertId(
        {
            "hash_algorithm": {"algorithm": "sha1"},
            "issuer_name_hash": b"\0" * 32,
            "issuer_key_hash": cert_id["issuer_key_hash"].native,
            "serial_number": certificate.serial_number,
        }
    )
    negative = asn1_ocsp.CertId({**cert_id.native, "serial_number": -certificate.serial_number})
    return {
        f"{MAX_CERT_IDS + 1} requests": several_request([cert_id] * (MAX_CERT_IDS + 1)),
        "no request": _request(request_list=[]),
        "version 2": _request(version=1, request_list=[{"req_cert": cert_id}]),
        "md5 certid": _request(request_list=[{"req_cert": md5_id}]),
        "sha1 certid with a 32-octet hash": _request(request_list=[{"req_cert": long_hash}]),
        "sha1 certid with a 32-octet hash beside a sound one": several_request(
            [cert_id, long_hash]
        ),
        "negative serial": _request(request_list=[{"req_cert": negative}]),
        "unknown critical single request extension": _request(
            request_list=[{"req_cert": cert_id, "single_request_extensions": [critical_unknown]}]
        ),
        "unknown critical extension beside several certids": _request(
            request_list=[{"req_cert": cert_id}, {"req_cert": cert_id}],
            request_extensions=[critical_unknown],
        ),
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


MALFORMED = [
    f"{MAX_CERT_IDS + 1} requests",
    "no request",
    "version 2",
    "md5 certid",
    "sha1 certid with a 32-octet hash",
    "sha1 certid with a 32-octet hash beside a sound one",
    "negative serial",
    "unknown critical single request extension",
    "unknown critical extension beside several certids",
    "unknown critical extension",
    "duplicate nonce",
    "garbage",
    "empty",
    "trailing bytes",
    "truncated",
]


@pytest.mark.parametrize("name", MALFORMED)
async def test_every_malformed_request_gets_malformed_request(
    service: Service, keys: KeyPool, publishing: RevocationPublishing, name: str
) -> None:
    requests = await malformed_requests(service, keys)
    assert sorted(requests) == sorted(MALFORMED)
    answer = await publishing.responder.answer(requests[name])
    response = ocsp.load_der_ocsp_response(answer.der)
    assert response.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    assert not answer.cacheable


_CERT_ID_HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha1": hashes.SHA1(),  # noqa: S303 - CertIDs name certificates; SHA-1 is RFC 5019's
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}
HASH_ALGORITHMS = [*_CERT_ID_HASHES, "md5", "1.2.3.4.5"]
OCSP_STATUSES = {
    ocsp.OCSPResponseStatus.SUCCESSFUL,
    ocsp.OCSPResponseStatus.MALFORMED_REQUEST,
    ocsp.OCSPResponseStatus.UNAUTHORIZED,
}


_T = TypeVar("_T")


class Draw(Protocol):
    """What `st.data().draw` is (hypothesis's DrawFn also asks for a __signature__)."""

    def __call__(self, strategy: st.SearchStrategy[_T], label: object = ...) -> _T: ...


def _one_in(draw: Draw, n: int) -> bool:
    return draw(st.integers(1, n)) == 1


def _extensions(draw: Draw, odd: bool) -> list[dict[str, object]]:
    """A nonce; or nonces of any length, unknown extensions critical or not, duplicates."""
    made: list[dict[str, object]] = []
    for _ in range(draw(st.integers(0, 2 if odd else 1))):
        if draw(st.booleans()) or not odd:
            nonce = core.OctetString(draw(st.binary(min_size=0 if odd else 1, max_size=40)))
            extn_id, value = "1.3.6.1.5.5.7.48.1.2", nonce.dump()  # id-pkix-ocsp-nonce
        else:
            extn_id, value = "1.3.6.1.4.1.99999." + str(draw(st.integers(0, 3))), draw(st.binary())
        made.append(
            {
                "extn_id": extn_id,
                "critical": odd and _one_in(draw, 3),
                "extn_value": core.ParsableOctetString(value),
            }
        )
    return made


def _cert_id_fields(draw: Draw, issuer: x509.Certificate, serials: list[int], odd: bool) -> object:
    """A CertID of `issuer`, or an odd one: other hashes, algorithms and serials."""
    algorithm = draw(st.sampled_from(HASH_ALGORITHMS if odd else list(_CERT_ID_HASHES)))
    hashes_of = draw(st.sampled_from(["issuer", "right length", "any"])) if odd else "issuer"
    if algorithm in _CERT_ID_HASHES and hashes_of == "issuer":
        asked = ocsp.load_der_ocsp_request(
            ocsp_request(issuer, issuer, algorithm=_CERT_ID_HASHES[algorithm])
        )
        name_hash, key_hash = asked.issuer_name_hash, asked.issuer_key_hash
    elif algorithm in _CERT_ID_HASHES and hashes_of == "right length":
        size = _CERT_ID_HASHES[algorithm].digest_size
        name_hash = draw(st.binary(min_size=size, max_size=size))
        key_hash = draw(st.binary(min_size=size, max_size=size))
    else:
        name_hash, key_hash = draw(st.binary(max_size=70)), draw(st.binary(max_size=70))
    serial = draw(
        st.integers(-(1 << 170), 1 << 170) if odd else st.sampled_from([*serials, 0, 1, 7])
    )
    return {
        "hash_algorithm": {"algorithm": algorithm},
        "issuer_name_hash": name_hash,
        "issuer_key_hash": key_hash,
        "serial_number": serial,
    }


def _mangled_request(draw: Draw, served: list[x509.Certificate]) -> bytes:
    """A request put together from odd parts, then perhaps damaged byte by byte."""
    serials = [certificate.serial_number for certificate in served]
    issuer = draw(st.sampled_from(served))
    count = 0 if _one_in(draw, 20) else draw(st.integers(1, MAX_CERT_IDS + 1))
    odd_request = _one_in(draw, 3)
    entries = []
    for _ in range(count):
        odd = odd_request and _one_in(draw, 4)
        # Now and then a CertID of the other CA we serve: unauthorized together.
        entry_issuer = draw(st.sampled_from(served)) if _one_in(draw, 10) else issuer
        entry: dict[str, object] = {"req_cert": _cert_id_fields(draw, entry_issuer, serials, odd)}
        if odd and _one_in(draw, 3):
            entry["single_request_extensions"] = _extensions(draw, odd)
        entries.append(entry)
    tbs: dict[str, object] = {"request_list": entries}
    if odd_request and _one_in(draw, 5):
        tbs["version"] = draw(st.integers(0, 3))
    if extensions := _extensions(draw, odd_request):
        tbs["request_extensions"] = extensions
    der = _request(**tbs)
    damage = draw(st.sampled_from(["none", "flip", "cut", "insert"])) if odd_request else "none"
    if damage == "none" or not der:
        return der
    at = draw(st.integers(0, len(der) - 1))
    if damage == "flip":
        return der[:at] + bytes([der[at] ^ draw(st.integers(1, 255))]) + der[at + 1 :]
    if damage == "cut":
        return der[:at]
    return der[:at] + draw(st.binary(min_size=1, max_size=8)) + der[at:]


@given(data=st.data())
async def test_a_mangled_request_gets_an_ocsp_status_never_an_error(
    service: Service, publishing: RevocationPublishing, data: st.DataObject
) -> None:
    """Whatever arrives: a signed successful response or an OCSP error status, never a crash
    (which the HTTP layer would turn into a 500)."""
    assert service.ca is not None
    served = [service.ca.certificate, service.ca.root]
    request = _mangled_request(data.draw, served)
    answer = await publishing.responder.answer(request)
    response = ocsp.load_der_ocsp_response(answer.der)
    assert response.response_status in OCSP_STATUSES
    event(response.response_status.name)  # --hypothesis-show-statistics: how deep it got
    if response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL:
        verify_signature(response)


# -- lint -------------------------------------------------------------------------------------


async def test_pkilint_finds_no_error_in_good_revoked_unknown_several_and_malformed_responses(
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
    several = several_request([_cert_id(service, c) for c in (good, revoked, unknown)])
    answers.append(await publishing.responder.answer(several))
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


def _long_form(der: bytes) -> bytes:
    """`der` with every constructed value's length in the long form: valid BER, not DER."""
    out = b""
    offset = 0
    while offset < len(der):
        tag, first = der[offset], der[offset + 1]
        if first < 0x80:
            size, start = first, offset + 2
        else:
            count = first & 0x7F
            size = int.from_bytes(der[offset + 2 : offset + 2 + count], "big")
            start = offset + 2 + count
        content = der[start : start + size]
        if tag & 0x20:  # constructed: its children too
            content = _long_form(content)
            out += bytes((tag, 0x82)) + len(content).to_bytes(2, "big") + content
        else:
            out += bytes((tag,)) + der[offset + 1 : start] + content
        offset = start + size
    return out


@pytest.mark.parametrize("where", ["every length", "the nonce's own octet string"])
async def test_a_one_certid_request_in_ber_not_der_is_a_malformed_request(
    service: Service, keys: KeyPool, publishing: RevocationPublishing, where: str
) -> None:
    """DER is checked by cryptography's strict parser first, asn1crypto's re-encoding second:
    neither may let BER through (RFC 6960 requests are DER)."""
    certificate = await issue(service, keys)
    if where == "every length":
        request = _long_form(ocsp_request(certificate, issuing(service), nonce=random_nonce()))
    else:
        nonce = random_nonce(16)
        request = bytes(
            asn1_ocsp.OCSPRequest(
                {
                    "tbs_request": {
                        "request_list": [{"req_cert": cert_id(certificate, issuing(service))}],
                        "request_extensions": [
                            {
                                "extn_id": "nonce",
                                "critical": False,
                                "extn_value": core.ParsableOctetString(b"\x04\x81\x10" + nonce),
                            }
                        ],
                    }
                }
            ).dump()
        )
    answer = await publishing.responder.answer(request)
    assert answer.statuses == ("malformed_request",)
