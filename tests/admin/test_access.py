"""Who may call the admin API: tokens, scopes, administrator certificates, and organisations
that see only their own identities."""

from __future__ import annotations

import datetime as dt
import json
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from est_ca.admin.access import PrincipalKind, Scope
from est_ca.ca.certificates import Serial
from est_ca.errors import BadRequest
from tests.admin.conftest import AdminCa, AdminSetup
from tests.conftest import CaMaterial
from tests.helpers import ADMIN, KeyPool, csr_der, curl, make_csr, require_tool, run
from tests.revocation.helpers import record_under_other_issuer

ORG_A, ORG_B = "11111111", "22222222"


def system(cvr: str, name: str) -> dict[str, Any]:
    return {"type": "system", "organisation_name": f"Org {cvr}", "cvr": cvr, "display_name": name}


async def audit_actions(admin: AdminSetup) -> list[tuple[str, str | None]]:
    async with admin.service.store.read() as tx:
        return [(e.action, e.reason) for e in await tx.list_audit(limit=1000)]


# -- authentication -----------------------------------------------------------------------------


async def test_no_credentials_is_401_with_a_bearer_challenge(admin: AdminSetup) -> None:
    reply = await admin.api.call("GET", "/identities")
    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"] == 'Bearer realm="est-ca admin"'
    assert reply.headers["Content-Type"].startswith("application/problem+json")
    assert reply.body["status"] == 401
    assert ("admin.login_failed", "no credentials") in await audit_actions(admin)


async def test_a_browsers_own_favicon_request_is_404_and_no_failed_sign_in(
    admin: AdminSetup,
) -> None:
    context = ssl.create_default_context(cafile=str(admin.service.settings.tls.cert_file))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as client:
        for path in ("/favicon.ico", "/apple-touch-icon.png", "/favicon.ico"):
            async with client.get(admin.server.admin_url + path) as response:
                assert response.status == 404
    await admin.service.guard.flush(everything=True)
    assert [a for a in await audit_actions(admin) if a[0] == "admin.login_failed"] == []


async def test_a_wrong_token_is_401_and_audited_without_the_token(admin: AdminSetup) -> None:
    forged = admin.admin_token[:-4] + ("AAAA" if not admin.admin_token.endswith("AAAA") else "BBBB")
    reply = await admin.api.call("GET", "/identities", token=forged)
    assert reply.status == 401
    garbage = await admin.api.call("GET", "/identities", token="not-a-token")
    assert garbage.status == 401
    await admin.service.guard.flush(everything=True)  # the second is summarised (a flood)
    async with admin.service.store.read() as tx:
        failures = await tx.list_audit(action="admin.login_failed")
        recorded = " ".join(repr(event) for event in await tx.list_audit(limit=1000))
    assert [e.reason for e in failures] == [
        "unknown token or wrong secret",
        "1 more like this from this address; the last: unknown token or wrong secret",
    ]
    # The secret is everything after "estca_<id>_"; it may itself contain "_".
    assert admin.admin_token.split("_", 2)[2] not in recorded
    assert forged.split("_", 2)[2] not in recorded


async def test_a_revoked_or_expired_token_is_401(admin: AdminSetup) -> None:
    token = await admin.token("short-lived", "read")
    assert (await admin.api.call("GET", "/identities", token=token)).status == 200
    await admin.service.tokens.revoke(ADMIN, "short-lived")
    assert (await admin.api.call("GET", "/identities", token=token)).status == 401
    other = await admin.token("expiring", "read")
    admin.service.clock.advance(dt.timedelta(days=31))  # type: ignore[attr-defined]
    assert (await admin.api.call("GET", "/identities", token=other)).status == 401
    reasons = [
        reason for action, reason in await audit_actions(admin) if action == "admin.login_failed"
    ]
    assert reasons == ["expired or revoked token"] * 2


async def test_a_token_authenticates_as_a_token_principal(admin: AdminSetup) -> None:
    token = await admin.token("kind-reader", "read")
    principal = await admin.service.tokens.authenticate(token, "127.0.0.1")
    assert principal.kind is PrincipalKind.TOKEN
    assert str(principal.actor) == "token:kind-reader"


async def test_every_token_use_is_audited(admin: AdminSetup) -> None:
    token = await admin.token("reader", "read")
    await admin.api.call("GET", "/identities", token=token)
    async with admin.service.store.read() as tx:
        [used] = await tx.list_audit(action="token.used")
    assert str(used.actor) == "token:reader"
    assert used.request_id


