"""The OCSP responder's in-memory status index: statuses answered without a database read,
kept current by the revocation rounds, and serials it does not know read at a bounded rate.

The publishing task is started (keys, responders, index loaded) and then stopped, so that no
background round reads the database while the reads of the answers are counted.
"""

from __future__ import annotations

import pytest
from asn1crypto import core
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.x509 import ocsp

from est_ca.ca.certificates import Serial
from est_ca.revocation import ocsp as ocsp_module
from est_ca.revocation.publishing import RevocationPublishing
from est_ca.revocation.reasons import RevocationReason
from est_ca.revocation.revoker import Revocation
from est_ca.service import Service
from est_ca.store.store import Store
from tests.helpers import ADMIN, KeyPool
from tests.revocation.helpers import cert_id, issue, ocsp_request, random_nonce, several_request


@pytest.fixture
async def quiet_publishing(service: Service) -> RevocationPublishing:
    """Started as `serve` starts it (index loaded), then its background task stopped."""
    assert service.publishing is not None
    await service.publishing.start()
    await service.publishing.stop()
    return service.publishing


def count_reads(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every read transaction the store opens from now on, counted (and still made)."""
    reads: list[int] = []
    real = store.read

    def counted() -> object:
        reads.append(1)
        return real()

    monkeypatch.setattr(store, "read", counted)
    return reads


def issuing(service: Service) -> x509.Certificate:
    assert service.ca is not None
    return service.ca.certificate


async def status_of(publishing: RevocationPublishing, request: bytes) -> ocsp.OCSPCertStatus:
    answer = await publishing.responder.answer(request)
    return ocsp.load_der_ocsp_response(answer.der).certificate_status


async def test_a_certificate_issued_before_start_is_answered_without_a_database_read(
    service: Service, keys: KeyPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    certificate = await issue(service, keys)
    assert service.publishing is not None
    await service.publishing.start()
    await service.publishing.stop()
    reads = count_reads(service.store, monkeypatch)
    for _ in range(3):
        request = ocsp_request(certificate, issuing(service), nonce=random_nonce())
        assert await status_of(service.publishing, request) is ocsp.OCSPCertStatus.GOOD
    assert reads == []


async def test_a_certificate_issued_since_start_is_read_once_then_answered_from_memory(
    service: Service,
    keys: KeyPool,
    quiet_publishing: RevocationPublishing,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    certificate = await issue(service, keys)  # as another instance would: the index missed it
    reads = count_reads(service.store, monkeypatch)
    for _ in range(3):
        request = ocsp_request(certificate, issuing(service), nonce=random_nonce())
        assert await status_of(quiet_publishing, request) is ocsp.OCSPCertStatus.GOOD
    assert len(reads) == 1


async def test_a_revocation_seen_by_a_round_reaches_the_index(
    service: Service, keys: KeyPool, quiet_publishing: RevocationPublishing
) -> None:
    """Revoked without this process's notification (as another instance does): the next
    publishing round (woken by PostgreSQL's NOTIFY, or polling) makes the index say so."""
    certificate = await issue(service, keys)
    request = ocsp_request(certificate, issuing(service), nonce=random_nonce())
    assert await status_of(quiet_publishing, request) is ocsp.OCSPCertStatus.GOOD
    assert service.ca is not None
    async with service.store.write() as tx:
        record = await tx.get_certificate(service.ca.key_id, Serial(certificate.serial_number))
        assert record is not None
        revocation = Revocation(reason=RevocationReason.SUPERSEDED, at=service.clock.now())
        await service.revocations.revoke_in(tx, ADMIN, record, revocation)
    await quiet_publishing.check()
    request = ocsp_request(certificate, issuing(service), nonce=random_nonce())
    assert await status_of(quiet_publishing, request) is ocsp.OCSPCertStatus.REVOKED


async def test_a_local_revocation_is_answered_at_once_before_any_round(
    service: Service, keys: KeyPool, quiet_publishing: RevocationPublishing
) -> None:
    certificate = await issue(service, keys)
    request = ocsp_request(certificate, issuing(service))
    assert await status_of(quiet_publishing, request) is ocsp.OCSPCertStatus.GOOD
    await service.revocations.revoke_certificate(ADMIN, Serial(certificate.serial_number))
    assert await status_of(quiet_publishing, request) is ocsp.OCSPCertStatus.REVOKED


async def test_a_serial_found_unknown_is_not_read_again_at_once(
    service: Service,
    keys: KeyPool,
    quiet_publishing: RevocationPublishing,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    certificate = await issue(service, keys)
    reads = count_reads(service.store, monkeypatch)
    never_issued = _random_serials(certificate, issuing(service), 1)
    for _ in range(3):
        request = several_request(never_issued, nonce=random_nonce())
        assert await status_of(quiet_publishing, request) is ocsp.OCSPCertStatus.UNKNOWN
    assert len(reads) == 1


async def test_a_flood_of_random_serials_is_read_at_a_bounded_rate_and_answered_unknown(
    service: Service,
    keys: KeyPool,
    quiet_publishing: RevocationPublishing,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ocsp_module, "MISS_READS_PER_SECOND", 0.0)
    certificate = await issue(service, keys)
    reads = count_reads(service.store, monkeypatch)
    burst = int(ocsp_module.MISS_READ_BURST) // ocsp_module.MAX_CERT_IDS
    for _ in range(burst + 5):
        flood = _random_serials(certificate, issuing(service), ocsp_module.MAX_CERT_IDS)
        answer = await quiet_publishing.responder.answer(several_request(flood))
        assert set(answer.statuses) == {"unknown"}
    assert len(reads) == burst
    # Past the budget, a single CertID's "unknown" is a guess: never cached, here or by HTTP.
    single = several_request(_random_serials(certificate, issuing(service), 1))
    answer = await quiet_publishing.responder.answer(single)
    assert answer.statuses == ("unknown",)
    assert not answer.cacheable


def _random_serials(
    certificate: x509.Certificate, issuer: x509.Certificate, count: int
) -> list[asn1_ocsp.CertId]:
    """CertIDs of our CA for serials never issued."""
    ids = []
    for _ in range(count):
        one = cert_id(certificate, issuer).copy()
        one["serial_number"] = core.Integer(Serial.random().value)
        ids.append(one)
    return ids
