"""Signing in with an administrator certificate: the session is good only with that certificate."""

from __future__ import annotations

import hashlib
import re
import ssl
from pathlib import Path

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from est_ca.admin.access import Principal, PrincipalKind, Scope
from est_ca.clock import SettableClock
from est_ca.console.sessions import Sessions
from est_ca.keyfiles import load_key
from est_ca.registration.codes import SecretHasher
from est_ca.server import Server
from est_ca.service import Service
from tests.admin.conftest import AdminCa, AdminSetup
from tests.admin.conftest import admin as admin  # the fixture, shared
from tests.admin.conftest import admin_ca as admin_ca  # the fixture, shared
from tests.conftest import CaMaterial, make_settings, with_test_organisations


def _client(admin: AdminSetup, admin_ca: AdminCa, *, certificate: bool) -> aiohttp.ClientSession:
    context = ssl.create_default_context(cafile=str(admin.service.settings.tls.cert_file))
    if certificate:
        context.load_cert_chain(admin_ca.cert_file, admin_ca.key_file)
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=context, force_close=True),
        cookie_jar=aiohttp.CookieJar(unsafe=True),
    )


async def _signed_in_cookie(admin: AdminSetup, admin_ca: AdminCa) -> str:
    url = admin.server.admin_url + "/console/"
    async with _client(admin, admin_ca, certificate=True) as client:
        async with client.get(url + "sign-in") as page:
            html = await page.text()
        assert "CN=alice.admin" in html
        match = re.search(
            r'action="/console/sign-in/certificate".*?name="csrf" value="([^"]+)"', html, re.S
        )
        assert match is not None
        async with client.post(
            url + "sign-in/certificate", data={"csrf": match.group(1)}, allow_redirects=False
        ) as signed_in:
            assert signed_in.status == 303
            cookie = signed_in.cookies["est_ca_console"].value
        async with client.get(url, allow_redirects=False) as overview:
            assert overview.status == 200
            assert "Signed in as alice.admin" in await overview.text()
    return cookie


async def test_an_administrator_certificate_signs_in(admin: AdminSetup, admin_ca: AdminCa) -> None:
    await _signed_in_cookie(admin, admin_ca)


async def test_a_certificate_session_is_refused_on_a_connection_without_the_certificate(
    admin: AdminSetup, admin_ca: AdminCa
) -> None:
    cookie = await _signed_in_cookie(admin, admin_ca)
    async with (
        _client(admin, admin_ca, certificate=False) as client,
        client.get(
            admin.server.admin_url + "/console/",
            headers={"Cookie": f"est_ca_console={cookie}"},
            allow_redirects=False,
        ) as response,
    ):
        assert response.status == 303
        assert response.headers["Location"] == "/console/sign-in"


async def test_a_certificate_session_takes_the_scopes_configured_now(
    tmp_path: Path, ca_material: CaMaterial, admin_ca: AdminCa, clock: SettableClock
) -> None:
    """Sessions outlive a restart; the scopes an operator narrowed for certificates (and
    restarted for) apply to the sessions signed in before, at once, not 8 hours later."""
    settings = make_settings(
        tmp_path / "data",
        ca_material,
        admin={"client_ca_file": str(admin_ca.ca_file), "client_certificate_scopes": ["read"]},
    )
    service = await with_test_organisations(await Service.open(settings, clock=clock, create=True))
    # What a sign-in under the earlier configuration (scope admin) left in the store.
    der = x509.load_pem_x509_certificate(admin_ca.cert_file.read_bytes()).public_bytes(
        serialization.Encoding.DER
    )
    sessions = Sessions(service.store, SecretHasher(load_key(service.files.hmac_key)), clock)
    cookie = await sessions.open(
        Principal(PrincipalKind.ADMIN_CERTIFICATE, "alice.admin", frozenset({Scope.ADMIN}), None),
        certificate_sha256=hashlib.sha256(der).hexdigest(),
    )
    server = Server(service)
    await server.start("127.0.0.1", 0, settings.service.http_port)
    try:
        async with (
            _client_of(service, admin_ca) as client,
            client.get(
                server.admin_url + "/console/tokens",
                headers={"Cookie": f"est_ca_console={cookie}"},
                allow_redirects=False,
            ) as response,
        ):
            assert response.status == 403
    finally:
        await server.stop()
        await service.close()


def _client_of(service: Service, admin_ca: AdminCa) -> aiohttp.ClientSession:
    context = ssl.create_default_context(cafile=str(service.settings.tls.cert_file))
    context.load_cert_chain(admin_ca.cert_file, admin_ca.key_file)
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context, force_close=True))
