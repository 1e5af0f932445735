"""Bulk import over the API: all rows or none, every error with its line, idempotent."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

from cryptography.x509 import ocsp

from est_ca.client import EstClient
from tests.admin.conftest import AdminSetup, Reply
from tests.conftest import CaMaterial
from tests.helpers import KeyPool, credentials, make_csr, new_order, new_system, post_ocsp
from tests.revocation.helpers import issue, ocsp_request, random_nonce

T = TypeVar("T")

GOOD = (
    "external_id,type,organisation_name,cvr,display_name,given_name,surname,email\n"
    "emp-1,user,ÆØÅ ApS,99999999,,Søren,Ærø Ålborg,soren@example.dk\n"
    "emp-2,user,ÆØÅ ApS,99999999,,Åse,Ørsted,ase@example.dk\n"
    "svc-1,system,ÆØÅ ApS,99999999,billing.service,,,\n"
)


async def imported(admin: AdminSetup, text: str, kind: str = "text/csv", query: str = "") -> Reply:
    return await admin.api.call(
        "POST",
        f"/identities/import{query}",
        token=admin.admin_token,
        data=text.encode(),
        content_type=kind,
    )


async def identities(admin: AdminSetup) -> list[str]:
    listed = await admin.api.call("GET", "/identities", token=admin.admin_token)
    return sorted(i["external_id"] for i in listed.body["items"])


async def test_a_good_file_imports_every_row(admin: AdminSetup) -> None:
    reply = await imported(admin, GOOD)
    assert reply.status == 201
    assert len(reply.body["created"]) == 3
    assert await identities(admin) == ["emp-1", "emp-2", "svc-1"]


async def test_a_file_with_errors_imports_nothing_and_lists_them_all(admin: AdminSetup) -> None:
    bad = GOOD + (
        "emp-3,user,ÆØÅ ApS,1234,,Bo,Bøgh,bo@example.dk\n"
        "emp-4,user,ÆØÅ ApS,99999999,,Æble,Øl,æble@example.dk\n"
        "emp-1,user,ÆØÅ ApS,99999999,,Søren,Ærø Ålborg,soren@example.dk\n"
    )
    reply = await imported(admin, bad)
    assert reply.status == 400
    errors = reply.body["errors"]
    assert [(e["line"], e["field"]) for e in errors] == [
        (5, "cvr"),
        (6, "email"),
        (7, "external_id"),
    ]
    assert "duplicates the row on line 2" in errors[2]["detail"]
    assert await identities(admin) == []


async def test_importing_the_same_file_again_creates_nothing(admin: AdminSetup) -> None:
    await imported(admin, GOOD)
    again = await imported(admin, GOOD)
    assert again.status == 200
    assert (len(again.body["created"]), len(again.body["existing"])) == (0, 3)
    assert await identities(admin) == ["emp-1", "emp-2", "svc-1"]


async def test_a_row_that_contradicts_the_registered_identity_is_an_error(
    admin: AdminSetup,
) -> None:
    await imported(admin, GOOD)
    changed = GOOD.replace("billing.service", "invoicing.service")
    reply = await imported(admin, changed)
    assert reply.status == 400
    [error] = reply.body["errors"]
    assert error["line"] == 4
    assert "registered with other data" in error["detail"]


async def test_json_lines_import_and_orders_come_back_with_their_codes_once(
    admin: AdminSetup,
) -> None:
    lines = "\n".join(
        json.dumps(row, ensure_ascii=False)
        for row in (
            {
                "external_id": "a",
                "type": "system",
                "organisation_name": "ÆØÅ ApS",
                "cvr": "99999999",
                "display_name": "a.service",
            },
            {
                "external_id": "b",
                "type": "organisation",
                "organisation_name": "ÆØÅ ApS",
                "cvr": "99999999",
                "display_name": "ÆØÅ segl",
            },
        )
    )
    reply = await imported(admin, lines, "application/x-ndjson", "?place_orders=true")
    assert reply.status == 201
    orders = reply.body["orders"]
    assert len(orders) == 2
    assert all(len(order["one_time_code"]) == 23 for order in orders)
    listed = await admin.api.call("GET", "/orders", token=admin.admin_token)
    assert all("one_time_code" not in order for order in listed.body["items"])
    assert {order["state"] for order in listed.body["items"]} == {"pending"}


async def test_a_jsonl_line_that_is_not_an_object_is_reported(admin: AdminSetup) -> None:
    reply = await imported(admin, '{"external_id": "a"\n[1, 2]\n', "application/x-ndjson")
    assert reply.status == 400
    assert [e["line"] for e in reply.body["errors"]] == [1, 2]


async def test_an_import_in_another_format_is_a_415(admin: AdminSetup) -> None:
    reply = await imported(admin, GOOD, "application/json")
    assert reply.status == 415


async def test_others_are_served_within_a_second_during_a_big_import_with_orders(
    admin: AdminSetup, ca_material: CaMaterial, keys: KeyPool, tmp_path: Path
) -> None:
    """One organisation imports 2,000 people with orders; meanwhile someone else enrolls and a
    relying party asks OCSP (with a nonce: a fresh signature): neither waits for the import."""
    service, server = admin.service, admin.server
    assert service.ca is not None
    issued = await issue(service, keys)
    waiting = await new_order(service, await new_system(service, "someone-else"))
    staff = "external_id,type,organisation_name,cvr,given_name,surname,email\n" + "".join(
        f"emp-{n},user,ÆØÅ ApS,99999999,Søren {n},Ærø,s{n}@example.dk\n" for n in range(2000)
    )
    importing = asyncio.create_task(imported(admin, staff, query="?place_orders=true"))
    await asyncio.sleep(0.05)  # the import is under way

    async def timed(work: Awaitable[T]) -> tuple[T, float]:
        started = time.perf_counter()
        result = await work
        return result, time.perf_counter() - started

    (enrolled, enroll_seconds), (ocsp_reply, ocsp_seconds) = await asyncio.gather(
        timed(
            EstClient(server.https_url, trust=ca_material.tls_cert).simpleenroll(
                make_csr(keys.rsa(1).key), credentials(waiting)
            )
        ),
        timed(
            post_ocsp(
                service,
                tmp_path,
                ocsp_request(issued, service.ca.certificate, nonce=random_nonce()),
            )
        ),
    )
    reply = await importing
    print(f"during the import: enrollment {enroll_seconds:.2f} s, OCSP {ocsp_seconds:.2f} s")
    assert reply.status == 201, reply.body
    assert len(reply.body["orders"]) == 2000
    assert enrolled.status == 200, enrolled.text
    assert ocsp_reply.status == 200
    assert ocsp.load_der_ocsp_response(ocsp_reply.body).certificate_status is (
        ocsp.OCSPCertStatus.GOOD
    )
    assert enroll_seconds < 1
    assert ocsp_seconds < 1
