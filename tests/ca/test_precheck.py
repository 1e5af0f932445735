"""Pre-issuance checks stop a malformed draft before the CA key signs anything."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes
from cryptography.x509.oid import NameOID

from est_ca.ca.building import IssuanceRequest, certificate_builder
from est_ca.ca.certificates import CertificateStatus, Serial
from est_ca.ca.csr_policy import subscriber_key
from est_ca.ca.precheck import (
    check_responder_draft,
    crl_problems,
    problems,
    responder_problems,
)
from est_ca.ca.publication import Publication
from est_ca.ca.signing import SignatureScheme, draft_certificate
from est_ca.ca.spki import public_key_der
from est_ca.config import shipped_config_dir
from est_ca.errors import IssuanceFailed
from est_ca.registration.orders import OrderState
from est_ca.revocation.crl import checked_signed_crl, draft_crl_der
from est_ca.revocation.issuers import ServedIssuer
from est_ca.service import Service
from tests.conftest import OpenService
from tests.helpers import KeyPool, csr_der, make_csr, new_order, new_user


async def request_for(service: Service, keys: KeyPool) -> IssuanceRequest:
    identity = await new_user(service, given_name="Søren", surname="Ærø Ålborg")
    return IssuanceRequest(
        serial=Serial.random(),
        identity=identity,
        profile=service.profiles.profiles["user"],
        key=subscriber_key(make_csr(keys.rsa().key)),
        not_before=service.clock.now(),
    )


async def test_a_draft_built_from_the_profile_has_no_problems(
    service: Service, keys: KeyPool
) -> None:
    assert service.ca is not None
    request = await request_for(service, keys)
    draft = draft_certificate(
        certificate_builder(request, service.ca, service.publication), request.profile.signature
    )
    assert problems(draft, request, service.ca, service.publication) == []


async def test_a_draft_with_other_key_usage_is_caught(service: Service, keys: KeyPool) -> None:
    assert service.ca is not None
    request = await request_for(service, keys)
    built = certificate_builder(
        dataclasses.replace(
            request, profile=dataclasses.replace(request.profile, key_usage=("digital_signature",))
        ),
        service.ca,
        service.publication,
    )
    draft = draft_certificate(built, request.profile.signature)
    assert any(
        "content_commitment" in p for p in problems(draft, request, service.ca, service.publication)
    )


def rebuilt(draft: x509.Certificate, subject: x509.Name) -> x509.CertificateBuilder:
    """The draft's fields with another subject: a stand-in for a bug in the building code."""
    builder = (
        x509.CertificateBuilder()
        .issuer_name(draft.issuer)
        .subject_name(subject)
        .public_key(draft.public_key())
        .serial_number(draft.serial_number)
        .not_valid_before(draft.not_valid_before_utc)
        .not_valid_after(draft.not_valid_after_utc)
    )
    for extension in draft.extensions:
        builder = builder.add_extension(extension.value, extension.critical)
    return builder


async def test_a_draft_with_a_printable_cn_is_caught(service: Service, keys: KeyPool) -> None:
    assert service.ca is not None
    request = await request_for(service, keys)
    draft = draft_certificate(
        certificate_builder(request, service.ca, service.publication), request.profile.signature
    )
    attributes = [attribute for rdn in draft.subject.rdns for attribute in rdn]
    printable_cn = x509.NameAttribute(
        NameOID.COMMON_NAME, "Lars Larsen", x509.name._ASN1Type.PrintableString
    )
    wrong = x509.Name([printable_cn, *attributes[1:]])
    found = problems(
        draft_certificate(rebuilt(draft, wrong), request.profile.signature),
        request,
        service.ca,
        service.publication,
    )
    assert "subject 2.5.4.3 is not a UTF8String" in found
    assert "CN differs from the identity's display name" in found


async def test_a_draft_with_reordered_subject_is_caught(service: Service, keys: KeyPool) -> None:
    assert service.ca is not None
    request = await request_for(service, keys)
    draft = draft_certificate(
        certificate_builder(request, service.ca, service.publication), request.profile.signature
    )
    reordered = x509.Name(list(reversed([a for rdn in draft.subject.rdns for a in rdn])))
    found = problems(
        draft_certificate(rebuilt(draft, reordered), request.profile.signature),
        request,
        service.ca,
        service.publication,
    )
    assert "subject attributes are not in the profile's order" in found