@pytest.mark.parametrize(
    ("scopes", "method", "path", "body"),
    [
        ("order", "GET", "/identities", None),
        ("read", "POST", "/identities", system(ORG_A, "x")),
        ("read", "POST", "/crl/regenerate", {}),
        ("order,revoke", "POST", "/crl/regenerate", {}),
    ],
)
async def test_a_token_without_the_scope_is_403(
    admin: AdminSetup, scopes: str, method: str, path: str, body: Any
) -> None:
    token = await admin.token("limited", scopes)
    reply = await admin.api.call(method, path, token=token, json_body=body)
    assert reply.status == 403
    assert "scope" in reply.body["detail"]


async def test_a_client_certificate_of_another_ca_cannot_even_connect(
    admin: AdminSetup, ca_material: CaMaterial, tmp_path: Path
) -> None:
    require_tool("curl")
    result = await run(
        "curl",
        "-sS",
        "--cacert",
        ca_material.tls_cert,
        "--cert",
        ca_material.tls_cert,
        "--key",
        ca_material.tls_key,
        f"{admin.server.admin_url}/admin/v1/identities",
    )
    assert result.returncode != 0


async def test_curl_with_the_administrator_certificate_lists_identities(
    admin: AdminSetup, ca_material: CaMaterial, admin_ca: AdminCa
) -> None:
    reply = await curl(
        f"{admin.server.admin_url}/admin/v1/identities",
        "--cert",
        admin_ca.cert_file,
        "--key",
        admin_ca.key_file,
        trust=ca_material.tls_cert,
    )
    assert reply.status == 200
    assert json.loads(reply.body) == {"items": [], "limit": 100, "offset": 0, "next_offset": None}


# -- organisations ------------------------------------------------------------------------------


@pytest.fixture
async def two_organisations(admin: AdminSetup, keys: KeyPool) -> dict[str, Any]:
    """Org A and org B, each with an identity, an order and a certificate, and a token each."""
    assert admin.service.authority is not None
    found: dict[str, Any] = {}
    for index, cvr in enumerate((ORG_A, ORG_B)):
        registered = await admin.api.call(
            "POST",
            "/organisations",
            token=admin.admin_token,
            json_body={"cvr": cvr, "name": f"Org {cvr}", "email_domains": [f"org{cvr}.dk"]},
        )
        assert registered.status == 201, registered.body
        identity = (
            await admin.api.call(
                "POST", "/identities", token=admin.admin_token, json_body=system(cvr, f"sys-{cvr}")
            )
        ).body
        placed = (
            await admin.api.call(
                "POST",
                "/orders",
                token=admin.admin_token,
                json_body={"identity_id": identity["id"]},
            )
        ).body
        certificate = await admin.service.authority.enroll_with_order(
            placed["reference"],
            placed["one_time_code"],
            csr_der(make_csr(keys.rsa(index).key)),
            source="test",
        )
        pending = (
            await admin.api.call(
                "POST",
                "/orders",
                token=admin.admin_token,
                json_body={"identity_id": identity["id"]},
            )
        ).body
        found[cvr] = {
            "identity": identity["id"],
            "order": pending["reference"],
            "serial": format(certificate.serial_number, "x").rjust(40, "0"),
            "token": await admin.token(f"idm-{cvr}", "read,order,revoke", cvr=cvr),
        }
    return found


async def test_an_organisation_sees_only_its_own_identities_orders_and_certificates(
    admin: AdminSetup, two_organisations: dict[str, Any]
) -> None:
    a = two_organisations[ORG_A]
    for path, key in (
        ("/identities", "id"),
        ("/orders", "identity_id"),
        ("/certificates", "identity_id"),
    ):
        listed = await admin.api.call("GET", path, token=a["token"])
        assert {item[key] for item in listed.body["items"]} == {a["identity"]}, path
    asked_for_b = await admin.api.call("GET", f"/identities?cvr={ORG_B}", token=a["token"])
    assert asked_for_b.status == 403


