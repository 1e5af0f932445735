"""Every malformed admin request is a 4xx problem+json (RFC 9457) that names the field."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from tests.admin.conftest import AdminSetup
from tests.helpers import KeyPool
from tests.revocation.helpers import issue

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
        ("/certificates/00", "serial"),
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


# -- hostile input: a 400 naming the field, never a 500, and an admin.refused event each ---------

DEEP = "[" * 20_000 + "]" * 20_000
HUGE = "1" + "0" * 4999  # 5000 digits: Python's int() refuses more than 4300


async def refusals(admin: AdminSetup) -> list[str | None]:
    async with admin.service.store.read() as tx:
        return [event.reason for event in await tx.list_audit(action="admin.refused")]


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("GET", "/identities?offset=9223372036854775808", "offset"),
        ("GET", "/orders?offset=1000000001", "offset"),
        ("GET", "/certificates?offset=" + "9" * 4000, "offset"),
        ("GET", "/certificates?offset=" + HUGE, "offset"),
        ("GET", "/identities?limit=" + HUGE, "limit"),
        ("GET", "/certificates?expires_after=0001-01-01T00:00:00%2B14:00", "expires_after"),
        ("GET", "/certificates?expires_before=9999-12-31T23:59:59-14:00", "expires_before"),
        ("GET", "/identities?cvr=%00", "cvr"),
        ("GET", "/orders/%00", "reference"),
        ("POST", "/orders/AB%00CD/cancel", "reference"),
    ],
    ids=[
        "offset-2**63",
        "offset-over-the-cap",
        "offset-4000-digits",
        "offset-5000-digits",
        "limit-5000-digits",
        "year-1-east-of-utc",
        "year-9999-west-of-utc",
        "nul-in-cvr",
        "nul-reference",
        "nul-in-reference",
    ],
)
async def test_a_hostile_query_or_path_is_a_400_naming_it_and_audited(
    admin_on_each_database: AdminSetup, method: str, path: str, field: str
) -> None:
    admin = admin_on_each_database
    body: dict[str, str] | None = {} if method == "POST" else None
    reply = await admin.api.call(method, path, token=admin.admin_token, json_body=body)
    problem(reply, 400, field)
    [reason] = await refusals(admin)
    assert reason is not None
    assert reason.startswith("BadRequest: ")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/identities", DEEP, "body"),
        ("/identities", '{"type": ' + DEEP + "}", "body"),
        ("/identities", json.dumps(USER)[:-1] + ', "surname": ' + HUGE + "}", "surname"),
        ("/orders", '{"identity_id": "x", "validity_days": ' + HUGE + "}", "validity_days"),
        ("/orders", '{"identity_id": "x", "validity_days": -' + HUGE + "}", "validity_days"),
    ],
    ids=["deep-array", "deep-field", "huge-name", "huge-validity", "huge-negative"],
)
async def test_a_hostile_json_body_is_a_400_naming_it_and_audited(
    admin: AdminSetup, path: str, body: str, field: str
) -> None:
    reply = await admin.api.call(
        "POST", path, token=admin.admin_token, data=body.encode(), content_type="application/json"
    )
    problem(reply, 400, field)
    [reason] = await refusals(admin)
    assert reason is not None
    assert reason.startswith("BadRequest: ")


async def test_hostile_json_lines_are_row_errors_and_audited(admin: AdminSetup) -> None:
    lines = "\n".join(
        [
            DEEP,
            '{"external_id": "a", "cvr": ' + HUGE + "}",
            '{"external_id": ' + DEEP + "}",
        ]
    )
    reply = await admin.api.call(
        "POST",
        "/identities/import",
        token=admin.admin_token,
        data=lines.encode(),
        content_type="application/x-ndjson",
    )
    problem(reply, 400)
    assert [(e["line"], e["detail"]) for e in reply.body["errors"]] == [
        (1, "nested too deeply to read"),
        (2, "a number too long to read"),
        (3, "nested too deeply to read"),
    ]
    [reason] = await refusals(admin)
    assert reason is not None
    assert reason.startswith("ImportRejected: 3 error(s)")


@pytest.mark.parametrize(
    "when",
    ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00", "before-not-before"],
    ids=["year-1", "year-1-east-of-utc", "a-second-before-not-before"],
)
async def test_an_invalidity_date_outside_the_certificates_validity_is_a_400(
    admin: AdminSetup, keys: KeyPool, when: str
) -> None:
    certificate = await issue(admin.service, keys)
    if when == "before-not-before":
        when = (certificate.not_valid_before_utc - dt.timedelta(seconds=1)).isoformat()
    serial = format(certificate.serial_number, "040x")
    reply = await admin.api.call(
        "POST",
        f"/certificates/{serial}/revoke",
        token=admin.admin_token,
        json_body={"reason": "keyCompromise", "invalidity_date": when},
    )
    problem(reply, 400, "invalidity_date")
    [reason] = await refusals(admin)
    assert reason is not None
    assert reason.startswith("BadRequest: ")
    still = await admin.api.call("GET", f"/certificates/{serial}", token=admin.admin_token)
    assert still.body["status"] == "issued"


async def test_control_characters_in_an_import_are_reported_and_audited_on_each_database(
    admin_on_each_database: AdminSetup,
) -> None:
    """Found by the schemathesis fuzz: PostgreSQL refuses NUL in text, so the refusal's audit
    event carried the column name raw and the answer was a 500."""
    admin = admin_on_each_database
    reply = await admin.api.call(
        "POST",
        "/identities/import",
        token=admin.admin_token,
        data=b"external_id,ty\x00pe\x1b[2J\nx,system\n",
        content_type="text/csv",
    )
    body = problem(reply, 400)
    assert {
        "line": 1,
        "field": "ty\x00pe\x1b[2J",
        "detail": "unknown column 'ty\\x00pe\\x1b[2J'",
    } in body["errors"]
    [reason] = await refusals(admin)
    assert reason is not None
    assert reason.startswith("ImportRejected: ")
    assert "\\x00" in reason
    assert all(character.isprintable() for character in reason)
