"""The console's pages over HTTP: organisations, editing an identity, certificate and audit
filters, the overview. What the admin API forbids is forbidden here too (404 or 403)."""

from __future__ import annotations

import datetime as dt
import html
import uuid

import aiohttp

from est_ca.registration.identities import IdentityType
from tests.admin.conftest import AdminSetup
from tests.admin.conftest import admin as admin  # the fixture, shared
from tests.admin.conftest import admin_on_each_database as admin_on_each_database
from tests.console import client as http
from tests.helpers import ADMIN, KeyPool
from tests.revocation.helpers import issue

OWN, OTHER = "34051178", "96908409"
# Inside the overview's 30 days.
EXPIRES_SOON = dt.timedelta(days=10)


async def _page(session: aiohttp.ClientSession, url: str, status: int = 200) -> str:
    async with session.get(url, allow_redirects=False) as response:
        text = await response.text()
        assert response.status == status, text[:2000]
        return html.unescape(text)


async def _system(admin: AdminSetup, cvr: str, name: str) -> uuid.UUID:
    identity = await admin.service.registry.create_identity(
        ADMIN, type=IdentityType.SYSTEM, organisation_name=None, cvr=cvr, display_name=name
    )
    return identity.id


# -- organisations ----------------------------------------------------------------------------


async def test_an_administrator_sees_the_organisations_and_one_with_its_identity_count(
    admin_on_each_database: AdminSetup,
) -> None:
    """On SQLite and on PostgreSQL: the count is SQL."""
    admin = admin_on_each_database
    await _system(admin, OWN, "counted.one")
    await _system(admin, OWN, "counted.two")
    async with http.client(admin.service) as session:
        console = await http.sign_in(session, admin.server.admin_url, admin.admin_token)
        listed = await _page(session, console + "organisations")
        assert f'href="/console/organisations/{OWN}"' in listed
        assert f'href="/console/organisations/{OTHER}"' in listed
        one = await _page(session, console + f"organisations/{OWN}")
        assert '<dd id="identity-count">2</dd>' in one
        assert f'href="/console/identities?cvr={OWN}"' in one
        only_own = await _page(session, console + f"identities?cvr={OWN}")
        assert "counted.one" in only_own


async def test_a_confined_administrator_finds_no_organisations_page(admin: AdminSetup) -> None:
    token = await admin.token("console-org-confined", "admin", cvr=OWN)
    async with http.client(admin.service) as session:
        console = await http.sign_in(session, admin.server.admin_url, token)
        overview = await _page(session, console)
        assert "/console/organisations" not in overview
        await _page(session, console + "organisations", 404)
        await _page(session, console + f"organisations/{OWN}", 404)
        await _page(session, console + f"organisations/{OTHER}", 404)


# -- editing an identity ----------------------------------------------------------------------


async def _edit(
    session: aiohttp.ClientSession, url: str, values: dict[str, str]
) -> aiohttp.ClientResponse:
    form = await _page(session, url)
    data = {"csrf": http.csrf_of(form)} | values
    async with session.post(url, data=data, allow_redirects=False) as response:
        await response.read()
        return response


async def test_an_identity_is_edited_and_the_change_audited_as_the_apis(
    admin: AdminSetup,
) -> None:
    identity_id = await _system(admin, OWN, "before.edit")
    async with http.client(admin.service) as session:
        console = await http.sign_in(session, admin.server.admin_url, admin.admin_token)
        url = console + f"identities/{identity_id}/edit"
        response = await _edit(session, url, {"display_name": "after.edit", "email": ""})
        assert response.status == 303
        assert response.headers["Location"] == f"/console/identities/{identity_id}"
    found = await admin.service.registry.get_identity(identity_id)
    assert found.display_name == "after.edit"
    (event,) = await admin.service.audit.events(action="identity.updated")
    assert event.identity_id == identity_id
    assert event.details["fields"] == "display_name"
    assert event.actor.kind == "token"


async def test_a_bad_value_is_shown_next_to_its_field_and_the_refusal_audited(
    admin: AdminSetup,
) -> None:
    identity_id = await _system(admin, OWN, "bad.edit")
    async with http.client(admin.service) as session:
        console = await http.sign_in(session, admin.server.admin_url, admin.admin_token)
        url = console + f"identities/{identity_id}/edit"
        form = await _page(session, url)
        data = {"csrf": http.csrf_of(form), "display_name": "bad.edit", "email": "not-an-address"}
        async with session.post(url, data=data, allow_redirects=False) as response:
            assert response.status == 400
            page = await response.text()
    assert 'id="email" name="email" type="email" value="not-an-address"' in page
    assert 'aria-invalid="true" aria-describedby="email-error"' in page
    assert 'id="email-error" role="alert">email must be an address' in page
    refused = await admin.service.audit.events(action="admin.refused")
    assert [e.details["operation"] for e in refused] == [
        f"POST /console/identities/{identity_id}/edit"
    ]


