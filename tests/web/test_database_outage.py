"""The database going away and coming back, for real: PostgreSQL refusing the service's
connections mid-run. Clients get 503 with Retry-After (a temporary condition, not a 500),
readiness says the database is down, and the service recovers on its own (issue 13, items 4
and 5)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg

from est_ca.server import Server
from tests.conftest import POSTGRES_ADMIN_URL, CaMaterial, OpenService
from tests.est.test_real_clients import openssl_csr_base64
from tests.helpers import PKCS10, KeyPool, credentials, curl, curl_est, new_order, new_system


async def _cut_off(database: str, *, allowed: bool) -> None:
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        await admin.execute(
            f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS {"true" if allowed else "false"}'
        )
        if not allowed:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                database,
            )
    finally:
        await admin.close()


async def test_an_unavailable_database_is_a_503_with_retry_after_and_the_service_recovers(
    open_service: OpenService,
    postgres_url: str,
    ca_material: CaMaterial,
    keys: KeyPool,
    tmp_path: Path,
) -> None:
    service = await open_service(database_url=postgres_url)
    server = Server(service)
    await server.start("127.0.0.1", 0, service.settings.service.http_port)
    database = postgres_url.rsplit("/", 1)[1]
    csr = tmp_path / "csr.b64"
    csr.write_bytes(await openssl_csr_base64(keys.rsa(0).path))
    login = ":".join(credentials(await new_order(service, await new_system(service))))
    ready_url = f"{server.admin_url}/admin/v1/ready"
    try:
        await _cut_off(database, allowed=False)
        refused = await curl_est(
            server, "simpleenroll", csr, "-u", login, *PKCS10, trust=ca_material.tls_cert
        )
        assert refused.status == 503, refused.text
        assert refused.headers["retry-after"] == "5"
        assert "database is unavailable" in refused.text
        assert "Traceback" not in refused.text
        ready = await curl(ready_url, trust=ca_material.tls_cert)
        assert ready.status == 503
        assert '"database": false' in ready.text

        await _cut_off(database, allowed=True)
        for _ in range(20):  # the pool replaces the connections the database dropped
            enrolled = await curl_est(
                server, "simpleenroll", csr, "-u", login, *PKCS10, trust=ca_material.tls_cert
            )
            if enrolled.status != 503:
                break
            await asyncio.sleep(0.25)
        assert enrolled.status == 200, enrolled.text
        ready = await curl(ready_url, trust=ca_material.tls_cert)
        assert ready.status == 200, ready.text
    finally:
        await _cut_off(database, allowed=True)
        await server.stop()
