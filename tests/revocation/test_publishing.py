"""The publishing task: it stops when asked, whatever it was about to do, and learns of other
instances' revocations when its listening connection is lost."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
from cryptography import x509
from cryptography.x509 import ocsp

from est_ca.ca.certificates import Serial
from est_ca.revocation.publishing import RevocationPublishing
from tests.conftest import OpenService
from tests.helpers import ADMIN, KeyPool
from tests.revocation.helpers import issue, ocsp_request


async def test_stopping_just_after_a_revocation_woke_the_task_stops_it(
    publishing: RevocationPublishing,
) -> None:
    """A stop (SIGTERM) in the moment between a revocation's wake-up and the round it starts
    must not be lost: the task once went on polling for ever and the shutdown hung."""
    publishing.revoked()
    await asyncio.sleep(0)  # the wake-up is delivered; the task has not run yet
    started = time.monotonic()
    stopping = asyncio.create_task(publishing.stop())
    await asyncio.wait([stopping], timeout=5)
    assert stopping.done(), "the publishing task ignored the stop"
    assert time.monotonic() - started < 1


async def _listening_backends(database_url: str, *, terminate: bool = False) -> int:
    """The database's connections whose last statement was LISTEN (cut them, if asked)."""
    connection = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        found = await connection.fetch(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND query LIKE 'LISTEN %'"
        )
        for row in found if terminate else []:
            await connection.execute("SELECT pg_terminate_backend($1)", row["pid"])
        return len(found)
    finally:
        await connection.close()


async def test_an_instance_whose_listening_connection_is_cut_still_learns_of_revocations(
    open_service: OpenService, postgres_url: str, keys: KeyPool, tmp_path: Path
) -> None:
    """Another instance's revocation normally arrives as a notification; with the listening
    connection gone, polling still brings it within poll_seconds, and the instance listens
    again."""
    shared = {
        "hmac_key_file": str(tmp_path / "hmac.key"),
        "audit_key_file": str(tmp_path / "audit.key"),
        "responder_wrap_key_file": str(tmp_path / "responder-wrap.key"),
    }
    a = await open_service(database_url=postgres_url, secrets=shared)
    b = await open_service(
        database_url=postgres_url, secrets=shared, revocation={"poll_seconds": 1}
    )
    assert b.publishing is not None
    await b.publishing.start()
    try:
        certificate = await issue(a, keys)
        issuer = x509.load_pem_x509_certificate(b.files.ca_cert.read_bytes())
        request = ocsp_request(certificate, issuer)

        async def status_at_b() -> ocsp.OCSPCertStatus:
            assert b.publishing is not None
            answer = await b.publishing.responder.answer(request)
            return ocsp.load_der_ocsp_response(answer.der).certificate_status

        assert await status_at_b() is ocsp.OCSPCertStatus.GOOD  # and cached so
        assert await _listening_backends(postgres_url, terminate=True) == 1
        await a.revocations.revoke_certificate(ADMIN, Serial(certificate.serial_number))
        started = time.monotonic()
        while await status_at_b() is not ocsp.OCSPCertStatus.REVOKED:
            assert time.monotonic() - started < 3, "B still says good"
            await asyncio.sleep(0.05)
        assert await _listening_backends(postgres_url) == 1
    finally:
        await b.publishing.stop()
