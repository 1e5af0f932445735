"""The admin REST API over real HTTPS: identities, orders, certificates, revocation, CRLs."""

from __future__ import annotations

import datetime as dt
from typing import Any

from cryptography import x509

from est_ca.ca.certificates import Serial
from est_ca.registration.orders import OrderState
from tests.admin.conftest import AdminSetup
from tests.helpers import KeyPool, csr_der, make_csr
from tests.revocation.helpers import OTHER_ISSUER, record_under_other_issuer

USER = {
    "type": "user",
    "organisation_name": "ÆØÅ ApS",
    "cvr": "99999999",
    "given_name": "Søren",
    "surname": "Ærø Ålborg",
    "email": "soren@example.dk",
}


async def enroll(admin: AdminSetup, keys: KeyPool, reference: str, code: str) -> x509.Certificate:
    assert admin.service.authority is not None
    return await admin.service.authority.enroll_with_order(
        reference, code, csr_der(make_csr(keys.rsa().key)), source="test"
    )


async def ordered_user(admin: AdminSetup) -> tuple[dict[str, Any], dict[str, Any]]:
    """A user identity created through the API and its placed order (with the one-time code)."""
    identity = (
        await admin.api.call("POST", "/identities", token=admin.admin_token, json_body=USER)
    ).body
    placed = (
        await admin.api.call(
            "POST", "/orders", token=admin.admin_token, json_body={"identity_id": identity["id"]}
        )
    ).body
    return identity, placed


async def test_an_identity_is_created_read_listed_and_updated(admin: AdminSetup) -> None:
    created = await admin.api.call("POST", "/identities", token=admin.admin_token, json_body=USER)
    assert created.status == 201
    identity = created.body
    assert identity["display_name"] == "Søren Ærø Ålborg"
    assert identity["status"] == "active"
    read = await admin.api.call("GET", f"/identities/{identity['id']}", token=admin.admin_token)
    assert read.body == identity
    listed = await admin.api.call(
        "GET", "/identities?type=user&cvr=99999999&status=active", token=admin.admin_token
    )
    assert [i["id"] for i in listed.body["items"]] == [identity["id"]]
    updated = await admin.api.call(
        "PATCH",
        f"/identities/{identity['id']}",
        token=admin.admin_token,
        json_body={"surname": "Ålborg", "display_name": "Søren Ålborg", "email": "s@example.dk"},
    )
    assert updated.status == 200
    assert (updated.body["surname"], updated.body["display_name"], updated.body["email"]) == (
        "Ålborg",
        "Søren Ålborg",
        "s@example.dk",
    )


async def test_listing_pages_through_identities(admin: AdminSetup) -> None:
    for index in range(5):
        system = {
            "type": "system",
            "organisation_name": "ÆØÅ ApS",
            "cvr": "99999999",
            "display_name": f"system-{index}",
        }
        await admin.api.call("POST", "/identities", token=admin.admin_token, json_body=system)
    seen: list[str] = []
    offset: int | None = 0
    while offset is not None:
        page = await admin.api.call(
            "GET", f"/identities?limit=2&offset={offset}", token=admin.admin_token
        )
        assert len(page.body["items"]) <= 2
        seen += [i["display_name"] for i in page.body["items"]]
        offset = page.body["next_offset"]
    assert sorted(seen) == [f"system-{index}" for index in range(5)]


