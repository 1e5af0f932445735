"""An organisation's IdM logs in with a system certificate this CA issued it (real mTLS).

The right is granted by an unconfined administrator; the token (or the certificate itself) is
confined to the organisation and the granted scopes, and ends at once with the certificate or
the right.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from est_ca.admin.access import Scope
from est_ca.ca.hierarchy import build_issuing
from est_ca.ca.signing import KeyFileSigner
from est_ca.clock import SettableClock
from est_ca.errors import NotEntitled
from est_ca.registration.identities import Identity, IdentityType
from tests.admin.conftest import AdminApi, AdminCa, AdminSetup, Reply
from tests.conftest import CaMaterial
from tests.console import client as http
from tests.helpers import ADMIN, KeyPool, csr_der, make_csr, require_tool, run

OWN = "34051178"  # the IdM's organisation
OTHER = "96908409"


@dataclasses.dataclass(frozen=True)
class Enrolled:
    identity: Identity
    serial: str
    files: AdminCa  # the certificate and key files, as a TLS client uses them
    api: AdminApi  # a client presenting the certificate


async def _identity(admin: AdminSetup, kind: IdentityType, cvr: str, name: str) -> Identity:
    person = (
        {"given_name": "Lars", "surname": "Larsen", "email": f"{name}@example.dk"}
        if kind is IdentityType.USER
        else {"display_name": name}
    )
    async with admin.service.store.read() as tx:
        organisation = await tx.get_organisation(cvr)
    assert organisation is not None
    return await admin.service.registry.create_identity(
        ADMIN, type=kind, organisation_name=organisation.name, cvr=cvr, **person
    )


async def _enrolled(
    admin: AdminSetup,
    keys: KeyPool,
    tmp_path: Path,
    *,
    kind: IdentityType = IdentityType.SYSTEM,
    cvr: str = OWN,
    name: str = "idm",
    index: int = 0,
) -> Enrolled:
    """An identity with a certificate issued by the service (a real enrollment)."""
    identity = await _identity(admin, kind, cvr, name)
    placed = await admin.service.registry.place_order(ADMIN, identity.id)
    key = keys.rsa(index).key  # one key, one identity: each of a test's own index
    assert admin.service.authority is not None
    certificate = await admin.service.authority.enroll_with_order(
        placed.order.reference, placed.one_time_code, csr_der(make_csr(key)), source="test"
    )
    files = AdminCa(
        Path(admin.service.settings.tls.cert_file),
        tmp_path / f"{name}.pem",
        tmp_path / f"{name}.key",
    )
    files.cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    files.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    api = AdminApi(admin.server.admin_url, files.ca_file, files)
    return Enrolled(identity, format(certificate.serial_number, "x"), files, api)


async def _grant(admin: AdminSetup, identity: Identity, *scopes: str) -> Reply:
    return await admin.api.call(
        "PUT",
        f"/identities/{identity.id}/administration",
        token=admin.admin_token,
        json_body={"scopes": list(scopes)},
    )


async def _login(idm: AdminApi) -> Reply:
    return await idm.call("POST", "/idm/login", json_body={})


async def _token(admin: AdminSetup, idm: Enrolled) -> str:
    reply = await _login(idm.api)
    assert reply.status == 201, reply.body
    token: str = reply.body["token"]
    return token


async def _actions(admin: AdminSetup) -> list[tuple[str, str | None, str]]:
    async with admin.service.store.read() as tx:
        return [
            (e.action, e.reason, repr(e))
            for e in await tx.list_audit(limit=1000)
            if e.action.startswith(("idm.", "identity.administration"))
        ]


@pytest.fixture
async def idm(admin: AdminSetup, keys: KeyPool, tmp_path: Path) -> Enrolled:
    """Organisation 34051178's IdM: a system certificate whose identity holds read and order."""
    enrolled = await _enrolled(admin, keys, tmp_path)
    assert (await _grant(admin, enrolled.identity, "read", "order")).status == 200
    return enrolled


