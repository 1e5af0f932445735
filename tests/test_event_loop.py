"""The event loop only does I/O: in every phase of a service's life, asyncio's debug mode finds
no callback that held the loop longer than 100 ms (key generation, key loading, signing and
fsync run on worker threads).

Each phase is one test, run on the real service with its real listeners: opening with a fresh
demo CA (which generates the hierarchy), starting (CRLs, OCSP responder certificates), a burst
of concurrent enrollments, OCSP and CRL requests, and the renewal of an OCSP responder
certificate (a new responder key).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import gc
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from est_ca.client import EstClient
from est_ca.clock import SettableClock
from est_ca.config import load_settings
from est_ca.server import Server
from est_ca.service import Service
from tests.conftest import CaMaterial, OpenService, free_port
from tests.helpers import credentials, make_csr, new_order, new_system
from tests.revocation.helpers import ocsp_request, random_nonce

SLOW_CALLBACK = 0.1  # seconds: a callback longer than this is a stall anyone would notice
BURST = 12


class SlowCallbacks(logging.Handler):
    """Collects asyncio debug mode's "Executing <handle> took N seconds" warnings."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.found: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Executing "):
            self.found.append(record.getMessage())


@contextlib.asynccontextmanager
async def loop_never_blocked() -> AsyncIterator[None]:
    """Fails when a callback of the running loop takes longer than SLOW_CALLBACK meanwhile.

    Everything the test set up before is frozen out of the garbage collector first: a full
    collection walks every live object (the whole test session's, hypothesis and schemathesis
    included) inside whichever callback happens to allocate, a pause of the test process that
    says nothing about the service's code.
    """
    loop = asyncio.get_running_loop()
    gc.collect()
    gc.freeze()
    slow = SlowCallbacks()
    logger = logging.getLogger("asyncio")
    logger.addHandler(slow)
    debug, threshold = loop.get_debug(), loop.slow_callback_duration
    loop.set_debug(True)
    loop.slow_callback_duration = SLOW_CALLBACK
    # The loop measures a callback only when debug mode was on as it began: this one began
    # without, so the work measured starts in the next.
    await asyncio.sleep(0)
    try:
        yield
    finally:
        # And it reports a slow callback only once it returned: end the body's last one here.
        await asyncio.sleep(0)
        loop.set_debug(debug)
        loop.slow_callback_duration = threshold
        logger.removeHandler(slow)
        gc.unfreeze()
    assert not slow.found, "callbacks blocked the event loop:\n" + "\n".join(slow.found)


async def test_opening_with_a_fresh_demo_ca_does_not_block_the_loop(tmp_path: Path) -> None:
    settings = load_settings(
        None,
        {},
        {
            "data_dir": str(tmp_path / "data"),
            "service": {"host": "127.0.0.1", "port": 0, "http_port": free_port(), "demo": False},
            "admin": {"port": 0},
        },
    )
    async with loop_never_blocked():
        service = await Service.open(settings, create=True)
    try:
        assert service.files.demo_created
    finally:
        await service.close()


@pytest.fixture
async def ec_service(open_service: OpenService, ec_profiles: Path) -> Service:
    """A service whose profiles take P-256 keys: a burst of distinct keys without RSA keygen."""
    return await open_service(
        profiles={"extra_dirs": [str(ec_profiles)]},
        limits={"failures_per_source": 1000, "max_concurrent_enrollments": 100},
    )


@contextlib.asynccontextmanager
async def serving(service: Service) -> AsyncIterator[Server]:
    server = Server(service)
    await server.start("127.0.0.1", 0, service.settings.service.http_port)
    try:
        yield server
    finally:
        await server.stop()


async def test_starting_the_service_does_not_block_the_loop(ec_service: Service) -> None:
    server = Server(ec_service)
    try:
        async with loop_never_blocked():
            await server.start("127.0.0.1", 0, ec_service.settings.service.http_port)
    finally:
        await server.stop()


async def test_a_burst_of_enrollments_ocsp_and_crl_requests_does_not_block_the_loop(
    ec_service: Service, ca_material: CaMaterial
) -> None:
    service = ec_service
    orders = [
        credentials(await new_order(service, await new_system(service, f"burst-{n}")))
        for n in range(BURST + 1)
    ]
    csrs = [make_csr(ec.generate_private_key(ec.SECP256R1())) for _ in orders]
    async with serving(service) as server:
        client = EstClient(server.https_url, trust=ca_material.tls_cert)
        first = await client.simpleenroll(csrs[0], orders[0])
        assert first.status == 200, first.text
        [certificate] = first.certificates()
        issuing = x509.load_pem_x509_certificate(service.files.ca_cert.read_bytes())
        publication = service.publication
        async with aiohttp.ClientSession() as session:

            async def status_of(method: str, url: str, body: bytes | None = None) -> int:
                headers = {"Content-Type": "application/ocsp-request"} if body else {}
                async with session.request(method, url, data=body, headers=headers) as response:
                    await response.read()
                    return response.status

            def ocsp_get_url() -> str:
                encoded = base64.b64encode(ocsp_request(certificate, issuing)).decode()
                return f"{publication.ocsp_url}/{encoded}"

            async def enrolled(csr: x509.CertificateSigningRequest, order: tuple[str, str]) -> int:
                return (await client.simpleenroll(csr, order)).status

            async with loop_never_blocked():
                statuses = await asyncio.gather(
                    *(
                        enrolled(csr, order)
                        for csr, order in zip(csrs[1:], orders[1:], strict=True)
                    ),
                    *(
                        status_of(
                            "POST",
                            publication.ocsp_url,
                            ocsp_request(certificate, issuing, nonce=random_nonce()),
                        )
                        for _ in range(BURST)
                    ),
                    *(status_of("GET", ocsp_get_url()) for _ in range(BURST)),
                    *(status_of("GET", publication.issuing_crl_url) for _ in range(BURST)),
                    *(status_of("GET", publication.root_crl_url) for _ in range(BURST)),
                )
    assert statuses == [200] * (5 * BURST)


def responder_serial(answer_der: bytes) -> int:
    [responder] = ocsp.load_der_ocsp_response(answer_der).certificates
    return responder.serial_number


async def test_renewing_the_ocsp_responder_certificate_does_not_block_the_loop(
    ec_service: Service, clock: SettableClock
) -> None:
    service = ec_service
    assert service.publishing is not None
    assert service.authority is not None
    reference, code = credentials(await new_order(service, await new_system(service)))
    certificate = await service.authority.enroll_with_order(
        reference,
        code,
        make_csr(ec.generate_private_key(ec.SECP256R1())).public_bytes(serialization.Encoding.DER),
        source="test",
    )
    issuing = x509.load_pem_x509_certificate(service.files.ca_cert.read_bytes())

    async def responder_now() -> int:
        assert service.publishing is not None
        request = ocsp_request(certificate, issuing, nonce=random_nonce())
        return responder_serial((await service.publishing.responder.answer(request)).der)

    async with serving(service):
        before = await responder_now()
        clock.advance(dt.timedelta(days=25))  # within the renewal window: a new key is due
        async with loop_never_blocked():
            await service.publishing.check()
        assert await responder_now() != before