async def test_an_order_shows_its_code_once_and_can_be_cancelled(admin: AdminSetup) -> None:
    identity = (
        await admin.api.call("POST", "/identities", token=admin.admin_token, json_body=USER)
    ).body
    placed = await admin.api.call(
        "POST", "/orders", token=admin.admin_token, json_body={"identity_id": identity["id"]}
    )
    assert placed.status == 201
    assert len(placed.body["one_time_code"]) == 23
    reference = placed.body["reference"]
    read = await admin.api.call("GET", f"/orders/{reference}", token=admin.admin_token)
    assert read.body["state"] == "pending"
    assert "one_time_code" not in read.body
    listed = await admin.api.call(
        "GET", f"/orders?identity_id={identity['id']}", token=admin.admin_token
    )
    assert [o["reference"] for o in listed.body["items"]] == [reference]
    cancel = f"/orders/{reference}/cancel"
    cancelled = await admin.api.call("POST", cancel, token=admin.admin_token, json_body={})
    assert cancelled.body["state"] == "cancelled"
    again = await admin.api.call("POST", cancel, token=admin.admin_token, json_body={})
    assert again.status == 409
    assert again.headers["Content-Type"].startswith("application/problem+json")


async def test_an_order_names_its_ca_label_and_an_unknown_label_is_a_problem_on_that_field(
    admin: AdminSetup,
) -> None:
    identity = (
        await admin.api.call("POST", "/identities", token=admin.admin_token, json_body=USER)
    ).body
    default = await admin.api.call(
        "POST", "/orders", token=admin.admin_token, json_body={"identity_id": identity["id"]}
    )
    assert default.status == 201
    assert default.body["ca_label"] == "issuing"
    named = await admin.api.call(
        "POST",
        "/orders",
        token=admin.admin_token,
        json_body={"identity_id": identity["id"], "ca_label": "issuing"},
    )
    assert named.status == 201
    assert named.body["ca_label"] == "issuing"
    unknown = await admin.api.call(
        "POST",
        "/orders",
        token=admin.admin_token,
        json_body={"identity_id": identity["id"], "ca_label": "staging"},
    )
    assert unknown.status == 400
    assert unknown.headers["Content-Type"].startswith("application/problem+json")
    assert "no CA label 'staging'" in unknown.body["detail"]
    assert unknown.body["field"] == "ca_label"


async def test_a_locked_order_is_unlocked(admin: AdminSetup, keys: KeyPool) -> None:
    _, placed = await ordered_user(admin)
    assert admin.service.authority is not None
    for _ in range(5):
        try:
            await admin.service.authority.enroll_with_order(
                placed["reference"], "NOT-THE-CODE", b"", source="test"
            )
        except Exception:  # noqa: S112 - five refusals are the point
            continue
    locked = await admin.api.call("GET", f"/orders/{placed['reference']}", token=admin.admin_token)
    assert locked.body["state"] == OrderState.LOCKED.value
    unlocked = await admin.api.call(
        "POST", f"/orders/{placed['reference']}/unlock", token=admin.admin_token, json_body={}
    )
    assert unlocked.body["state"] == "pending"
    assert unlocked.body["failed_attempts"] == 0
    certificate = await enroll(admin, keys, placed["reference"], placed["one_time_code"])
    assert certificate.serial_number


async def test_certificates_are_listed_read_with_pem_and_revoked(
    admin: AdminSetup, keys: KeyPool
) -> None:
    identity, placed = await ordered_user(admin)
    certificate = await enroll(admin, keys, placed["reference"], placed["one_time_code"])
    serial = format(certificate.serial_number, "x").rjust(40, "0")
    listed = await admin.api.call(
        "GET",
        f"/certificates?identity_id={identity['id']}&status=issued",
        token=admin.admin_token,
    )
    assert [c["serial"] for c in listed.body["items"]] == [serial]
    soon = (admin.service.clock.now() + dt.timedelta(days=1096)).isoformat()
    expiring = await admin.api.call(
        "GET",
        f"/certificates?expires_before={soon.replace('+', '%2B')}",
        token=admin.admin_token,
    )
    assert [c["serial"] for c in expiring.body["items"]] == [serial]
    read = await admin.api.call("GET", f"/certificates/{serial}", token=admin.admin_token)
    assert x509.load_pem_x509_certificate(read.body["pem"].encode()) == certificate
    revoked = await admin.api.call(
        "POST",
        f"/certificates/{serial}/revoke",
        token=admin.admin_token,
        json_body={"reason": "keyCompromise"},
    )
    assert revoked.status == 200
    assert (revoked.body["status"], revoked.body["revocation_reason"]) == (
        "revoked",
        "keyCompromise",
    )
    twice = await admin.api.call(
        "POST", f"/certificates/{serial}/revoke", token=admin.admin_token, json_body={}
    )
    assert twice.status == 409
    unknown = await admin.api.call(
        "POST", f"/certificates/{'7' * 40}/revoke", token=admin.admin_token, json_body={}
    )
    assert unknown.status == 404