async def test_an_idm_logs_in_for_a_bearer_token_of_one_hour(idm: Enrolled) -> None:
    reply = await _login(idm.api)
    assert reply.status == 201
    assert reply.headers["Cache-Control"] == "no-store"
    assert reply.body["token_type"] == "Bearer"
    assert reply.body["expires_in"] == 3600
    assert reply.body["cvr"] == OWN
    assert reply.body["scopes"] == ["order", "read"]
    assert reply.body["token"].startswith("estca_")


async def test_the_token_sees_and_changes_only_its_own_organisation(
    admin: AdminSetup, idm: Enrolled
) -> None:
    token = await _token(admin, idm)
    own = await _identity(admin, IdentityType.SYSTEM, OWN, "own.system")
    other = await _identity(admin, IdentityType.SYSTEM, OTHER, "other.system")
    listed = await admin.api.call("GET", "/identities", token=token)
    assert listed.status == 200
    assert {item["cvr"] for item in listed.body["items"]} == {OWN}
    assert str(own.id) in {item["id"] for item in listed.body["items"]}
    assert (await admin.api.call("GET", f"/identities/{other.id}", token=token)).status == 404
    created = await admin.api.call(
        "POST",
        "/identities",
        token=token,
        json_body={"type": "system", "cvr": OWN, "display_name": "made.by.idm"},
    )
    assert created.status == 201
    elsewhere = await admin.api.call(
        "POST",
        "/identities",
        token=token,
        json_body={"type": "system", "cvr": OTHER, "display_name": "made.by.idm"},
    )
    assert elsewhere.status == 403
    ordered = await admin.api.call(
        "POST", "/orders", token=token, json_body={"identity_id": created.body["id"]}
    )
    assert ordered.status == 201


async def test_the_token_has_only_the_granted_scopes(admin: AdminSetup, idm: Enrolled) -> None:
    token = await _token(admin, idm)
    regenerated = await admin.api.call("POST", "/crl/regenerate", token=token, json_body={})
    assert regenerated.status == 403
    revoked = await admin.api.call(
        "POST", f"/certificates/{idm.serial}/revoke", token=token, json_body={}
    )
    assert revoked.status == 403


async def test_a_narrowed_grant_narrows_a_token_already_given(
    admin: AdminSetup, idm: Enrolled
) -> None:
    token = await _token(admin, idm)
    assert (await _grant(admin, idm.identity, "read")).status == 200
    created = await admin.api.call(
        "POST",
        "/identities",
        token=token,
        json_body={"type": "system", "cvr": OWN, "display_name": "too.late"},
    )
    assert created.status == 403
    assert (await admin.api.call("GET", "/identities", token=token)).status == 200


async def test_the_certificate_serves_directly_without_a_token(
    admin: AdminSetup, idm: Enrolled
) -> None:
    other = await _identity(admin, IdentityType.SYSTEM, OTHER, "other.system")
    listed = await idm.api.call("GET", "/identities")
    assert listed.status == 200
    assert {item["cvr"] for item in listed.body["items"]} == {OWN}
    assert (await idm.api.call("GET", f"/identities/{other.id}")).status == 404
    assert (await idm.api.call("POST", "/crl/regenerate", json_body={})).status == 403


@pytest.mark.parametrize("kind", [IdentityType.USER, IdentityType.ORGANISATION])
async def test_a_certificate_of_another_type_is_refused(
    admin: AdminSetup, keys: KeyPool, tmp_path: Path, kind: IdentityType
) -> None:
    enrolled = await _enrolled(admin, keys, tmp_path, kind=kind, name=f"a.{kind.value}", index=1)
    reply = await _login(enrolled.api)
    assert reply.status == 403
    assert "only a system certificate" in reply.body["detail"]
    assert (await enrolled.api.call("GET", "/identities")).status == 403


@pytest.mark.parametrize("kind", [IdentityType.USER, IdentityType.ORGANISATION])
async def test_the_right_is_granted_to_system_identities_only(
    admin: AdminSetup, kind: IdentityType
) -> None:
    identity = await _identity(admin, kind, OWN, f"not.{kind.value}")
    assert (await _grant(admin, identity, "read")).status == 409


