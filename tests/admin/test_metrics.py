"""Prometheus metrics on the admin listener: what an operator graphs, read as Prometheus would
(a Bearer token with the read scope), after real traffic from curl and openssl (issue 13,
item 4)."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families

from est_ca.ca.certificates import Serial
from est_ca.revocation.reasons import RevocationReason
from tests.admin.conftest import AdminSetup
from tests.conftest import CaMaterial
from tests.est.test_real_clients import enroll_with_curl
from tests.helpers import ADMIN, KeyPool, curl
from tests.relying_party.test_real_relying_parties import openssl_ocsp


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


async def test_enrollments_ocsp_answers_crls_and_requests_are_counted(
    admin: AdminSetup, ca_material: CaMaterial, keys: KeyPool, tmp_path: Path
) -> None:
    service, server = admin.service, admin.server
    reader = await admin.token("prometheus", "read")
    enrolled = await enroll_with_curl(server, service, ca_material, keys.rsa(0).path, tmp_path)
    refused = await curl(
        f"{server.https_url}/.well-known/est/simpleenroll",
        "-u",
        "NOSUCHORDER:WRONG-CODE",
        "-H",
        "Content-Type: application/pkcs10",
        "--data-binary",
        "MIIB",
        trust=ca_material.tls_cert,
    )
    assert refused.status in (400, 401)
    serial = Serial(x509.load_pem_x509_certificate(enrolled.read_bytes()).serial_number)
    good = await openssl_ocsp(service, enrolled, tmp_path, ca_material)
    assert ": good" in good
    await service.revocations.revoke_certificate(ADMIN, serial, RevocationReason.KEY_COMPROMISE)
    assert service.publishing is not None
    await service.publishing.check()
    revoked = await openssl_ocsp(service, enrolled, tmp_path, ca_material)
    assert ": revoked" in revoked

    reply = await admin.api.call("GET", "/metrics", token=reader)
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/plain")
    found = samples(reply.body.decode())
    assert (
        value(
            found,
            "est_ca_enrollments_total",
            operation="enroll",
            outcome="issued",
            profile="system",
            ca="issuing",
        )
        == 1
    )
    assert (
        value(
            found, "est_ca_enrollment_refusals_total", operation="enroll", reason="Unauthenticated"
        )
        >= 1
    )
    assert value(found, "est_ca_ocsp_responses_total", status="good") >= 1
    assert value(found, "est_ca_ocsp_responses_total", status="revoked") >= 1
    assert value(found, "est_ca_crl_entries", ca="issuing") == 1
    assert 0 <= value(found, "est_ca_crl_age_seconds", ca="issuing") < 60
    assert (
        value(
            found,
            "est_ca_http_request_seconds_count",
            listener="est",
            endpoint="/.well-known/est/simpleenroll",
            method="POST",
            status="200",
        )
        == 1
    )
    assert value(found, "est_ca_issuance_seconds_count", ca="issuing") == 1
    assert ("est_ca_worker_queue_depth", frozenset()) in found


async def test_metrics_need_a_principal_with_the_read_scope(admin: AdminSetup) -> None:
    anonymous = await admin.api.call("GET", "/metrics")
    assert anonymous.status == 401
    orderer = await admin.token("orders-only", "order")
    forbidden = await admin.api.call("GET", "/metrics", token=orderer)
    assert forbidden.status == 403


async def test_metrics_are_refused_to_an_organisations_token(admin: AdminSetup) -> None:
    """The counters are CA-wide: a token confined to one CVR must not read them."""
    confined = await admin.token("org-reader", "read", cvr="34051178")
    forbidden = await admin.api.call("GET", "/metrics", token=confined)
    assert forbidden.status == 403
    assert "organisation" in str(forbidden.body)


async def test_metrics_are_not_on_the_public_http_port(admin: AdminSetup) -> None:
    for path in ("/metrics", "/admin/v1/metrics"):
        response = await curl(admin.server.http_url + path)
        assert response.status == 404
