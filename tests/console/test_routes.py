"""The console's edges over HTTP: unknown pages, the language switch's target, cross-site posts."""

from __future__ import annotations

from tests.admin.conftest import AdminSetup
from tests.admin.conftest import admin as admin  # the fixture, shared
from tests.console import client as http
from tests.helpers import ADMIN


async def test_an_unknown_console_page_says_sign_in_first_with_the_policy(
    admin: AdminSetup,
) -> None:
    async with (
        http.client(admin) as client,
        client.get(
            admin.server.admin_url + "/console/no-such-page", allow_redirects=False
        ) as response,
    ):
        assert response.status == 303
        assert response.headers["Location"] == "/console/sign-in"
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]


async def test_the_language_switch_goes_back_only_within_the_console(admin: AdminSetup) -> None:
    url = admin.server.admin_url + "/console/language/da"
    async with http.client(admin) as client:
        for target in ("https://evil.example/", "//evil.example/", "/console/\r\nX-A: b", "/x"):
            async with client.get(url, params={"next": target}, allow_redirects=False) as response:
                assert response.status == 303
                assert response.headers["Location"] == "/console/"
        async with client.get(
            url, params={"next": "/console/identities?q=a"}, allow_redirects=False
        ) as response:
            assert response.headers["Location"] == "/console/identities?q=a"


async def test_a_cross_site_form_post_is_refused(admin: AdminSetup) -> None:
    async with (
        http.client(admin) as client,
        client.post(
            admin.server.admin_url + "/console/sign-in",
            data={"token": admin.admin_token, "csrf": "x"},
            headers={"Sec-Fetch-Site": "cross-site"},
            allow_redirects=False,
        ) as response,
    ):
        assert response.status == 403
        assert "est_ca_console" not in response.cookies


async def test_a_token_revoked_elsewhere_ends_its_console_sessions_at_the_next_page(
    admin: AdminSetup,
) -> None:
    token = await admin.token("console-revoked-elsewhere", "admin")
    async with http.client(admin) as client:
        console = await http.sign_in(client, admin, token)
        async with client.get(console + "identities", allow_redirects=False) as response:
            assert response.status == 200
        # As `est-ca token revoke` does: not through this console, so its sessions are not told.
        await admin.service.tokens.revoke(ADMIN, "console-revoked-elsewhere")
        async with client.get(console + "identities", allow_redirects=False) as response:
            assert response.status == 303
            assert response.headers["Location"] == "/console/sign-in"