async def test_a_system_certificate_without_the_right_is_refused(
    admin: AdminSetup, keys: KeyPool, tmp_path: Path
) -> None:
    enrolled = await _enrolled(admin, keys, tmp_path, name="no.right", index=1)
    reply = await _login(enrolled.api)
    assert reply.status == 403
    assert "has not been granted the administration right" in reply.body["detail"]
    assert (await enrolled.api.call("GET", "/identities")).status == 403


async def test_another_organisations_idm_cannot_touch_this_one(
    admin: AdminSetup, keys: KeyPool, tmp_path: Path, idm: Enrolled
) -> None:
    theirs = await _enrolled(admin, keys, tmp_path, cvr=OTHER, name="their.idm", index=1)
    assert (await _grant(admin, theirs.identity, "read", "order", "revoke")).status == 200
    token = await _token(admin, theirs)
    assert (await admin.api.call("GET", f"/identities/{idm.identity.id}", token=token)).status == (
        404
    )
    revoked = await admin.api.call(
        "POST", f"/certificates/{idm.serial}/revoke", token=token, json_body={}
    )
    assert revoked.status == 404


async def test_an_administrator_certificate_does_not_log_in_as_an_idm(admin: AdminSetup) -> None:
    reply = await _login(admin.certificate_api)
    assert reply.status == 403
    assert "not one this CA issued" in reply.body["detail"]
    # and keeps its meaning everywhere else
    assert (await admin.certificate_api.call("GET", "/identities")).status == 200


async def test_a_login_without_a_certificate_is_refused(admin: AdminSetup) -> None:
    reply = await admin.api.call("POST", "/idm/login", token=admin.admin_token, json_body={})
    assert reply.status == 403
    assert "system certificate" in reply.body["detail"]


async def test_revoking_the_certificate_ends_token_and_direct_use_at_once(
    admin: AdminSetup, idm: Enrolled
) -> None:
    token = await _token(admin, idm)
    assert (await admin.api.call("GET", "/identities", token=token)).status == 200
    revoked = await admin.api.call(
        "POST", f"/certificates/{idm.serial}/revoke", token=admin.admin_token, json_body={}
    )
    assert revoked.status == 200
    refused = await admin.api.call("GET", "/identities", token=token)
    assert refused.status == 401
    assert "revoked" in refused.body["detail"]
    assert (await idm.api.call("GET", "/identities")).status == 403
    assert (await _login(idm.api)).status == 403


async def test_withdrawing_the_right_ends_token_and_direct_use_at_once(
    admin: AdminSetup, idm: Enrolled
) -> None:
    token = await _token(admin, idm)
    path = f"/identities/{idm.identity.id}/administration"
    assert (await admin.api.call("GET", path, token=admin.admin_token)).body["scopes"] == [
        "order",
        "read",
    ]
    withdrawn = await admin.api.call("DELETE", path, token=admin.admin_token, json_body={})
    assert withdrawn.status == 204
    assert (await admin.api.call("GET", "/identities", token=token)).status == 401
    assert (await idm.api.call("GET", "/identities")).status == 403
    assert (await _login(idm.api)).status == 403
    assert (await admin.api.call("GET", path, token=admin.admin_token)).status == 404


async def test_disabling_the_identity_ends_the_token(admin: AdminSetup, idm: Enrolled) -> None:
    token = await _token(admin, idm)
    disabled = await admin.api.call(
        "POST", f"/identities/{idm.identity.id}/disable", token=admin.admin_token, json_body={}
    )
    assert disabled.status == 200
    assert (await admin.api.call("GET", "/identities", token=token)).status == 401


async def test_the_token_expires_after_an_hour(
    admin: AdminSetup, idm: Enrolled, clock: SettableClock
) -> None:
    token = await _token(admin, idm)
    clock.advance(dt.timedelta(minutes=59))
    assert (await admin.api.call("GET", "/identities", token=token)).status == 200
    clock.advance(dt.timedelta(minutes=1))
    assert (await admin.api.call("GET", "/identities", token=token)).status == 401


