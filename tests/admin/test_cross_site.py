"""A browser sends an administrator's client certificate to any page that asks: another site's
page must not change anything with it. Every state-changing request needs a JSON (or import)
content type, which an HTML form cannot send, and is refused when it comes from another origin.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from tests.admin.conftest import AdminSetup
from tests.helpers import KeyPool
from tests.revocation.helpers import issue

SYSTEM = {
    "type": "system",
    "organisation_name": "ÆØÅ ApS",
    "cvr": "99999999",
    "display_name": "billing.service",
}
CSV = "external_id,type,organisation_name,cvr,display_name\nx1,system,ÆØÅ ApS,99999999,x1.svc\n"


@dataclasses.dataclass(frozen=True)
class World:
    """One of each object an operation changes."""

    identity: str
    pending: str
    locked: str
    serial: str


@pytest.fixture
async def world(admin: AdminSetup, keys: KeyPool) -> World:
    api, token = admin.api, admin.admin_token
    identity = (await api.call("POST", "/identities", token=token, json_body=SYSTEM)).body
    order = {"identity_id": identity["id"]}
    pending = (await api.call("POST", "/orders", token=token, json_body=order)).body
    locked = (await api.call("POST", "/orders", token=token, json_body=order)).body
    assert admin.service.authority is not None
    for _ in range(5):
        try:
            await admin.service.authority.enroll_with_order(
                locked["reference"], "NOT-THE-CODE", b"", source="test"
            )
        except Exception:  # noqa: S112 - five refusals lock it, which is the point
            continue
    certificate = await issue(admin.service, keys)
    return World(
        identity["id"],
        pending["reference"],
        locked["reference"],
        format(certificate.serial_number, "040x"),
    )


# name: (method, path, body, the content type it takes)
OPERATIONS: dict[str, tuple[str, str, Any, str]] = {
    "cancel": ("POST", "/orders/{w.pending}/cancel", {}, "application/json"),
    "unlock": ("POST", "/orders/{w.locked}/unlock", {}, "application/json"),
    "crl-regenerate": ("POST", "/crl/regenerate", {}, "application/json"),
    "revoke": (
        "POST",
        "/certificates/{w.serial}/revoke",
        {"reason": "keyCompromise"},
        "application/json",
    ),
    "disable": ("POST", "/identities/{w.identity}/disable", {}, "application/json"),
    "create": ("POST", "/identities", SYSTEM | {"display_name": "new.service"}, "application/json"),
    "patch": ("PATCH", "/identities/{w.identity}", {"display_name": "renamed"}, "application/json"),
    "import": ("POST", "/identities/import", CSV, "text/csv"),
}


async def state(admin: AdminSetup) -> tuple[Any, ...]:
    """Everything an operation could change: objects, CRL numbers, and audited changes."""
    async with admin.service.store.read() as tx:
        changes = [
            event.action
            for event in await tx.list_audit(limit=10_000)
            if not event.action.startswith(("admin.", "token."))
        ]
    listed = [
        (await admin.api.call("GET", f"{path}?limit=500", token=admin.admin_token)).body["items"]
        for path in ("/identities", "/orders", "/certificates")
    ]
    publishing = admin.service.publishing
    assert publishing is not None
    numbers = []
    for issuer in publishing.issuers:
        current = publishing.crls.current(issuer.key_id)
        numbers.append(current.number if current else None)
    return changes, listed, numbers


async def with_certificate(
    admin: AdminSetup,
    world: World,
    name: str,
    *,
    content_type: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """The operation as the administrator's browser would send it, client certificate and all."""
    method, path, body, kind = OPERATIONS[name]
    reply = await admin.certificate_api.call(
        method,
        path.format(w=world),
        data=body.encode() if isinstance(body, str) else json.dumps(body).encode(),
        content_type=content_type or kind,
        headers=headers,
    )
    return reply.status, reply.body


async def refusals(admin: AdminSetup) -> list[str | None]:
    async with admin.service.store.read() as tx:
        return [event.reason for event in await tx.list_audit(action="admin.refused")]


