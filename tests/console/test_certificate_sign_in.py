"""Signing in with an administrator certificate: the session is good only with that certificate."""

from __future__ import annotations

import re
import ssl

import aiohttp

from tests.admin.conftest import AdminCa, AdminSetup
from tests.admin.conftest import admin as admin  # the fixture, shared


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