@pytest.mark.parametrize(
    ("scopes", "cvr"), [("admin", OWN), ("read,order,revoke", None)], ids=["confined", "no-admin"]
)
async def test_only_an_unconfined_administrator_grants_or_withdraws(
    admin: AdminSetup, idm: Enrolled, scopes: str, cvr: str | None
) -> None:
    token = await admin.token("some-token", scopes, cvr)
    path = f"/identities/{idm.identity.id}/administration"
    granted = await admin.api.call("PUT", path, token=token, json_body={"scopes": ["read"]})
    assert granted.status == 403
    assert (await admin.api.call("DELETE", path, token=token, json_body={})).status == 403


async def test_an_idm_cannot_grant_itself_more(admin: AdminSetup, idm: Enrolled) -> None:
    token = await _token(admin, idm)
    path = f"/identities/{idm.identity.id}/administration"
    body: dict[str, Any] = {"scopes": ["read", "order", "revoke"]}
    assert (await admin.api.call("PUT", path, token=token, json_body=body)).status == 403
    assert (await idm.api.call("PUT", path, json_body=body)).status == 403


async def test_the_admin_scope_is_never_granted(admin: AdminSetup, idm: Enrolled) -> None:
    reply = await _grant(admin, idm.identity, "read", "admin")
    assert reply.status == 400
    assert reply.body["field"] == "scopes"


async def test_logins_grants_and_refusals_are_audited_without_the_token(
    admin: AdminSetup, keys: KeyPool, tmp_path: Path, idm: Enrolled
) -> None:
    token = await _token(admin, idm)
    await admin.api.call("GET", "/identities", token=token)
    stranger = await _enrolled(admin, keys, tmp_path, name="stranger", index=1)
    await _login(stranger.api)
    await admin.api.call(
        "DELETE",
        f"/identities/{idm.identity.id}/administration",
        token=admin.admin_token,
        json_body={},
    )
    events = await _actions(admin)
    actions = [action for action, _, _ in events]
    assert actions == [
        "identity.administration_granted",
        "idm.login",
        "idm.login_refused",
        "identity.administration_withdrawn",
    ]
    assert "has not been granted" in str(events[2][1])
    secret = token.split("_", 2)[2]  # estca_<id>_<secret>; the secret may itself hold "_"
    async with admin.service.store.read() as tx:
        everything = " ".join(repr(e) for e in await tx.list_audit(limit=1000))
    assert secret not in everything


async def test_a_system_certificate_never_authenticates_as_an_administrator(
    admin: AdminSetup, idm: Enrolled
) -> None:
    """What the console's certificate sign-in asks too: ours are subscribers', not admins'."""
    certificate = x509.load_pem_x509_certificate(idm.files.cert_file.read_bytes())
    with pytest.raises(NotEntitled):
        await admin.service.tokens.authenticate_certificate(
            certificate.public_bytes(serialization.Encoding.DER),
            scopes=frozenset({Scope.ADMIN}),
            source="test",
        )


SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "idm-example.sh"


async def test_the_example_idm_script_logs_in_and_administers_with_curl(
    admin: AdminSetup, idm: Enrolled, tmp_path: Path
) -> None:
    """tools/idm-example.sh, run for real (curl, jq); EST_CA_SESSIONS=docs/sessions keeps the
    session it prints as docs/sessions/idm-login-session.txt."""
    require_tool("curl")
    require_tool("jq")
    ran = await run(
        "env",
        f"EST_CA_ADMIN={admin.server.admin_url}",
        f"EST_CA_TRUST={idm.files.ca_file}",
        f"IDM_CERT={idm.files.cert_file}",
        f"IDM_KEY={idm.files.key_file}",
        f"IDM_CVR={OWN}",
        "IDM_EMAIL=jens.hansen@example.dk",
        "bash",
        SCRIPT,
    )
    session = ran.stdout.decode()
    assert ran.returncode == 0, session + ran.stderr.decode()
    assert session.count("HTTP 201") == 3
    assert session.count("HTTP 200") == 2
    assert '"token_type": "Bearer"' in session
    async with admin.service.store.read() as tx:
        identities = await tx.list_identities(limit=100, offset=0)
    created = [i for i in identities if i.email == "jens.hansen@example.dk"]
    assert [i.cvr for i in created] == [OWN]
    assert "estca_" not in session.replace("estca_…(elided)", "")
    header = (
        f"# tools/idm-example.sh, run by {Path(__file__).name}: the system identity "
        f"{idm.identity.id} of CVR {OWN}\n# holds the administration right (read, order), "
        "granted with PUT /admin/v1/identities/{id}/administration.\n"
    )
    _keep_session(Path(os.environ.get("EST_CA_SESSIONS") or tmp_path), header + session)


