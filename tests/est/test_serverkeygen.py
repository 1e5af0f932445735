"""EST serverkeygen (RFC 7030 4.4) over real TLS with curl: the multipart answer split by a real
MIME parser, the key matched to the certificate, refusals where the profile forbids it, and
the private key in no log line and no database row."""

from __future__ import annotations

import email.parser
import email.policy
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs7

from est_ca import logs
from est_ca.clock import SettableClock
from est_ca.config import load_settings
from est_ca.est.routes import KEY_GENERATION
from est_ca.registration.orders import OrderStatus
from est_ca.server import Server
from est_ca.service import Service
from est_ca.throttle import Admission
from est_ca.web.app import est_app
from est_ca.web.tls import server_context
from tests.conftest import CaMaterial, authorities_overrides, with_test_organisations
from tests.helpers import (
    PKCS10,
    CurlResult,
    KeyPool,
    authority_entry,
    credentials,
    csr_base64,
    curl,
    curl_est,
    make_csr,
    new_order,
    new_system,
    new_user,
    pem,
    print_certs,
)


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    logs.configure("json", "debug", stream=stream)
    yield stream
    structlog.reset_defaults()


async def serverkeygen(
    server: Server, ca: CaMaterial, tmp: Path, keys: KeyPool, *options: str | Path
) -> CurlResult:
    body = tmp / "serverkeygen.csr"
    body.write_bytes(csr_base64(make_csr(keys.ec().key)))
    return await curl_est(server, "serverkeygen", body, *PKCS10, *options, trust=ca.tls_cert)


def split(response: CurlResult) -> tuple[bytes, list[x509.Certificate]]:
    """The two parts as a MIME parser reads them: (PKCS#8 DER, the certs-only CMS's certs)."""
    assert response.status == 200, response.text
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {response.headers['content-type']}\r\n\r\n".encode() + response.body
    )
    assert message.get_content_type() == "multipart/mixed"
    key_part, certificate_part = message.iter_parts()
    assert key_part["Content-Type"] == "application/pkcs8"
    assert key_part["Content-Transfer-Encoding"] == "base64"
    assert certificate_part.get_content_type() == "application/pkcs7-mime"
    assert certificate_part.get_param("smime-type") == "certs-only"
    # On the wire exactly as simpleenroll's answer has it (clients match the string).
    assert b"\r\nContent-Type: application/pkcs7-mime; smime-type=certs-only\r\n" in response.body
    assert certificate_part["Content-Transfer-Encoding"] == "base64"
    key_der = key_part.get_payload(decode=True)
    cms_der = certificate_part.get_payload(decode=True)
    assert isinstance(key_der, bytes)
    assert isinstance(cms_der, bytes)
    return key_der, pkcs7.load_der_pkcs7_certificates(cms_der)


