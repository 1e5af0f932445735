"""What the instances of a cluster share through the database for OCSP, shown with two services
in this process on one SQLite file (tests/test_cluster.py has real processes on PostgreSQL):
one responder credential per CA, issued once and adopted; pre-produced responses signed once
and served by both; a revocation leaves no stored "good" to serve."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509 import ocsp

from est_ca.ca.certificates import Serial
from est_ca.clock import SettableClock
from est_ca.errors import ConfigurationError
from est_ca.revocation.state import StoredOcspResponse
from est_ca.service import Service
from tests.conftest import OpenService
from tests.helpers import ADMIN, KeyPool
from tests.revocation.helpers import issue, ocsp_request, random_nonce

Pair = Callable[..., Awaitable[tuple[Service, Service]]]


@pytest.fixture
def pair(open_service: OpenService, tmp_path: Path) -> Pair:
    """Two started services on one database sharing the secrets directory's keys (or, with
    `own_wrap_key`, each its own responder wrapping key)."""

    async def open_pair(*, own_wrap_key: bool = False) -> tuple[Service, Service]:
        database = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"

        def secrets(name: str) -> dict[str, str]:
            wrap = tmp_path / (f"wrap-{name}.key" if own_wrap_key else "wrap.key")
            return {
                "hmac_key_file": str(tmp_path / "hmac.key"),
                "audit_key_file": str(tmp_path / "audit.key"),
                "responder_wrap_key_file": str(wrap),
            }

        a = await open_service(database_url=database, secrets=secrets("a"))
        b = await open_service(database_url=database, secrets=secrets("b"))
        for service in (a, b):
            assert service.publishing is not None
            await service.publishing.start()
        return a, b

    return open_pair


async def _stop(*services: Service) -> None:
    for service in services:
        assert service.publishing is not None
        await service.publishing.stop()


def _issuer(service: Service) -> x509.Certificate:
    assert service.ca is not None
    return service.ca.certificate


async def _answer(service: Service, request: bytes) -> bytes:
    assert service.publishing is not None
    return (await service.publishing.responder.answer(request)).der


def _responder_serial(der: bytes) -> int:
    [responder] = ocsp.load_der_ocsp_response(der).certificates
    return responder.serial_number


def _key_id(service: Service) -> str:
    assert service.ca is not None
    return service.ca.key_identifier.hex()


async def _responder_rows(service: Service) -> int:
    async with service.store.read() as tx:
        return await tx.count_ocsp_responders(_key_id(service))


async def _stored(service: Service, serial: Serial) -> StoredOcspResponse | None:
    async with service.store.read() as tx:
        return await tx.ocsp_response(_key_id(service), serial, "sha1")


async def test_the_second_instance_adopts_the_responder_the_first_issued(pair: Pair) -> None:
    a, b = await pair()
    try:
        assert a.publishing is not None
        assert b.publishing is not None
        for keeper_a, keeper_b in zip(a.publishing._keepers, b.publishing._keepers, strict=True):
            assert keeper_a.current.serial == keeper_b.current.serial
        assert await _responder_rows(a) == 1
    finally:
        await _stop(a, b)


async def test_a_responder_due_for_renewal_is_renewed_once_and_adopted_by_both(
    pair: Pair, clock: SettableClock
) -> None:
    a, b = await pair()
    try:
        assert a.publishing is not None
        assert b.publishing is not None
        before = a.publishing._keepers[0].current.serial
        clock.advance(dt.timedelta(days=20))  # within responder_renew_days of its end
        await a.publishing.check()
        await b.publishing.check()
        after = a.publishing._keepers[0].current.serial
        assert after != before
        assert b.publishing._keepers[0].current.serial == after
        assert await _responder_rows(a) == 2
    finally:
        await _stop(a, b)


async def test_an_instance_that_cannot_unwrap_the_cluster_s_responder_key_does_not_start(
    pair: Pair,
) -> None:
    with pytest.raises(ConfigurationError, match="does not unwrap"):
        await pair(own_wrap_key=True)


async def test_a_response_pre_produced_by_one_instance_is_what_the_other_serves(
    pair: Pair, keys: KeyPool
) -> None:
    a, b = await pair()
    try:
        certificate = await issue(a, keys)
        request = ocsp_request(certificate, _issuer(a))
        first = await _answer(a, request)
        assert await _answer(b, request) == first
        assert ocsp.load_der_ocsp_response(first).certificate_status is ocsp.OCSPCertStatus.GOOD
    finally:
        await _stop(a, b)


async def test_a_revocation_deletes_the_stored_responses_in_its_transaction(
    pair: Pair, keys: KeyPool
) -> None:
    a, b = await pair()
    try:
        certificate = await issue(a, keys)
        serial = Serial(certificate.serial_number)
        await _answer(a, ocsp_request(certificate, _issuer(a)))
        stored = await _stored(a, serial)
        assert stored is not None
        assert stored.status == "good"
        await b.revocations.revoke_certificate(ADMIN, serial)
        assert await _stored(a, serial) is None
    finally:
        await _stop(a, b)


async def test_a_stored_good_response_is_never_served_for_a_revoked_certificate(
    pair: Pair, keys: KeyPool, clock: SettableClock
) -> None:
    """An instance that read "good" just before a revocation and stores its response just
    after it: the stored status no longer matches, so no instance serves it."""
    a, b = await pair()
    try:
        certificate = await issue(a, keys)
        serial = Serial(certificate.serial_number)
        request = ocsp_request(certificate, _issuer(a))
        good = await _answer(a, request)
        await a.revocations.revoke_certificate(ADMIN, serial)
        now = clock.now()
        async with a.store.write() as tx:  # the late writer
            await tx.keep_ocsp_response(
                _key_id(a),
                serial,
                "sha1",
                StoredOcspResponse(
                    status="good",
                    der=good,
                    this_update=now,
                    next_update=now + dt.timedelta(days=1),
                    refresh_at=now + dt.timedelta(hours=12),
                ),
                now,
            )
        answer = ocsp.load_der_ocsp_response(await _answer(b, request))
        assert answer.certificate_status is ocsp.OCSPCertStatus.REVOKED
    finally:
        await _stop(a, b)


async def test_a_response_with_a_nonce_is_signed_by_the_cluster_s_responder(
    pair: Pair, keys: KeyPool
) -> None:
    a, b = await pair()
    try:
        certificate = await issue(a, keys)
        request = ocsp_request(certificate, _issuer(a), nonce=random_nonce())
        assert _responder_serial(await _answer(a, request)) == _responder_serial(
            await _answer(b, request)
        )
    finally:
        await _stop(a, b)