def _keep_session(directory: Path, text: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "idm-login-session.txt").write_text(text)


async def test_login_and_revocation_at_once_on_each_database(
    admin_on_each_database: AdminSetup, keys: KeyPool, tmp_path: Path
) -> None:
    """The one query that re-checks every use joins five tables: both databases answer it."""
    admin = admin_on_each_database
    enrolled = await _enrolled(admin, keys, tmp_path)
    assert (await _grant(admin, enrolled.identity, "read")).status == 200
    token = await _token(admin, enrolled)
    assert (await admin.api.call("GET", "/identities", token=token)).status == 200
    assert (await enrolled.api.call("GET", "/identities")).status == 200
    revoked = await admin.api.call(
        "POST", f"/certificates/{enrolled.serial}/revoke", token=admin.admin_token, json_body={}
    )
    assert revoked.status == 200
    assert (await admin.api.call("GET", "/identities", token=token)).status == 401
    assert (await enrolled.api.call("GET", "/identities")).status == 403


async def _console_page(client: Any, console: str) -> int:
    async with client.get(console + "identities", allow_redirects=False) as response:
        status: int = response.status
        return status


@pytest.mark.parametrize("ending", ["revoke", "withdraw"])
async def test_ending_the_access_ends_the_idm_tokens_console_session_at_once(
    admin: AdminSetup, idm: Enrolled, ending: str
) -> None:
    """The console's sign-in takes any token, an IdM's too: its session is good only while the
    certificate and the grant are, as the token itself is on the API."""
    token = await _token(admin, idm)
    async with http.client(admin.service) as client:
        console = await http.sign_in(client, admin.server.admin_url, token)
        assert await _console_page(client, console) == 200
        if ending == "revoke":
            ended = await admin.api.call(
                "POST", f"/certificates/{idm.serial}/revoke", token=admin.admin_token, json_body={}
            )
            assert ended.status == 200
        else:
            path = f"/identities/{idm.identity.id}/administration"
            ended = await admin.api.call("DELETE", path, token=admin.admin_token, json_body={})
            assert ended.status == 204
        assert await _console_page(client, console) == 303


async def test_a_subscribers_repeated_refusals_are_coalesced_in_the_audit_trail(
    admin: AdminSetup, keys: KeyPool, tmp_path: Path
) -> None:
    """Every subscriber's certificate passes the admin listener's handshake now: its refusals
    are coalesced per address like every other refusal, not one event each (a flood)."""
    user = await _enrolled(admin, keys, tmp_path, kind=IdentityType.USER, name="user", index=1)
    for _ in range(5):
        assert (await _login(user.api)).status == 403
        assert (await user.api.call("GET", "/identities")).status == 403
    actions = [action for action, _, _ in await _actions(admin)]
    assert actions.count("idm.login_refused") == 1
    assert actions.count("idm.certificate_refused") == 1


