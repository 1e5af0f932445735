"""Enrollment requests awaiting approval in the admin API: the rights of orders, audited."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from est_ca.errors import ApprovalPending
from tests.admin.conftest import AdminSetup
from tests.helpers import KeyPool, csr_der, make_csr

ORG_A, ORG_B = "99999999", "96908409"


async def pending_request(admin: AdminSetup, keys: KeyPool, cvr: str, index: int = 0) -> str:
    """An approval order of an identity of `cvr`, enrolled once: its request is pending."""
    identity = (
        await admin.api.call(
            "POST",
            "/identities",
            token=admin.admin_token,
            json_body={
                "type": "system",
                "cvr": cvr,
                "display_name": f"sys{index}.{cvr}",
            },
        )
    ).body
    placed = await admin.api.call(
        "POST",
        "/orders",
        token=admin.admin_token,
        json_body={"identity_id": identity["id"], "require_approval": True},
    )
    assert placed.status == 201, placed.body
    assert placed.body["require_approval"] is True
    assert admin.service.authority is not None
    with pytest.raises(ApprovalPending):
        await admin.service.authority.enroll_with_order(
            placed.body["reference"],
            placed.body["one_time_code"],
            csr_der(make_csr(keys.rsa(index).key)),
            source="test",
        )
    return str(placed.body["reference"])


async def actions(admin: AdminSetup, action: str) -> list[Any]:
    async with admin.service.store.read() as tx:
        return await tx.list_audit(action=action)


async def test_an_administrator_lists_and_approves_a_pending_request(
    admin: AdminSetup, keys: KeyPool
) -> None:
    reference = await pending_request(admin, keys, ORG_A)
    listed = await admin.api.call("GET", "/requests?status=pending", token=admin.admin_token)
    assert listed.status == 200
    (item,) = listed.body["items"]
    assert item["order_reference"] == reference
    assert item["csr_pem"].startswith("-----BEGIN CERTIFICATE REQUEST-----")
    approved = await admin.api.call(
        "POST", f"/requests/{reference}/approve", token=admin.admin_token, json_body={}
    )
    assert approved.status == 200, approved.body
    assert approved.body["status"] == "approved"
    assert approved.body["decided_by"] == "token:root-admin"
    (event,) = await actions(admin, "request.approved")
    assert event.order_reference == reference
    again = await admin.api.call(
        "POST", f"/requests/{reference}/approve", token=admin.admin_token, json_body={}
    )
    assert again.status == 409


async def test_a_rejection_is_audited_with_its_reason_and_cancels_the_order(
    admin: AdminSetup, keys: KeyPool
) -> None:
    reference = await pending_request(admin, keys, ORG_A)
    rejected = await admin.api.call(
        "POST",
        f"/requests/{reference}/reject",
        token=admin.admin_token,
        json_body={"reason": "not our device"},
    )
    assert rejected.status == 200, rejected.body
    assert rejected.body["reason"] == "not our device"
    (event,) = await actions(admin, "request.rejected")
    assert event.reason == "not our device"
    order = await admin.api.call("GET", f"/orders/{reference}", token=admin.admin_token)
    assert order.body["state"] == "cancelled"


async def test_an_organisation_sees_and_decides_only_its_own_requests(
    admin: AdminSetup, keys: KeyPool
) -> None:
    mine = await pending_request(admin, keys, ORG_A, 0)
    theirs = await pending_request(admin, keys, ORG_B, 1)
    token = await admin.token("idm-a", "read,order", cvr=ORG_A)
    listed = await admin.api.call("GET", "/requests", token=token)
    assert [item["order_reference"] for item in listed.body["items"]] == [mine]
    for path in (f"/requests/{theirs}", f"/requests/{theirs}/approve"):
        method = "GET" if path.endswith(theirs) else "POST"
        body: dict[str, Any] | None = None if method == "GET" else {}
        reply = await admin.api.call(method, path, token=token, json_body=body)
        assert reply.status == 404, (path, reply.body)
    assert (await admin.api.call("GET", f"/requests/{theirs}", token=admin.admin_token)).body[
        "status"
    ] == "pending"


async def test_deciding_needs_the_order_scope(admin: AdminSetup, keys: KeyPool) -> None:
    reference = await pending_request(admin, keys, ORG_A)
    reader = await admin.token("reader", "read")
    assert (await admin.api.call("GET", f"/requests/{reference}", token=reader)).status == 200
    refused = await admin.api.call(
        "POST", f"/requests/{reference}/approve", token=reader, json_body={}
    )
    assert refused.status == 403
    assert (await actions(admin, "request.approved")) == []


async def test_certificates_expiring_within_a_window_are_listed_for_renewal(
    admin: AdminSetup, keys: KeyPool
) -> None:
    identity = (
        await admin.api.call(
            "POST",
            "/identities",
            token=admin.admin_token,
            json_body={
                "type": "system",
                "cvr": ORG_A,
                "display_name": "renewing.service",
            },
        )
    ).body
    placed = (
        await admin.api.call(
            "POST", "/orders", token=admin.admin_token, json_body={"identity_id": identity["id"]}
        )
    ).body
    assert admin.service.authority is not None
    certificate = await admin.service.authority.enroll_with_order(
        placed["reference"],
        placed["one_time_code"],
        csr_der(make_csr(keys.rsa().key)),
        source="test",
    )
    left = certificate.not_valid_after_utc - admin.service.clock.now()
    inside = left.days + 1
    outside = left.days - 1
    assert outside >= 1
    found = await admin.api.call(
        "GET", f"/certificates?expiring_within_days={inside}", token=admin.admin_token
    )
    assert found.status == 200
    assert [item["serial"] for item in found.body["items"]] == [
        format(certificate.serial_number, "x").rjust(40, "0")
    ]
    none = await admin.api.call(
        "GET", f"/certificates?expiring_within_days={outside}", token=admin.admin_token
    )
    assert none.body["items"] == []
    bad = await admin.api.call(
        "GET", "/certificates?expiring_within_days=0", token=admin.admin_token
    )
    assert bad.status == 400
    # Once expired it is no renewal candidate (the API token would have expired too).
    admin.service.clock.advance(left + dt.timedelta(seconds=1))  # type: ignore[attr-defined]
    window = dt.timedelta(days=inside)
    assert await admin.service.registry.list_certificates(expiring_within=window) == []