async def test_an_organisation_cannot_read_order_for_or_revoke_anothers(
    admin: AdminSetup, two_organisations: dict[str, Any]
) -> None:
    a, b = two_organisations[ORG_A], two_organisations[ORG_B]
    attempts = [
        ("GET", f"/identities/{b['identity']}", None),
        ("PATCH", f"/identities/{b['identity']}", {"display_name": "mine now"}),
        ("POST", f"/identities/{b['identity']}/disable", {}),
        ("POST", "/orders", {"identity_id": b["identity"]}),
        ("GET", f"/orders/{b['order']}", None),
        ("POST", f"/orders/{b['order']}/cancel", {}),
        ("POST", f"/orders/{b['order']}/unlock", {}),
        ("GET", f"/orders?identity_id={b['identity']}", None),
        ("GET", f"/certificates/{b['serial']}", None),
        ("GET", f"/certificates?identity_id={b['identity']}", None),
        ("POST", f"/certificates/{b['serial']}/revoke", {"reason": "keyCompromise"}),
    ]
    for method, path, body in attempts:
        reply = await admin.api.call(method, path, token=a["token"], json_body=body)
        assert reply.status == 404, (method, path, reply.body)
    created = await admin.api.call(
        "POST", "/identities", token=a["token"], json_body=system(ORG_B, "planted")
    )
    assert created.status == 403
    # B is untouched: its certificate is live, its order pending, its name unchanged.
    b_view = await admin.api.call("GET", f"/certificates/{b['serial']}", token=b["token"])
    assert b_view.body["status"] == "issued"
    b_order = await admin.api.call("GET", f"/orders/{b['order']}", token=b["token"])
    assert b_order.body["state"] == "pending"
    b_identity = await admin.api.call("GET", f"/identities/{b['identity']}", token=b["token"])
    assert b_identity.body["display_name"] == f"sys-{ORG_B}"


async def test_an_organisation_is_not_told_of_another_cas_certificate_with_its_serial(
    admin: AdminSetup, two_organisations: dict[str, Any]
) -> None:
    a = two_organisations[ORG_A]
    await record_under_other_issuer(admin.service, Serial.from_hex(a["serial"]))
    everyone = await admin.api.call("GET", f"/certificates/{a['serial']}", token=admin.admin_token)
    assert everyone.status == 409
    own = await admin.api.call("GET", f"/certificates/{a['serial']}", token=a["token"])
    assert (own.status, own.body["identity_id"]) == (200, a["identity"])


async def test_a_refused_admin_operation_is_audited_with_who_tried_what(
    admin: AdminSetup, two_organisations: dict[str, Any]
) -> None:
    a, b = two_organisations[ORG_A], two_organisations[ORG_B]
    revoke = f"/certificates/{b['serial']}/revoke"
    reply = await admin.api.call("POST", revoke, token=a["token"], json_body={})
    assert reply.status == 404
    async with admin.service.store.read() as tx:
        [refused] = await tx.list_audit(action="admin.refused")
    assert refused.outcome.value == "refused"
    assert str(refused.actor) == f"token:idm-{ORG_A}"
    assert refused.reason is not None
    assert refused.reason.startswith("NotFound: no certificate")
    assert b["serial"].lstrip("0") in refused.reason
    assert refused.details["operation"] == f"POST /admin/v1{revoke}"
    assert refused.request_id


async def test_an_organisation_cannot_import_rows_of_another(
    admin: AdminSetup, two_organisations: dict[str, Any]
) -> None:
    a = two_organisations[ORG_A]
    csv = (
        "external_id,type,organisation_name,cvr,display_name\n"
        f"x1,system,Org A,{ORG_A},mine\n"
        f"x2,system,Org B,{ORG_B},theirs\n"
    )
    reply = await admin.api.call(
        "POST",
        "/identities/import",
        token=a["token"],
        data=csv.encode(),
        content_type="text/csv",
    )
    assert reply.status == 400
    assert reply.body["errors"] == [
        {"line": 3, "field": "cvr", "detail": f"this token is for CVR {ORG_A} only"}
    ]
    listed = await admin.api.call("GET", "/identities", token=a["token"])
    assert [i["display_name"] for i in listed.body["items"]] == [f"sys-{ORG_A}"]


async def test_an_organisation_token_cannot_regenerate_crls_even_with_admin_scope(
    admin: AdminSetup,
) -> None:
    token = await admin.token("org-admin", "admin", cvr=ORG_A)
    reply = await admin.api.call("POST", "/crl/regenerate", token=token, json_body={})
    assert reply.status == 403


def test_scopes_are_parsed_and_unknown_ones_refused() -> None:
    assert Scope.parse_many("read, order") == {Scope.READ, Scope.ORDER}
    with pytest.raises(BadRequest, match="comma-separated"):
        Scope.parse_many("read,everything")