async def test_a_certificate_of_another_ca_under_our_root_is_no_administrator(
    admin: AdminSetup, ca_material: CaMaterial, tmp_path: Path
) -> None:
    """The listener trusts our issuing CAs for the IdM, not the root above them: a root often
    has other issuing CAs (another service's, a successor not yet configured here), whose
    certificates are neither ours nor an administrator's."""
    hierarchy = ca_material.hierarchy
    root = x509.load_pem_x509_certificate(hierarchy.root_cert.read_bytes())
    root_key = serialization.load_pem_private_key(
        hierarchy.root_key.read_bytes(), b"test passphrase"
    )
    assert isinstance(root_key, rsa.RSAPrivateKey)
    now = dt.datetime.now(dt.UTC)
    sibling_key = ec.generate_private_key(ec.SECP256R1())
    sibling = build_issuing(
        sibling_key.public_key(), root, KeyFileSigner(root_key), now, ca_material.publication, 9
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not an admin")]))
        .issuer_name(sibling.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(sibling_key, hashes.SHA256())
    )
    files = AdminCa(ca_material.tls_cert, tmp_path / "sibling.pem", tmp_path / "sibling.key")
    files.cert_file.write_bytes(
        b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, sibling))
    )
    files.key_file.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    stranger = AdminApi(admin.server.admin_url, files.ca_file, files)
    try:
        reply = await stranger.call("GET", "/identities")
    except aiohttp.ClientError:
        return  # refused in the handshake
    assert reply.status in (401, 403), reply.body


async def test_a_token_ends_when_its_certificate_expires_within_the_hour(
    admin: AdminSetup, idm: Enrolled, clock: SettableClock
) -> None:
    """The token's hour does not outlive the certificate it stands on."""
    certificate = x509.load_pem_x509_certificate(idm.files.cert_file.read_bytes())
    clock.advance(certificate.not_valid_after_utc - clock.now() - dt.timedelta(minutes=30))
    token = await _token(admin, idm)
    assert (await admin.api.call("GET", "/identities", token=token)).status == 200
    clock.advance(dt.timedelta(minutes=31))
    refused = await admin.api.call("GET", "/identities", token=token)
    assert refused.status == 401
    assert "expired" in refused.body["detail"]


async def test_a_token_withdrawn_stays_ended_when_the_right_is_granted_again(
    admin_on_each_database: AdminSetup, keys: KeyPool, tmp_path: Path
) -> None:
    """Withdrawing the right ends the tokens given so far for good (a leaked token is the
    usual reason to withdraw); a new grant needs a new login. On both databases."""
    admin = admin_on_each_database
    idm = await _enrolled(admin, keys, tmp_path)
    assert (await _grant(admin, idm.identity, "read", "order")).status == 200
    token = await _token(admin, idm)
    path = f"/identities/{idm.identity.id}/administration"
    assert (
        await admin.api.call("DELETE", path, token=admin.admin_token, json_body={})
    ).status == 204
    assert (await _grant(admin, idm.identity, "read")).status == 200
    assert (await admin.api.call("GET", "/identities", token=token)).status == 401
    assert (
        await admin.api.call("GET", "/identities", token=await _token(admin, idm))
    ).status == 200


async def test_the_consoles_certificate_sign_in_refuses_a_system_certificate(
    admin: AdminSetup, idm: Enrolled
) -> None:
    """Over HTTP, as a browser holding the IdM's certificate would: no console session."""
    context = ssl.create_default_context(cafile=str(idm.files.ca_file))
    context.load_cert_chain(idm.files.cert_file, idm.files.key_file)
    url = admin.server.admin_url + "/console/"
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=context, force_close=True),
        cookie_jar=aiohttp.CookieJar(unsafe=True),
    ) as client:
        async with client.get(url + "sign-in") as page:
            html = await page.text()
        match = re.search(
            r'action="/console/sign-in/certificate".*?name="csrf" value="([^"]+)"', html, re.S
        )
        assert match is not None
        async with client.post(
            url + "sign-in/certificate", data={"csrf": match.group(1)}, allow_redirects=False
        ) as refused:
            assert refused.status == 403
            assert "est_ca_console" not in refused.cookies
        async with client.get(url, allow_redirects=False) as overview:
            assert overview.status == 303