async def test_a_profile_that_would_outlive_the_ca_issues_nothing_and_keeps_the_order(
    open_service: OpenService, keys: KeyPool, tmp_path: Path
) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    text = (shipped_config_dir() / "profiles" / "user.toml").read_text()
    (profiles / "user.toml").write_text(
        text.replace("validity_days = 1095", "validity_days = 3660")
    )
    service = await open_service(profiles={"extra_dirs": [str(profiles)]})
    assert service.authority is not None
    placed = await new_order(service, await new_user(service))
    with pytest.raises(IssuanceFailed, match="outlive the issuing CA"):
        await service.authority.enroll_with_order(
            placed.order.reference,
            placed.one_time_code,
            csr_der(make_csr(keys.rsa().key)),
            source="test",
        )
    [reservation] = await service.registry.list_certificates()
    assert reservation.status is CertificateStatus.ABANDONED
    assert reservation.der is None
    order = await service.registry.get_order(placed.order.reference)
    assert service.registry.order_state(order) is OrderState.PENDING
    async with service.store.read() as tx:
        events = await tx.list_audit(action="certificate.abandoned")
    assert events[0].reason is not None
    assert "outlive" in events[0].reason


async def test_a_draft_naming_other_urls_is_caught(service: Service, keys: KeyPool) -> None:
    assert service.ca is not None
    request = await request_for(service, keys)
    elsewhere = Publication("http://elsewhere.example", "http://elsewhere.example")
    draft = draft_certificate(
        certificate_builder(request, service.ca, elsewhere), request.profile.signature
    )
    found = problems(draft, request, service.ca, service.publication)
    assert "authorityInfoAccess must name this service's CA certificate and OCSP URLs" in found
    assert "cRLDistributionPoints must be this service's CRL URL, one full name" in found
    assert "qcStatements must be pkixQCSyntax-v2 with the profile's semantics" in found


# -- what else the CA key signs (issue 13, item 2) ---------------------------------------------


class _RecordingSigner:
    """A signer that only counts: the check must stop a bad draft before any signature."""

    def __init__(self, public_key: CertificateIssuerPublicKeyTypes) -> None:
        self.public_key = public_key
        self.available = True
        self.calls = 0

    def sign(self, data: bytes, scheme: SignatureScheme) -> bytes:
        self.calls += 1
        raise AssertionError("the CA key was asked to sign a draft that failed its check")


def _issuer_with(service: Service, signer: _RecordingSigner) -> ServedIssuer:
    assert service.publishing is not None
    issuer = service.publishing.issuers[0]
    return dataclasses.replace(issuer, ca=dataclasses.replace(issuer.ca, signer=signer))


def _draft_crl(issuer: ServedIssuer, number: int) -> bytes:
    now = dt.datetime.now(dt.UTC)
    return draft_crl_der(
        issuer.ca.certificate.public_bytes(serialization.Encoding.DER),
        b"",
        number,
        now,
        now + dt.timedelta(hours=1),
        issuer.scheme,
    )


async def test_a_crl_draft_with_another_number_is_caught_before_the_ca_key_signs(
    service: Service,
) -> None:
    assert service.ca is not None
    signer = _RecordingSigner(service.ca.signer.public_key)
    issuer = _issuer_with(service, signer)
    assert crl_problems(_draft_crl(issuer, 7), issuer.ca, issuer.scheme.hash, 7) == []
    with pytest.raises(IssuanceFailed, match="cRLNumber is not 8"):
        checked_signed_crl(_draft_crl(issuer, 7), issuer, 8)
    assert signer.calls == 0


async def test_a_responder_draft_without_ocsp_signing_for_another_key_is_caught(
    service: Service,
) -> None:
    assert service.ca is not None
    responder_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    now = dt.datetime.now(dt.UTC)
    draft = draft_certificate(
        x509.CertificateBuilder()
        .serial_number(1)
        .issuer_name(service.ca.subject)
        .subject_name(service.ca.subject)
        .public_key(responder_key)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1)),
        _scheme(service),
    )
    other_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    found = responder_problems(draft, service.ca, public_key_der(other_key))
    assert "the public key is not the responder's" in found
    assert "extendedKeyUsage must be id-kp-OCSPSigning alone" in found
    assert "id-pkix-ocsp-nocheck is missing" in found
    with pytest.raises(IssuanceFailed, match="responder certificate check failed"):
        check_responder_draft(draft, service.ca, public_key_der(responder_key))


def _scheme(service: Service) -> SignatureScheme:
    assert service.publishing is not None
    return service.publishing.issuers[0].scheme