async def test_a_serial_two_cas_issued_needs_the_issuer_named(
    admin: AdminSetup, keys: KeyPool
) -> None:
    _, placed = await ordered_user(admin)
    certificate = await enroll(admin, keys, placed["reference"], placed["one_time_code"])
    serial = Serial(certificate.serial_number)
    await record_under_other_issuer(admin.service, serial)
    assert admin.service.ca is not None
    ours = admin.service.ca.key_id.hex
    ambiguous = await admin.api.call("GET", f"/certificates/{serial}", token=admin.admin_token)
    assert ambiguous.status == 409
    assert "issuer" in ambiguous.body["detail"]
    read = await admin.api.call(
        "GET", f"/certificates/{serial}?issuer={ours}", token=admin.admin_token
    )
    assert (read.status, read.body["issuer_key_id"]) == (200, ours)
    revoked = await admin.api.call(
        "POST",
        f"/certificates/{serial}/revoke?issuer={OTHER_ISSUER}",
        token=admin.admin_token,
        json_body={},
    )
    assert (revoked.status, revoked.body["issuer_key_id"]) == (200, OTHER_ISSUER.hex)
    again = await admin.api.call(
        "GET", f"/certificates/{serial}?issuer={ours}", token=admin.admin_token
    )
    assert again.body["status"] == "issued"


async def test_disabling_an_identity_revokes_its_certificates(
    admin: AdminSetup, keys: KeyPool
) -> None:
    identity, placed = await ordered_user(admin)
    certificate = await enroll(admin, keys, placed["reference"], placed["one_time_code"])
    disabled = await admin.api.call(
        "POST",
        f"/identities/{identity['id']}/disable",
        token=admin.admin_token,
        json_body={"reason": "affiliationChanged"},
    )
    assert disabled.body["status"] == "disabled"
    assert disabled.body["revoked"] == [format(certificate.serial_number, "x").rjust(40, "0")]


async def test_crls_are_regenerated_on_request(admin: AdminSetup) -> None:
    first = await admin.api.call("POST", "/crl/regenerate", token=admin.admin_token, json_body={})
    second = await admin.api.call("POST", "/crl/regenerate", token=admin.admin_token, json_body={})
    assert first.status == second.status == 200
    numbers = {crl["ca"]: crl["number"] for crl in first.body["crls"]}
    assert set(numbers) == {"issuing", "root"}
    for crl in second.body["crls"]:
        assert crl["number"] > numbers[crl["ca"]]


async def test_health_and_readiness_need_no_credentials(admin: AdminSetup) -> None:
    health = await admin.api.call("GET", "/health")
    ready = await admin.api.call("GET", "/ready")
    assert (health.status, health.body) == (200, {"status": "ok"})
    assert ready.status == 200
    assert ready.body["checks"] == {
        "ca": True,
        "signing_keys": True,
        "crls": True,
        "database": True,
    }


async def test_an_administrator_certificate_is_enough_to_administer(admin: AdminSetup) -> None:
    created = await admin.certificate_api.call("POST", "/identities", json_body=USER)
    assert created.status == 201
    async with admin.service.store.read() as tx:
        [event] = await tx.list_audit(action="identity.created")
    assert str(event.actor) == "admin-certificate:alice.admin"