@pytest.mark.parametrize("name", list(OPERATIONS))
async def test_a_text_plain_request_is_a_415_and_changes_nothing(
    admin: AdminSetup, world: World, name: str
) -> None:
    before = await state(admin)
    status, body = await with_certificate(admin, world, name, content_type="text/plain")
    assert status == 415, body
    assert await state(admin) == before
    [reason] = await refusals(admin)
    assert reason is not None
    assert reason.startswith("UnsupportedMediaType: ")


@pytest.mark.parametrize("name", list(OPERATIONS))
async def test_a_foreign_origin_is_a_403_and_changes_nothing(
    admin: AdminSetup, world: World, name: str
) -> None:
    before = await state(admin)
    status, body = await with_certificate(
        admin, world, name, headers={"Origin": "https://evil.example"}
    )
    assert status == 403, body
    assert "origin" in body["detail"]
    assert await state(admin) == before
    [reason] = await refusals(admin)
    assert reason is not None
    assert reason.startswith("NotEntitled: ")


@pytest.mark.parametrize("name", list(OPERATIONS))
async def test_a_cross_site_fetch_is_a_403_and_changes_nothing(
    admin: AdminSetup, world: World, name: str
) -> None:
    before = await state(admin)
    status, body = await with_certificate(
        admin, world, name, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert status == 403, body
    assert await state(admin) == before


@pytest.mark.parametrize("name", list(OPERATIONS))
async def test_a_same_origin_request_works(admin: AdminSetup, world: World, name: str) -> None:
    before = await state(admin)
    status, body = await with_certificate(
        admin,
        world,
        name,
        headers={"Origin": admin.server.admin_url, "Sec-Fetch-Site": "same-origin"},
    )
    assert status in (200, 201), body
    assert await state(admin) != before


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:{port}"},
        {"Origin": "https://127.0.0.1:1"},
        {"Origin": "https://localhost:{port}"},
        {"Origin": "https://127.0.0.1:{port}, https://evil.example"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://127.0.0.1:{port}", "Sec-Fetch-Site": "cross-site"},
    ],
    ids=[
        "opaque-origin",
        "other-scheme",
        "other-port",
        "other-host",
        "two-origins",
        "same-site-fetch",
        "own-origin-but-cross-site",
    ],
)
async def test_any_other_origin_is_refused(
    admin: AdminSetup, world: World, headers: dict[str, str]
) -> None:
    port = admin.server.admin_url.rsplit(":", 1)[1]
    sent = {key: value.format(port=port) for key, value in headers.items()}
    reply = await admin.certificate_api.call(
        "POST", f"/orders/{world.pending}/cancel", json_body={}, headers=sent
    )
    assert reply.status == 403, reply.body
    order = await admin.api.call("GET", f"/orders/{world.pending}", token=admin.admin_token)
    assert order.body["state"] == "pending"


@pytest.mark.parametrize(
    "content_type",
    [None, "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/csv"],
    ids=["none", "form", "multipart", "csv-to-a-json-operation"],
)
async def test_only_json_is_taken_where_json_is_documented(
    admin: AdminSetup, world: World, content_type: str | None
) -> None:
    reply = await admin.certificate_api.call(
        "POST", f"/orders/{world.pending}/cancel", data=b"", content_type=content_type
    )
    assert reply.status == 415, reply.body
    order = await admin.api.call("GET", f"/orders/{world.pending}", token=admin.admin_token)
    assert order.body["state"] == "pending"


@pytest.mark.parametrize(
    ("body", "works"), [(b"", True), (b"{}", True), (b'{"x": 1}', False)], ids=str
)
async def test_an_operation_without_fields_takes_an_empty_body_or_an_empty_object(
    admin: AdminSetup, world: World, body: bytes, works: bool
) -> None:
    reply = await admin.certificate_api.call(
        "POST", f"/orders/{world.pending}/cancel", data=body, content_type="application/json"
    )
    assert (reply.status == 200) is works, reply.body
    if not works:
        assert reply.body["field"] == "x"
