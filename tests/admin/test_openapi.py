"""The OpenAPI document is valid, covers exactly the routes, and describes what they return."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import pytest
from aiohttp import web
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from est_ca.admin import openapi, routes
from est_ca.admin.routes import PREFIX
from est_ca.errors import ApprovalPending
from est_ca.web.app import admin_app
from tests.admin.conftest import AdminSetup, Reply
from tests.helpers import KeyPool, csr_der, make_csr

DOCUMENT = openapi.document()


def test_the_document_is_valid_openapi_3_1() -> None:
    validate(DOCUMENT)


def _routed(app: web.Application) -> set[tuple[str, str]]:
    operations = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        # The console (/console/, HTML pages) shares the listener but is not the API.
        if route.method == "HEAD" or not path or not path.startswith(PREFIX + "/"):
            continue
        operations.add((route.method.lower(), path.removeprefix(PREFIX)))
    return operations


def _documented() -> set[tuple[str, str]]:
    return {
        (method, path)
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method in {"get", "post", "patch", "put", "delete"}
    }


async def test_every_route_is_documented_and_every_documented_operation_routed(
    admin: AdminSetup,
) -> None:
    routed = _routed(admin_app(admin.service))
    assert routed == _documented()


async def test_every_change_documents_the_bodies_it_takes_and_its_refusals(
    admin: AdminSetup,
) -> None:
    """The same-origin and content-type rule, as the document shows it to clients."""
    changes = {(m, p) for m, p in _routed(admin_app(admin.service)) if m in {"post", "patch"}}
    assert changes
    for method, path in sorted(changes):
        operation = DOCUMENT["paths"][path][method]
        body = operation.get("requestBody", {})
        assert set(body.get("content", {})) == set(routes.body_types(PREFIX + path)), path
        assert {"403", "413", "415"} <= set(operation["responses"]), path


def test_the_documented_page_bounds_are_the_enforced_ones() -> None:
    parameters = DOCUMENT["paths"]["/identities"]["get"]["parameters"]
    schemas = {p["name"]: p["schema"] for p in parameters}
    assert (schemas["limit"]["minimum"], schemas["limit"]["maximum"]) == (1, routes.MAX_PAGE)
    assert (schemas["offset"]["minimum"], schemas["offset"]["maximum"]) == (0, routes.MAX_OFFSET)


async def test_the_service_serves_the_document(admin: AdminSetup) -> None:
    reply = await admin.api.call("GET", "/openapi.json")
    assert reply.status == 200
    assert reply.body == DOCUMENT


def _operation(reply: Reply) -> dict[str, Any]:
    path = reply.path.split("?", 1)[0]
    for template, item in DOCUMENT["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path) and reply.method.lower() in item:
            operation: dict[str, Any] = item[reply.method.lower()]
            return operation
    raise AssertionError(f"{reply.method} {path} is not in the document")


def _check(reply: Reply) -> None:
    responses = _operation(reply)["responses"]
    assert str(reply.status) in responses, f"{reply.method} {reply.path}: {reply.status}"
    content = responses[str(reply.status)].get("content", {})
    media = reply.headers["Content-Type"].split(";")[0]
    assert media in content, f"{reply.method} {reply.path}: {media}"
    registry: Registry[Any] = Registry().with_resource(
        "urn:est-ca:admin", Resource.from_contents(DOCUMENT, default_specification=DRAFT202012)
    )
    schema = {"$ref": "urn:est-ca:admin#" + _pointer(reply, media)}
    jsonschema.Draft202012Validator(schema, registry=registry).validate(reply.body)


def _pointer(reply: Reply, media: str) -> str:
    path = reply.path.split("?", 1)[0]
    for template, item in DOCUMENT["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path) and reply.method.lower() in item:
            escaped = template.replace("~", "~0").replace("/", "~1")
            return (
                f"/paths/{escaped}/{reply.method.lower()}/responses/{reply.status}"
                f"/content/{media.replace('/', '~1')}/schema"
            )
    raise AssertionError(path)


async def test_what_each_operation_returns_matches_the_document(
    admin: AdminSetup, keys: KeyPool
) -> None:
    """One pass over every operation, successes and failures, every reply checked."""
    api, token = admin.api, admin.admin_token
    user = {
        "type": "user",
        "organisation_name": "ÆØÅ ApS",
        "cvr": "99999999",
        "given_name": "Søren",
        "surname": "Ærø",
        "email": "s@example.dk",
    }
    identity = (await api.call("POST", "/identities", token=token, json_body=user)).body
    await api.call("POST", "/identities", token=token, json_body=user | {"cvr": "1"})
    await api.call("GET", "/identities?limit=1", token=token)
    await api.call("GET", f"/identities/{identity['id']}", token=token)
    await api.call(
        "PATCH", f"/identities/{identity['id']}", token=token, json_body={"surname": "Ørsted"}
    )
    await api.call(
        "POST",
        "/identities/import",
        token=token,
        content_type="text/csv",
        data="external_id,type,organisation_name,cvr,display_name\n"
        "x,system,ÆØÅ ApS,99999999,x.service\n".encode(),
    )
    await api.call(
        "POST",
        "/identities/import?place_orders=true",
        token=token,
        content_type="text/csv",
        data="external_id,type,organisation_name,cvr,display_name\n"
        "y,system,ÆØÅ ApS,99999999,y.service\n".encode(),
    )
    await api.call(
        "POST",
        "/identities/import",
        token=token,
        content_type="text/csv",
        data=b"external_id,type\nz,robot\n",
    )
    placed = (
        await api.call("POST", "/orders", token=token, json_body={"identity_id": identity["id"]})
    ).body
    await api.call("GET", "/orders", token=token)
    await api.call("GET", f"/orders/{placed['reference']}", token=token)
    await api.call("POST", f"/orders/{placed['reference']}/unlock", token=token, json_body={})
    assert admin.service.authority is not None
    certificate = await admin.service.authority.enroll_with_order(
        placed["reference"],
        placed["one_time_code"],
        csr_der(make_csr(keys.rsa().key)),
        source="test",
    )
    serial = format(certificate.serial_number, "x").rjust(40, "0")
    await api.call("GET", "/certificates?status=issued", token=token)
    await api.call("GET", f"/certificates/{serial}", token=token)
    await api.call(
        "POST", f"/certificates/{serial}/revoke", token=token, json_body={"reason": "superseded"}
    )
    second = (
        await api.call("POST", "/orders", token=token, json_body={"identity_id": identity["id"]})
    ).body
    await api.call("POST", f"/orders/{second['reference']}/cancel", token=token, json_body={})
    await api.call("GET", "/certificates?expiring_within_days=30", token=token)
    for decision, body in (("approve", {}), ("reject", {"reason": "unknown device"})):
        waiting = (
            await api.call(
                "POST",
                "/orders",
                token=token,
                json_body={"identity_id": identity["id"], "require_approval": True},
            )
        ).body
        with pytest.raises(ApprovalPending):
            await admin.service.authority.enroll_with_order(
                waiting["reference"],
                waiting["one_time_code"],
                csr_der(make_csr(keys.rsa(1).key)),
                source="test",
            )
        await api.call("GET", "/requests?status=pending", token=token)
        await api.call("GET", f"/requests/{waiting['reference']}", token=token)
        await api.call(
            "POST", f"/requests/{waiting['reference']}/{decision}", token=token, json_body=body
        )
        await api.call(
            "POST", f"/requests/{waiting['reference']}/{decision}", token=token, json_body=body
        )
    await api.call("GET", f"/requests/{placed['reference']}", token=token)
    await api.call("POST", f"/identities/{identity['id']}/disable", token=token, json_body={})
    await api.call("POST", "/crl/regenerate", token=token, json_body={})
    await api.call("GET", "/health")
    await api.call("GET", "/ready")
    await api.call("GET", "/identities")
    await api.call("GET", "/identities/00000000-0000-0000-0000-000000000000", token=token)
    statuses = set()
    for reply in api.replies:
        if reply.path == "/openapi.json":
            continue
        _check(reply)
        statuses.add(reply.status)
    assert {200, 201, 400, 401, 404} <= statuses


def test_the_check_refuses_a_body_the_document_does_not_describe() -> None:
    """The checker has teeth: an extra field in an identity is not what the document says."""
    identity = {
        "id": "00000000-0000-0000-0000-000000000000",
        "type": "system",
        "display_name": "x",
        "organisation_name": "x",
        "cvr": "99999999",
        "given_name": None,
        "surname": None,
        "email": None,
        "status": "active",
        "external_id": None,
        "created_at": "2026-01-01T00:00:00+00:00",
    }
    reply = Reply(
        200,
        {"Content-Type": "application/json"},
        identity,
        "GET",
        "/identities/00000000-0000-0000-0000-000000000000",
    )
    _check(reply)
    reply.body = identity | {"password": "oops"}
    try:
        _check(reply)
    except jsonschema.ValidationError:
        return
    raise AssertionError("an undocumented field passed the check")
