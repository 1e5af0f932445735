"""An admin API on real HTTPS: administrator certificates from their own CA, tokens from the CLI."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from est_ca.admin.access import Scope
from est_ca.server import Server
from est_ca.service import Service
from tests.conftest import CaMaterial, OpenService
from tests.helpers import ADMIN


@dataclasses.dataclass(frozen=True)
class AdminCa:
    ca_file: Path
    cert_file: Path
    key_file: Path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@pytest.fixture(scope="session")
def admin_ca(tmp_path_factory: pytest.TempPathFactory) -> AdminCa:
    """A CA of administrators (not the EST CA) and one administrator's certificate."""
    directory = tmp_path_factory.mktemp("admin-ca")
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "est-ca administrators")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alice.admin")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(ca_key, hashes.SHA256())
    )
    files = AdminCa(directory / "ca.pem", directory / "alice.pem", directory / "alice.key")
    files.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    _write_key(files.key_file, key)
    return files


@dataclasses.dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any
    method: str
    path: str


class AdminApi:
    """A client of the running admin API; it records every reply for the OpenAPI check."""

    def __init__(self, base_url: str, trust: Path, certificate: AdminCa | None = None) -> None:
        self.base_url = base_url
        self._context = ssl.create_default_context(cafile=str(trust))
        if certificate is not None:
            self._context.load_cert_chain(certificate.cert_file, certificate.key_file)
        self.replies: list[Reply] = []

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if json_body is not None:
            data = json.dumps(json_body).encode()
            content_type = content_type or "application/json"
        if content_type is not None:
            headers["Content-Type"] = content_type
        connector = aiohttp.TCPConnector(ssl=self._context, force_close=True)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.request(
                method, f"{self.base_url}/admin/v1{path}", data=data, headers=headers
            ) as response,
        ):
            raw = await response.read()
            body: Any = json.loads(raw) if raw and "json" in response.content_type else raw
            reply = Reply(response.status, dict(response.headers), body, method, path)
        self.replies.append(reply)
        return reply


@dataclasses.dataclass
class AdminSetup:
    service: Service
    server: Server
    api: AdminApi
    certificate_api: AdminApi
    admin_token: str

    async def token(self, name: str, scopes: str, cvr: str | None = None) -> str:
        _, secret = await self.service.tokens.create(
            ADMIN, name=name, scopes=Scope.parse_many(scopes), cvr=cvr, valid_days=30
        )
        return secret


RECORDED: list[Reply] = []


@contextlib.asynccontextmanager
async def running_admin(
    open_service: OpenService, ca_material: CaMaterial, admin_ca: AdminCa, database_url: str = ""
) -> AsyncIterator[AdminSetup]:
    service = await open_service(
        database_url=database_url, admin={"client_ca_file": str(admin_ca.ca_file)}
    )
    server = Server(service)
    await server.start("127.0.0.1", 0, service.settings.service.http_port)
    api = AdminApi(server.admin_url, ca_material.tls_cert)
    certificate_api = AdminApi(server.admin_url, ca_material.tls_cert, admin_ca)
    _, token = await service.tokens.create(
        ADMIN, name="root-admin", scopes=frozenset({Scope.ADMIN}), cvr=None, valid_days=30
    )
    try:
        yield AdminSetup(service, server, api, certificate_api, token)
    finally:
        RECORDED.extend(api.replies + certificate_api.replies)
        await server.stop()


@pytest.fixture
async def admin(
    open_service: OpenService, ca_material: CaMaterial, admin_ca: AdminCa
) -> AsyncIterator[AdminSetup]:
    async with running_admin(open_service, ca_material, admin_ca) as running:
        yield running


@pytest.fixture
async def admin_on_each_database(
    open_service: OpenService, ca_material: CaMaterial, admin_ca: AdminCa, database_url: str
) -> AsyncIterator[AdminSetup]:
    """The admin API on SQLite, then on PostgreSQL: what one database takes, the other may not."""
    async with running_admin(open_service, ca_material, admin_ca, database_url) as running:
        yield running