def public_der(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


async def test_serverkeygen_with_basic_credentials_returns_the_profiles_key_and_its_certificate(
    server: Server, service: Service, ca_material: CaMaterial, keys: KeyPool, tmp_path: Path
) -> None:
    placed = await new_order(service, await new_system(service))
    response = await serverkeygen(
        server, ca_material, tmp_path, keys, "-u", ":".join(credentials(placed))
    )
    key_der, [certificate] = split(response)
    key = serialization.load_der_private_key(key_der, password=None)
    # The shipped system profile generates its first key: RSA 3072.
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 3072
    assert public_der(key.public_key()) == public_der(certificate.public_key())
    # Not the key of the client's own CSR: that one only formed the request.
    assert public_der(certificate.public_key()) != public_der(keys.ec().key.public_key())
    order = await service.registry.get_order(placed.order.reference)
    assert order.status is OrderStatus.CONSUMED


async def test_serverkeygen_with_a_tls_client_certificate_consumes_the_identitys_order(
    server: Server, service: Service, ca_material: CaMaterial, keys: KeyPool, tmp_path: Path
) -> None:
    system = await new_system(service)
    body = tmp_path / "own.csr"
    body.write_bytes(csr_base64(make_csr(keys.rsa().key)))
    first = await curl_est(
        server,
        "simpleenroll",
        body,
        *PKCS10,
        "-u",
        ":".join(credentials(await new_order(service, system))),
        trust=ca_material.tls_cert,
    )
    assert first.status == 200, first.text
    current = tmp_path / "current.pem"
    current.write_bytes(pem(await print_certs(first.body)))
    second = await new_order(service, system)
    response = await serverkeygen(
        server, ca_material, tmp_path, keys, "--cert", current, "--key", keys.rsa().path
    )
    key_der, [certificate] = split(response)
    key = serialization.load_der_private_key(key_der, password=None)
    assert public_der(key.public_key()) == public_der(certificate.public_key())
    order = await service.registry.get_order(second.order.reference)
    assert order.status is OrderStatus.CONSUMED


async def test_serverkeygen_is_refused_when_the_orders_profile_forbids_it_and_the_order_stays(
    server: Server, service: Service, ca_material: CaMaterial, keys: KeyPool, tmp_path: Path
) -> None:
    placed = await new_order(service, await new_user(service))
    response = await serverkeygen(
        server, ca_material, tmp_path, keys, "-u", ":".join(credentials(placed))
    )
    assert response.status == 403, response.text
    assert "not issued for keys the CA generates" in response.text
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    order = await service.registry.get_order(placed.order.reference)
    assert order.status is OrderStatus.PENDING
    assert await service.registry.list_certificates() == []
    # The same order still enrolls a key of the client's own.
    body = tmp_path / "own.csr"
    body.write_bytes(csr_base64(make_csr(keys.rsa().key)))
    enrolled = await curl_est(
        server,
        "simpleenroll",
        body,
        *PKCS10,
        "-u",
        ":".join(credentials(placed)),
        trust=ca_material.tls_cert,
    )
    assert enrolled.status == 200, enrolled.text


async def test_the_generated_private_key_is_in_no_log_line_and_not_in_the_database(
    server: Server,
    service: Service,
    ca_material: CaMaterial,
    keys: KeyPool,
    tmp_path: Path,
    log_output: io.StringIO,
    caplog: pytest.LogCaptureFixture,
) -> None:
    placed = await new_order(service, await new_system(service))
    response = await serverkeygen(
        server, ca_material, tmp_path, keys, "-u", ":".join(credentials(placed))
    )
    key_der, _ = split(response)
    key = serialization.load_der_private_key(key_der, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    traditional = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    prime = key.private_numbers().p.to_bytes(192, "big")
    recorded = (log_output.getvalue() + caplog.text).encode()
    assert b'"path": "/.well-known/est/serverkeygen"' in recorded  # the log did capture it
    database = service.settings.data_dir / "est-ca.db"
    stored = b"".join(
        path.read_bytes() for path in database.parent.glob("est-ca.db*") if path.is_file()
    )
    assert stored, "the SQLite database was not found"
    body_base64 = b"".join(key_pem.splitlines()[1:-1])
    for secret in (key_der, traditional, prime, body_base64[:64], body_base64[-64:]):
        assert secret not in recorded
        assert secret not in stored


async def test_serverkeygen_under_a_label_whose_profiles_forbid_it_is_refused_before_any_key(
    tmp_path: Path, ca_material: CaMaterial, clock: SettableClock, keys: KeyPool
) -> None:
    config = tmp_path / "cas.toml"
    config.write_text(
        authority_entry(
            "people", ca_material.hierarchy, ca_material.passphrase, default=True, profiles=["user"]
        )
    )
    settings = load_settings(config, {}, authorities_overrides(tmp_path, ca_material))
    service = await with_test_organisations(await Service.open(settings, clock=clock, create=True))
    server = Server(service)
    try:
        await server.start("127.0.0.1", 0, service.settings.service.http_port)
        placed = await new_order(service, await new_user(service))
        response = await serverkeygen(
            server, ca_material, tmp_path, keys, "-u", ":".join(credentials(placed))
        )
        assert response.status == 403, response.text
        assert "no certificate profile issued here allows server key generation" in response.text
        order = await service.registry.get_order(placed.order.reference)
        assert order.status is OrderStatus.PENDING
    finally:
        await server.stop()
        await service.close()


async def serverkeygen_without_key_generation(
    service: Service, ca: CaMaterial, keys: KeyPool, tmp: Path, user_password: str
) -> CurlResult:
    """A serverkeygen on a service whose key-generation bound is 0: any generation is 503."""
    app = est_app(service)
    app[KEY_GENERATION] = Admission(0)
    context = server_context(ca.tls_cert, ca.tls_key, client_ca_pem=None)
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server(ssl=context)
    try:
        body = tmp / "busy.csr"
        body.write_bytes(csr_base64(make_csr(keys.ec().key)))
        return await curl(
            f"https://127.0.0.1:{test_server.port}/.well-known/est/serverkeygen",
            *PKCS10,
            "-u",
            user_password,
            "--data-binary",
            f"@{body}",
            trust=ca.tls_cert,
        )
    finally:
        await test_server.close()


async def test_key_generations_beyond_the_bound_get_503_and_the_order_stays(
    service: Service, ca_material: CaMaterial, keys: KeyPool, tmp_path: Path
) -> None:
    placed = await new_order(service, await new_system(service))
    response = await serverkeygen_without_key_generation(
        service, ca_material, keys, tmp_path, ":".join(credentials(placed))
    )
    assert response.status == 503, response.text
    assert response.headers["retry-after"] == "1"
    order = await service.registry.get_order(placed.order.reference)
    assert order.status is OrderStatus.PENDING


async def test_a_wrong_one_time_code_is_refused_before_any_key_is_made(
    service: Service, ca_material: CaMaterial, keys: KeyPool, tmp_path: Path
) -> None:
    """A guessed code must not cost a key generation: with no generation possible, the answer
    is still the 401 of the wrong code, not the 503 of a generation attempted."""
    placed = await new_order(service, await new_system(service))
    response = await serverkeygen_without_key_generation(
        service, ca_material, keys, tmp_path, f"{placed.order.reference}:WRONG-CODE"
    )
    assert response.status == 401, response.text


async def test_serverkeygen_for_an_order_that_requires_approval_is_refused_and_the_order_stays(
    server: Server, service: Service, ca_material: CaMaterial, keys: KeyPool, tmp_path: Path
) -> None:
    """The key would have to wait for the approval, and the service keeps no private keys."""
    placed = await new_order(service, await new_system(service), require_approval=True)
    response = await serverkeygen(
        server, ca_material, tmp_path, keys, "-u", ":".join(credentials(placed))
    )
    assert response.status == 403, response.text
    assert "cannot wait for it" in response.text
    order = await service.registry.get_order(placed.order.reference)
    assert order.status is OrderStatus.PENDING
    assert await service.registry.list_requests() == []


async def test_serverkeygen_on_an_order_already_used_is_refused_not_redelivered(
    server: Server, service: Service, ca_material: CaMaterial, keys: KeyPool, tmp_path: Path
) -> None:
    """A consumed order's retry gets its certificate back only through simpleenroll: under
    serverkeygen no key was made for it, so there is no answer to give but a refusal (it was a
    500 when the CSR proved the consumed order's key)."""
    placed = await new_order(service, await new_system(service))
    body = tmp_path / "own.csr"
    body.write_bytes(csr_base64(make_csr(keys.rsa().key)))
    first, again = [
        await curl_est(
            server,
            operation,
            body,
            *PKCS10,
            "-u",
            ":".join(credentials(placed)),
            trust=ca_material.tls_cert,
        )
        for operation in ("simpleenroll", "serverkeygen")
    ]
    assert first.status == 200, first.text
    # The retry's CSR proves the key the order's certificate was issued for.
    assert again.status == 403, again.text
    assert "already been used" in again.text
    assert len(await service.registry.list_certificates()) == 1
