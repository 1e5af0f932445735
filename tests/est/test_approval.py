"""Manual approval (RFC 7030 4.2.3) over real TLS: curl and strongSwan's pki as the clients.

An order placed with approval required answers its enrollment 202 + Retry-After and stores
the CSR; an administrator decides; the client's retry with the same credentials and the same
CSR gets the certificate or the refusal.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest
from cryptography import x509

from est_ca.ca.certificates import CertificateStatus, Serial
from est_ca.config import Settings
from est_ca.registration.approvals import RequestStatus, csr_digest
from est_ca.registration.orders import OrderStatus
from est_ca.server import Server
from est_ca.service import Service
from tests.conftest import CaMaterial, make_settings
from tests.est.test_real_clients import openssl_csr_der, pki_report, pki_trust
from tests.helpers import (
    ADMIN,
    PKCS10,
    CurlResult,
    KeyPool,
    credentials,
    csr_base64,
    curl_est,
    make_csr,
    new_order,
    new_system,
    pki,
    print_certs,
)

RETRY_AFTER = 1
# Fewer than the polls test_polling_is_not_counted_as_failed_authentication makes.
FAILURES_PER_SOURCE = 3


@pytest.fixture
def settings(tmp_path: Path, ca_material: CaMaterial) -> Settings:
    return make_settings(
        tmp_path,
        ca_material,
        orders={"approval_retry_after_seconds": RETRY_AFTER},
        limits={"failures_per_source": FAILURES_PER_SOURCE},
    )


async def approval_order(service: Service) -> tuple[str, str]:
    return credentials(await new_order(service, await new_system(service), require_approval=True))


async def enroll(server: Server, ca: CaMaterial, order: tuple[str, str], body: Path) -> CurlResult:
    return await curl_est(
        server, "simpleenroll", body, "-u", ":".join(order), *PKCS10, trust=ca.tls_cert
    )


def csr_file(tmp: Path, keys: KeyPool, index: int, name: str = "csr.b64") -> Path:
    path = tmp / name
    path.write_bytes(csr_base64(make_csr(keys.rsa(index).key)))
    return path


def assert_pending(response: CurlResult) -> None:
    assert response.status == 202, response.text
    assert response.headers["retry-after"] == str(RETRY_AFTER)
    assert "pkcs7" not in response.headers["content-type"]
    assert "awaits an administrator's approval" in response.text


async def test_the_first_enrollment_is_stored_and_answered_202_with_retry_after(
    server: Server, service: Service, ca_material: CaMaterial, keys: KeyPool, tmp_path: Path
) -> None:
    order = await approval_order(service)
    body = csr_file(tmp_path, keys, 0)
    assert_pending(await enroll(server, ca_material, order, body))
    (request,) = await service.registry.list_requests(status=RequestStatus.PENDING)
    assert request.order_reference == order[0]
    assert request.csr_sha256 == csr_digest(base64.b64decode(body.read_bytes()))
    placed = await service.registry.get_order(order[0])
    assert placed.status is OrderStatus.PENDING  # the one-time code is not used up
    assert placed.certificate_serial is None


async def test_the_same_csr_after_approval_gets_the_certificate_with_the_same_code(
    server: Server, service: Service, ca_material: CaMaterial, keys: KeyPool, tmp_path: Path
) -> None:
    order = await approval_order(service)
    body = csr_file(tmp_path, keys, 0)
    assert_pending(await enroll(server, ca_material, order, body))
    assert_pending(await enroll(server, ca_material, order, body))  # polling, still pending
    await service.registry.approve_request(ADMIN, order[0])
    response = await enroll(server, ca_material, order, body)
    assert response.status == 200, response.text
    (certificate,) = await print_certs(response.body)
    assert certificate.public_key() == keys.rsa(0).key.public_key()
    consumed = await service.registry.get_order(order[0])
    assert consumed.status is OrderStatus.CONSUMED
    assert consumed.certificate_serial == Serial(certificate.serial_number)


async def test_a_rejected_request_is_refused_on_retry_with_the_reason(
    server: Server, service: Service, ca_material: CaMaterial, keys: KeyPool, tmp_path: Path
) -> None:
    order = await approval_order(service)
    body = csr_file(tmp_path, keys, 0)
    assert_pending(await enroll(server, ca_material, order, body))
    await service.registry.reject_request(ADMIN, order[0], "unknown device")
    response = await enroll(server, ca_material, order, body)
    assert response.status == 403, response.text
    assert "rejected by an administrator: unknown device" in response.text
    assert (await service.registry.get_order(order[0])).status is OrderStatus.CANCELLED


async def test_a_different_csr_on_retry_is_refused_and_the_pending_request_stays(
    server: Server, service: Service, ca_material: CaMaterial, keys: KeyPool, tmp_path: Path
) -> None:
    order = await approval_order(service)
    first = csr_file(tmp_path, keys, 0, "first.b64")
    assert_pending(await enroll(server, ca_material, order, first))
    other = csr_file(tmp_path, keys, 1, "other.b64")
    response = await enroll(server, ca_material, order, other)
    assert response.status == 409, response.text
    assert "retry with the CSR first sent" in response.text
    request = await service.registry.get_request(order[0])
    assert request.status is RequestStatus.PENDING
    assert request.csr_sha256 == csr_digest(base64.b64decode(first.read_bytes()))


async def test_a_different_csr_after_approval_is_refused_and_nothing_is_issued(
    server: Server, service: Service, ca_material: CaMaterial, keys: KeyPool, tmp_path: Path
) -> None:
    order = await approval_order(service)
    assert_pending(await enroll(server, ca_material, order, csr_file(tmp_path, keys, 0, "a")))
    await service.registry.approve_request(ADMIN, order[0])
    response = await enroll(server, ca_material, order, csr_file(tmp_path, keys, 1, "b"))
    assert response.status == 409, response.text
    assert (await service.registry.get_order(order[0])).status is OrderStatus.PENDING


async def test_polling_is_not_counted_as_failed_authentication(
    server: Server, service: Service, ca_material: CaMaterial, keys: KeyPool, tmp_path: Path
) -> None:
    order = await approval_order(service)
    body = csr_file(tmp_path, keys, 0)
    for _ in range(FAILURES_PER_SOURCE + 2):
        assert_pending(await enroll(server, ca_material, order, body))
    await service.registry.approve_request(ADMIN, order[0])
    assert (await enroll(server, ca_material, order, body)).status == 200


async def test_concurrent_retries_of_an_approved_request_issue_one_certificate(
    server: Server, service: Service, ca_material: CaMaterial, keys: KeyPool, tmp_path: Path
) -> None:
    """Each retry either wins the order's claim and issues, or is told to come back in a
    second (202) while it is issued, or, once issued, gets that certificate again: one
    certificate whatever the interleaving, and every client ends up holding it."""
    order = await approval_order(service)
    body = csr_file(tmp_path, keys, 0)
    assert_pending(await enroll(server, ca_material, order, body))
    await service.registry.approve_request(ADMIN, order[0])
    answers = await asyncio.gather(*(enroll(server, ca_material, order, body) for _ in range(6)))
    assert {a.status for a in answers} <= {200, 202}, [a.text for a in answers]
    assert any(a.status == 200 for a in answers)
    for index, answer in enumerate(answers):
        while answer.status == 202:
            assert answer.headers["retry-after"] == "1"
            await asyncio.sleep(1)
            answer = await enroll(server, ca_material, order, body)
        answers[index] = answer
    assert len({a.body for a in answers}) == 1
    (certificate,) = await print_certs(answers[0].body)
    placed = await service.registry.get_order(order[0])
    issued = await service.registry.list_certificates(
        identity_id=placed.identity_id, status=CertificateStatus.ISSUED
    )
    assert [record.serial for record in issued] == [Serial(certificate.serial_number)]


async def test_an_order_without_approval_still_issues_at_once(
    server: Server, service: Service, ca_material: CaMaterial, keys: KeyPool, tmp_path: Path
) -> None:
    order = credentials(await new_order(service, await new_system(service)))
    response = await enroll(server, ca_material, order, csr_file(tmp_path, keys, 0))
    assert response.status == 200, response.text
    assert await service.registry.list_requests() == []


async def test_strongswan_pki_polls_until_the_request_is_approved(
    server: Server, service: Service, ca_material: CaMaterial, keys: KeyPool, tmp_path: Path
) -> None:
    reference, code = await approval_order(service)
    csr = await openssl_csr_der(keys.rsa(0).path, tmp_path)
    polling = asyncio.create_task(
        pki(
            "--est",
            "--url",
            server.https_url,
            *pki_trust(ca_material),
            "--userpass",
            f"{reference}:{code}",
            "--in",
            csr,
            "--interval",
            "1",
            "--maxpolltime",
            "30",
            "--outform",
            "pem",
        )
    )
    for _ in range(100):
        if await service.registry.list_requests(status=RequestStatus.PENDING):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.5)  # pki has been told 202 and waits to poll again
    assert not polling.done()
    await service.registry.approve_request(ADMIN, reference)
    result = await polling
    assert result.returncode == 0, pki_report(result)
    certificate = x509.load_pem_x509_certificate(result.stdout)
    assert certificate.public_key() == keys.rsa(0).key.public_key()
    request = await service.registry.get_request(reference)
    assert request.csr_sha256 == csr_digest(csr.read_bytes())
