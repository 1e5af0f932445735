"""Every hostile CSR vector, sent over EST with curl: a 400 that says why, and nothing changes."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from est_ca.registration.orders import OrderState
from est_ca.server import Server
from est_ca.service import Service
from tests.ca.test_csr_policy import REFUSALS, VECTORS
from tests.conftest import CaMaterial
from tests.helpers import PKCS10, credentials, curl_est, new_order, new_user


@pytest.mark.parametrize(("name", "reason"), REFUSALS.items(), ids=list(REFUSALS))
async def test_a_hostile_csr_is_a_400_and_leaves_the_order_pending(
    server: Server,
    service: Service,
    ca_material: CaMaterial,
    tmp_path: Path,
    name: str,
    reason: str,
) -> None:
    placed = await new_order(service, await new_user(service))
    body = tmp_path / "csr.b64"
    body.write_bytes(base64.encodebytes((VECTORS / f"csr-{name}.der").read_bytes()))
    response = await curl_est(
        server,
        "simpleenroll",
        body,
        *PKCS10,
        "-u",
        ":".join(credentials(placed)),
        trust=ca_material.tls_cert,
    )
    assert response.status == 400
    assert reason in response.text
    order = await service.registry.get_order(placed.order.reference)
    assert service.registry.order_state(order) is OrderState.PENDING
    assert await service.registry.list_certificates() == []
    async with service.store.read() as tx:
        [refusal] = await tx.list_audit(action="enroll.refused")
    assert refusal.reason is not None
    assert reason in refusal.reason