async def test_suspending_the_organisation_ends_its_idm_tokens_for_good(
    admin_on_each_database: AdminSetup, keys: KeyPool, tmp_path: Path
) -> None:
    """Reactivating the organisation within the hour must not bring a leaked token back: the
    suspension revokes its IdM's tokens in the same transaction (on both databases)."""
    admin = admin_on_each_database
    enrolled = await _enrolled(admin, keys, tmp_path)
    assert (await _grant(admin, enrolled.identity, "read")).status == 200
    token = await _token(admin, enrolled)
    path = f"/organisations/{OWN}"
    for status in ("disabled", "active"):
        changed = await admin.api.call(
            "PATCH", path, token=admin.admin_token, json_body={"status": status}
        )
        assert changed.status == 200, changed.body
    assert (await admin.api.call("GET", "/identities", token=token)).status == 401
    assert (await _token(admin, enrolled)) != token  # a new login is the way back


async def _token_names(admin: AdminSetup) -> set[str]:
    """Every token the database holds."""
    async with admin.service.store.read() as tx:
        return {t.name for t in await tx.list_api_tokens()}


async def test_expired_idm_login_tokens_are_pruned_a_day_later_their_logins_stay_audited(
    admin_on_each_database: AdminSetup, keys: KeyPool, tmp_path: Path, clock: SettableClock
) -> None:
    """A row per login would pile up for ever: the cluster's maintenance deletes IdM login
    tokens a day after they expired (revoked ones expire within their hour too); operators'
    tokens and the audit trail, which names the token, stay."""
    admin = admin_on_each_database
    enrolled = await _enrolled(admin, keys, tmp_path)
    assert (await _grant(admin, enrolled.identity, "read")).status == 200
    await _token(admin, enrolled)
    (name,) = await _token_names(admin) - {"root-admin"}
    clock.advance(dt.timedelta(hours=1, days=1) - dt.timedelta(minutes=1))
    await admin.service.maintain_cluster()
    assert name in await _token_names(admin)
    clock.advance(dt.timedelta(minutes=2))
    await admin.service.maintain_cluster()
    assert await _token_names(admin) == {"root-admin"}
    async with admin.service.store.read() as tx:
        logins = [repr(e) for e in await tx.list_audit(limit=1000) if e.action == "idm.login"]
    assert len(logins) == 1
    assert name in logins[0]


async def test_expired_idm_login_tokens_are_listed_only_when_asked(
    admin: AdminSetup, idm: Enrolled, clock: SettableClock
) -> None:
    """The console and `est-ca token list` show live tokens; expired IdM logins only when
    asked (the console's ?all=1, the CLI's --all)."""
    await _token(admin, idm)
    (name,) = await _token_names(admin) - {"root-admin"}
    clock.advance(dt.timedelta(hours=1))
    async with http.client(admin.service) as client:
        console = await http.sign_in(client, admin.server.admin_url, admin.admin_token)
        async with client.get(console + "tokens") as page:
            assert name not in await page.text()
        async with client.get(console + "tokens?all=1") as page:
            assert name in await page.text()
    assert [t.name for t in await admin.service.tokens.list()] == ["root-admin"]
    assert {t.name for t in await admin.service.tokens.list(expired_idm=True)} == {
        "root-admin",
        name,
    }


async def test_a_sixth_login_of_one_certificate_revokes_its_oldest_token(
    admin_on_each_database: AdminSetup, keys: KeyPool, tmp_path: Path, clock: SettableClock
) -> None:
    """At most five live tokens per certificate: a new login always succeeds (an IdM that logs
    in on every run keeps working) and revokes the oldest beyond five, audited."""
    admin = admin_on_each_database
    enrolled = await _enrolled(admin, keys, tmp_path)
    assert (await _grant(admin, enrolled.identity, "read")).status == 200
    tokens = []
    for _ in range(6):
        tokens.append(await _token(admin, enrolled))
        clock.advance(dt.timedelta(seconds=1))
    statuses = [
        (await admin.api.call("GET", "/identities", token=token)).status for token in tokens
    ]
    assert statuses == [401, 200, 200, 200, 200, 200]
    async with admin.service.store.read() as tx:
        logins = [e for e in await tx.list_audit(limit=1000) if e.action == "idm.login"]
    assert [e.details.get("tokens_revoked") for e in logins] == ["0"] * 5 + ["1"]