async def test_editing_needs_the_order_scope_and_another_organisations_identity_is_404(
    admin: AdminSetup,
) -> None:
    elsewhere = await _system(admin, OTHER, "elsewhere.edit")
    own = await _system(admin, OWN, "own.edit")
    reader = await admin.token("console-edit-reader", "read")
    confined = await admin.token("console-edit-confined", "read,order", cvr=OWN)
    async with http.client(admin.service) as session:
        console = await http.sign_in(session, admin.server.admin_url, reader)
        await _page(session, console + f"identities/{own}/edit", 403)
    async with http.client(admin.service) as session:
        console = await http.sign_in(session, admin.server.admin_url, confined)
        await _page(session, console + f"identities/{elsewhere}/edit", 404)
        form = await _page(session, console + f"identities/{own}/edit")
        async with session.post(
            console + f"identities/{elsewhere}/edit",
            data={"csrf": http.csrf_of(form), "display_name": "taken.over"},
            allow_redirects=False,
        ) as response:
            assert response.status == 404
    found = await admin.service.registry.get_identity(elsewhere)
    assert found.display_name == "elsewhere.edit"


# -- certificates and the overview ------------------------------------------------------------


async def test_certificates_filter_by_status_type_and_expiry(
    admin_on_each_database: AdminSetup, keys: KeyPool
) -> None:
    """On SQLite and on PostgreSQL: the filters are SQL."""
    admin = admin_on_each_database
    certificate = await issue(admin.service, keys)
    serial = format(certificate.serial_number, "040x")
    left = (certificate.not_valid_after_utc - admin.service.clock.now()).days
    async with http.client(admin.service) as session:
        console = await http.sign_in(session, admin.server.admin_url, admin.admin_token)
        url = console + "certificates"
        for query, shown in (
            ("", True),
            ("?status=good", True),
            ("?status=expired", False),
            ("?status=revoked", False),
            ("?type=system", True),
            ("?type=user", False),
            (f"?expiring={left + 1}", True),
            (f"?expiring={left - 1}", False),
            (f"?status=good&type=system&expiring={left + 1}", True),
        ):
            assert (serial in await _page(session, url + query)) is shown, query
        for bad in ("?status=valid", "?type=robot", "?expiring=0", "?expiring=x"):
            await _page(session, url + bad, 400)


async def test_the_overview_shows_counts_expiring_certificates_and_recent_events(
    admin: AdminSetup, keys: KeyPool
) -> None:
    certificate = await issue(admin.service, keys)
    serial = format(certificate.serial_number, "040x")
    admin.service.clock.advance(  # type: ignore[attr-defined]
        certificate.not_valid_after_utc - admin.service.clock.now() - EXPIRES_SOON
    )
    token = await admin.token("console-overview", "admin")  # the fixture's has expired by now
    async with http.client(admin.service) as session:
        console = await http.sign_in(session, admin.server.admin_url, token)
        overview = await _page(session, console)
    title = overview[overview.index("<title>") : overview.index("</title>")]
    assert "<" not in title[1:], title  # the recent events were once rendered into the title
    expiring = overview[overview.index('id="expiring-heading"') : overview.index("recent-heading")]
    assert serial in expiring
    assert 'class="number">1</span> Valid certificates' in overview
    assert "token.used" in overview[overview.index("recent-heading") :]


# -- the audit trail --------------------------------------------------------------------------


async def test_the_audit_trail_filters_by_outcome_and_organisation(
    admin_on_each_database: AdminSetup,
) -> None:
    """On SQLite and on PostgreSQL: the filters are SQL."""
    admin = admin_on_each_database
    own = await _system(admin, OWN, "audited.own")
    elsewhere = await _system(admin, OTHER, "audited.elsewhere")
    async with http.client(admin.service) as session:
        console = await http.sign_in(session, admin.server.admin_url, admin.admin_token)
        await _page(session, console + "identities/00000000-0000-0000-0000-000000000000", 404)
        refused = await _page(session, console + "audit?outcome=refused")
        assert "admin.refused" in refused
        assert "identity.created" not in refused
        of_own = await _page(session, console + f"audit?cvr={OWN}")
        assert str(own) in of_own
        assert str(elsewhere) not in of_own
        await _page(session, console + "audit?outcome=maybe", 400)
        await _page(session, console + "audit?cvr=123", 400)
