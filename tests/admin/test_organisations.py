"""Organisations are records: an organisation's own administrators cannot choose the name its
certificates carry, nor email addresses outside its domains; only the CA's administrators
register and change organisations (API, CLI, import)."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.x509.oid import NameOID

from est_ca.audit import Actor
from est_ca.errors import NotEntitled
from est_ca.registration.organisations import OrganisationStatus
from tests.admin.conftest import AdminSetup
from tests.helpers import KeyPool, csr_der, make_csr

CVR = "99999999"  # registered by the fixtures as "ÆØÅ ApS", email domain example.dk


def user(**fields: Any) -> dict[str, Any]:
    return {
        "type": "user",
        "cvr": CVR,
        "given_name": "Bo",
        "surname": "Bøgh",
        "email": "bo@example.dk",
        **fields,
    }


async def enrolled_organisation_name(admin: AdminSetup, identity_id: str, keys: KeyPool) -> str:
    assert admin.service.authority is not None
    placed = await admin.api.call(
        "POST", "/orders", token=admin.admin_token, json_body={"identity_id": identity_id}
    )
    certificate = await admin.service.authority.enroll_with_order(
        placed.body["reference"],
        placed.body["one_time_code"],
        csr_der(make_csr(keys.rsa().key)),
        source="test",
    )
    [name] = certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return str(name.value)


async def test_an_organisations_token_cannot_name_another_organisation(
    admin: AdminSetup, keys: KeyPool
) -> None:
    token = await admin.token("idm", "read,order", cvr=CVR)
    reply = await admin.api.call(
        "POST", "/identities", token=token, json_body=user(organisation_name="Danske Bank A/S")
    )
    assert reply.status == 400
    assert reply.body["field"] == "organisation_name"
    assert "ÆØÅ ApS" in reply.body["detail"]
    created = await admin.api.call("POST", "/identities", token=token, json_body=user())
    assert created.status == 201
    assert created.body["organisation_name"] == "ÆØÅ ApS"
    assert await enrolled_organisation_name(admin, created.body["id"], keys) == "ÆØÅ ApS"


async def test_an_email_outside_the_organisations_domains_is_refused_naming_them(
    admin: AdminSetup,
) -> None:
    token = await admin.token("idm", "read,order", cvr=CVR)
    reply = await admin.api.call(
        "POST", "/identities", token=token, json_body=user(email="ceo@danskebank.dk")
    )
    assert reply.status == 400
    assert reply.body["field"] == "email"
    assert "allowed: example.dk" in reply.body["detail"]
    created = await admin.api.call("POST", "/identities", token=token, json_body=user())
    changed = await admin.api.call(
        "PATCH",
        f"/identities/{created.body['id']}",
        token=token,
        json_body={"email": "ceo@danskebank.dk"},
    )
    assert changed.status == 400
    assert changed.body["field"] == "email"


async def test_an_identity_cannot_change_its_organisation_name(admin: AdminSetup) -> None:
    created = await admin.api.call("POST", "/identities", token=admin.admin_token, json_body=user())
    reply = await admin.api.call(
        "PATCH",
        f"/identities/{created.body['id']}",
        token=admin.admin_token,
        json_body={"organisation_name": "Danske Bank A/S"},
    )
    assert reply.status == 400
    assert reply.body["field"] == "organisation_name"


async def test_only_the_cas_administrators_register_or_change_organisations(
    admin: AdminSetup,
) -> None:
    confined = await admin.token("idm", "read,order,revoke,admin", cvr=CVR)
    new = {"cvr": "12345678", "name": "Ny ApS", "email_domains": ["ny.dk"]}
    for method, path, body in (
        ("POST", "/organisations", new),
        ("PATCH", f"/organisations/{CVR}", {"name": "Danske Bank A/S"}),
        ("POST", "/organisations/import", None),
    ):
        reply = await admin.api.call(
            method,
            path,
            token=confined,
            json_body=body,
            data=None if body else b"cvr,name\n12345678,Ny ApS\n",
            content_type=None if body else "text/csv",
        )
        assert reply.status == 403, (path, reply.body)
    created = await admin.api.call("POST", "/organisations", token=admin.admin_token, json_body=new)
    assert created.status == 201
    assert created.body["email_domains"] == ["ny.dk"]
    again = await admin.api.call("POST", "/organisations", token=admin.admin_token, json_body=new)
    assert again.status == 409


async def test_an_organisations_token_sees_its_own_record_only(admin: AdminSetup) -> None:
    token = await admin.token("reader", "read", cvr=CVR)
    listed = await admin.api.call("GET", "/organisations", token=token)
    assert [o["cvr"] for o in listed.body["items"]] == [CVR]
    other = await admin.api.call("GET", "/organisations/34051178", token=token)
    assert other.status == 404
    everyone = await admin.api.call("GET", "/organisations", token=admin.admin_token)
    assert len(everyone.body["items"]) == 3


async def test_a_renamed_organisation_reaches_certificates_at_their_next_issuance(
    admin: AdminSetup, keys: KeyPool
) -> None:
    created = await admin.api.call("POST", "/identities", token=admin.admin_token, json_body=user())
    renamed = await admin.api.call(
        "PATCH", f"/organisations/{CVR}", token=admin.admin_token, json_body={"name": "ÆØÅ A/S"}
    )
    assert renamed.status == 200
    assert await enrolled_organisation_name(admin, created.body["id"], keys) == "ÆØÅ A/S"


async def test_a_disabled_organisation_gets_no_identities_orders_or_certificates(
    admin: AdminSetup, keys: KeyPool
) -> None:
    service = admin.service
    assert service.authority is not None
    created = await admin.api.call("POST", "/identities", token=admin.admin_token, json_body=user())
    placed = await admin.api.call(
        "POST", "/orders", token=admin.admin_token, json_body={"identity_id": created.body["id"]}
    )
    await service.registry.update_organisation(
        Actor("admin", "test"), CVR, status=OrganisationStatus.DISABLED
    )
    refused = await admin.api.call(
        "POST", "/identities", token=admin.admin_token, json_body=user(email="x@example.dk")
    )
    assert refused.status == 400
    assert "disabled" in refused.body["detail"]
    with pytest.raises(NotEntitled, match="organisation of this identity is disabled"):
        await service.authority.enroll_with_order(
            placed.body["reference"],
            placed.body["one_time_code"],
            csr_der(make_csr(keys.rsa().key)),
            source="test",
        )
    assert await service.registry.list_certificates(status=None) == []


async def test_an_import_row_outside_the_organisations_domains_or_name_is_an_error(
    admin: AdminSetup,
) -> None:
    text = (
        "external_id,type,organisation_name,cvr,given_name,surname,email\n"
        "e1,user,,99999999,Bo,Bøgh,bo@example.dk\n"
        "e2,user,Danske Bank A/S,99999999,Bo,Bøgh,bo2@example.dk\n"
        "e3,user,,99999999,Bo,Bøgh,ceo@danskebank.dk\n"
        "e4,user,,12121212,Bo,Bøgh,bo@example.dk\n"
    )
    reply = await admin.api.call(
        "POST",
        "/identities/import",
        token=admin.admin_token,
        data=text.encode(),
        content_type="text/csv",
    )
    assert reply.status == 400
    assert [(e["line"], e["field"]) for e in reply.body["errors"]] == [
        (3, "organisation_name"),
        (4, "email"),
        (5, "cvr"),
    ]


async def test_organisations_are_imported_by_the_cas_administrators(admin: AdminSetup) -> None:
    text = (
        '{"cvr": "12345678", "name": "Ny ApS", "email_domains": ["ny.dk", "ny.com"]}\n'
        '{"cvr": "99999999", "name": "ÆØÅ ApS", "email_domains": "example.dk"}\n'
    )
    reply = await admin.api.call(
        "POST",
        "/organisations/import",
        token=admin.admin_token,
        data=text.encode(),
        content_type="application/x-ndjson",
    )
    assert reply.status == 201, reply.body
    assert [o["cvr"] for o in reply.body["created"]] == ["12345678"]
    assert [o["cvr"] for o in reply.body["existing"]] == ["99999999"]
    assert reply.body["created"][0]["email_domains"] == ["ny.com", "ny.dk"]
