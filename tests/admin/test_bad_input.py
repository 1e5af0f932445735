"""Every malformed admin request is a 4xx problem+json (RFC 9457) that names the field."""

from __future__ import annotations

from typing import Any

import pytest

from tests.admin.conftest import AdminSetup

USER = {
    "type": "user",
    "organisation_name": "ÆØÅ ApS",
    "cvr": "99999999",
    "given_name": "Søren",
    "surname": "Ærø",
    "email": "soren@example.dk",
}


def problem(reply: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert reply.status == status, reply.body
    assert reply.headers["Content-Type"].startswith("application/problem+json")
    body: dict[str, Any] = reply.body
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert body["title"]
    assert body["detail"]
    if field is not None:
        assert body["field"] == field, body
    return body


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"cvr": "1234567"}, "cvr", "8 digits"),
        ({"cvr": 99999999}, "cvr", "must be a string"),
        ({"email": "æøå@example.dk"}, "email", "IA5String"),
        ({"email": "not an address"}, "email", "address"),
        ({"type": "robot"}, "type", "user, organisation, system"),
        ({"given_name": ["Søren"]}, "given_name", "string"),
        ({"surname": True}, "surname", "string"),
        ({"nickname": "Søs"}, "nickname", "unknown field"),
        ({"organisation_name": "x" * 65}, "organisation_name", "at most 64"),
    ],
    ids=[
        "short-cvr",
        "numeric-cvr",
        "danish-email",
        "no-address",
        "bad-type",
        "list",
        "boolean",
        "unknown-field",
        "long-name",
    ],
)
async def test_a_bad_field_is_a_400_naming_it(
    admin: AdminSetup, change: dict[str, Any], field: str, words: str
) -> None:
    reply = await admin.api.call(
        "POST", "/identities", token=admin.admin_token, json_body=USER | change
    )
    assert words in problem(reply, 400, field)["detail"]


async def test_a_missing_required_field_is_named(admin: AdminSetup) -> None:
    body = {k: v for k, v in USER.items() if k != "cvr"}
    reply = await admin.api.call("POST", "/identities", token=admin.admin_token, json_body=body)
    problem(reply, 400, "cvr")


@pytest.mark.parametrize(
    "raw",
    [b"{", b"[]", b"null", b'"text"', b"\xff\xfe", b""],
    ids=["truncated", "array", "null", "string", "not-utf8", "empty"],
)
async def test_a_body_that_is_not_a_json_object_is_a_400(admin: AdminSetup, raw: bytes) -> None:
    reply = await admin.api.call(
        "POST", "/identities", token=admin.admin_token, data=raw, content_type="application/json"
    )
    problem(reply, 400)


async def test_a_body_of_another_content_type_is_a_415(admin: AdminSetup) -> None:
    reply = await admin.api.call(
        "POST",
        "/identities",
        token=admin.admin_token,
        data=b"type=user",
        content_type="application/x-www-form-urlencoded",
    )
    problem(reply, 415)


async def test_a_body_over_the_cap_is_a_413(admin: AdminSetup) -> None:
    reply = await admin.api.call(
        "POST",
        "/identities",
        token=admin.admin_token,
        data=b'{"x": "' + b"a" * 70_000 + b'"}',
        content_type="application/json",
    )
    problem(reply, 413)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=501", "limit"),
        ("limit=0", "limit"),
        ("limit=ten", "limit"),
        ("offset=-1", "offset"),
        ("status=sleeping", "status"),
        ("type=robot", "type"),
        ("colour=blue", "colour"),
    ],
)
async def test_a_bad_page_or_filter_is_a_400_naming_it(
    admin: AdminSetup, query: str, field: str
) -> None:
    reply = await admin.api.call("GET", f"/identities?{query}", token=admin.admin_token)
    problem(reply, 400, field)


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/identities/not-a-uuid", "identity_id"),
        ("/certificates/xyz", "serial"),
        ("/certificates?expires_before=yesterday", "expires_before"),
        ("/certificates?expires_before=2026-01-01T00:00:00", "expires_before"),
        ("/orders?identity_id=42", "identity_id"),
    ],
)
async def test_a_bad_identifier_is_a_400_naming_it(
    admin: AdminSetup, path: str, field: str
) -> None:
    reply = await admin.api.call("GET", path, token=admin.admin_token)
    problem(reply, 400, field)


async def test_an_unknown_route_or_method_is_a_problem_too(admin: AdminSetup) -> None:
    problem(await admin.api.call("GET", "/nothing-here", token=admin.admin_token), 404)
    problem(await admin.api.call("DELETE", "/identities", token=admin.admin_token), 405)


async def test_an_order_with_bad_fields_names_them(admin: AdminSetup) -> None:
    identity = (
        await admin.api.call("POST", "/identities", token=admin.admin_token, json_body=USER)
    ).body
    for body, field in (
        ({"identity_id": identity["id"], "validity_days": "7"}, "validity_days"),
        ({"identity_id": identity["id"], "validity_days": 400}, "validity_days"),
        ({"identity_id": identity["id"], "profile": "system"}, "profile"),
        ({"identity_id": "nope"}, "identity_id"),
    ):
        reply = await admin.api.call("POST", "/orders", token=admin.admin_token, json_body=body)
        problem(reply, 400, field)


async def test_a_revocation_with_an_unknown_reason_names_it(admin: AdminSetup) -> None:
    reply = await admin.api.call(
        "POST",
        f"/certificates/{'7' * 40}/revoke",
        token=admin.admin_token,
        json_body={"reason": "certificateHold"},
    )
    problem(reply, 400, "reason")
