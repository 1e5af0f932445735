"""The console's edges over HTTP: unknown pages, the language switch's target, cross-site posts."""

from __future__ import annotations

from pathlib import Path

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
from tests.console import client as http
from tests.helpers import ADMIN


async def test_an_unknown_console_page_says_sign_in_first_with_the_policy(
    admin: AdminSetup,
) -> None:
    async with (
        http.client(admin.service) as client,
        client.get(
            admin.server.admin_url + "/console/no-such-page", allow_redirects=False
        ) as response,
    ):
        assert response.status == 303
        assert response.headers["Location"] == "/console/sign-in"
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]


async def test_the_language_switch_goes_back_only_within_the_console(admin: AdminSetup) -> None:
    url = admin.server.admin_url + "/console/language/da"
    async with http.client(admin.service) as client:
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
        http.client(admin.service) as client,
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
    async with http.client(admin.service) as client:
        console = await http.sign_in(client, admin.server.admin_url, token)
        async with client.get(console + "identities", allow_redirects=False) as response:
            assert response.status == 200
        # As `est-ca token revoke` does: not through this console, so its sessions are not told.
        await admin.service.tokens.revoke(ADMIN, "console-revoked-elsewhere")
        async with client.get(console + "identities", allow_redirects=False) as response:
            assert response.status == 303
            assert response.headers["Location"] == "/console/sign-in"


async def test_a_restart_signs_no_one_out(
    tmp_path: Path, ca_material: CaMaterial, admin_ca: AdminCa, clock: SettableClock
) -> None:
    """Sessions live in the store: the same cookie opens the console after a restart (and so
    on another instance sharing the database and keys)."""
    settings = make_settings(
        tmp_path / "data", ca_material, admin={"client_ca_file": str(admin_ca.ca_file)}
    )
    service = await with_test_organisations(await Service.open(settings, clock=clock, create=True))
    _, token = await service.tokens.create(
        ADMIN, name="restarted", scopes=frozenset({Scope.ADMIN}), cvr=None, valid_days=1
    )
    server = Server(service)
    await server.start("127.0.0.1", 0, settings.service.http_port)
    async with http.client(service) as session:
        try:
            console = await http.sign_in(session, server.admin_url, token)
            async with session.get(console + "identities", allow_redirects=False) as response:
                assert response.status == 200
        finally:
            await server.stop()
            await service.close()
        service = await Service.open(settings, clock=clock)
        server = Server(service)
        await server.start("127.0.0.1", 0, settings.service.http_port)
        try:
            console = server.admin_url + "/console/"
            async with session.get(console + "identities", allow_redirects=False) as response:
                assert response.status == 200
        finally:
            await server.stop()
            await service.close()


async def test_the_audit_trail_names_the_address_a_session_is_used_from(
    admin: AdminSetup,
) -> None:
    """A session cookie used from another address than its sign-in's (a stolen one, say): the
    trail names the address each request came from, not the sign-in's."""
    service = admin.service
    sessions = Sessions(
        service.store, SecretHasher(load_key(service.files.hmac_key)), service.clock
    )
    signed_in_elsewhere = Principal(
        PrincipalKind.TOKEN, "elsewhere", frozenset({Scope.READ}), None, "203.0.113.9"
    )
    cookie = await sessions.open(signed_in_elsewhere)
    async with (
        http.client(service) as client,
        client.get(
            admin.server.admin_url + "/console/audit",
            headers={"Cookie": f"est_ca_console={cookie}"},
            allow_redirects=False,
        ) as response,
    ):
        assert response.status == 403
    async with service.store.read() as tx:
        refused = [e for e in await tx.list_audit(limit=1000) if e.action == "admin.refused"]
    assert [e.actor.source for e in refused] == ["127.0.0.1"]
