"""Real concurrency: simultaneous enrollments race for one order, and exactly one wins."""

from __future__ import annotations

import asyncio
from pathlib import Path

from est_ca.ca.certificates import CertificateStatus
from est_ca.registration.orders import OrderStatus
from est_ca.server import Server
from tests.conftest import CaMaterial, OpenService
from tests.helpers import KeyPool, credentials, csr_base64, curl, make_csr, new_order, new_user

CONTENDERS = 12


async def test_simultaneous_enrollments_on_one_order_issue_exactly_one_certificate(
    open_service: OpenService,
    database_url: str,
    ca_material: CaMaterial,
    keys: KeyPool,
    tmp_path: Path,
) -> None:
    service = await open_service(database_url=database_url)
    server = Server(service)
    await server.start("127.0.0.1", 0, 0)
    try:
        placed = await new_order(service, await new_user(service))
        body = tmp_path / "csr.b64"
        body.write_bytes(csr_base64(make_csr(keys.rsa().key)))
        responses = await asyncio.gather(
            *(
                curl(
                    f"{server.https_url}/.well-known/est/simpleenroll",
                    "-H",
                    "Content-Type: application/pkcs10",
                    "-u",
                    ":".join(credentials(placed)),
                    "--data-binary",
                    f"@{body}",
                    trust=ca_material.tls_cert,
                )
                for _ in range(CONTENDERS)
            )
        )
    finally:
        await server.stop()
    statuses = sorted(response.status for response in responses)
    assert statuses == [200] + [403] * (CONTENDERS - 1)
    certificates = await service.registry.list_certificates()
    issued = [c for c in certificates if c.status is CertificateStatus.ISSUED]
    assert len(issued) == 1
    assert all(c.status is CertificateStatus.ABANDONED for c in certificates if c not in issued)
    order = await service.registry.get_order(placed.order.reference)
    assert order.status is OrderStatus.CONSUMED
    assert order.certificate_serial == issued[0].serial.hex
    async with service.store.read() as tx:
        assert len(await tx.list_audit(action="certificate.issued")) == 1
        assert len(await tx.list_audit(action="enroll.refused")) == CONTENDERS - 1
