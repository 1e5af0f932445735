"""Property-based: any CSR, generated or mutated, either yields exactly one certificate that
satisfies its profile, or a 4xx with a reason and no change but an audit event.

Cases per property: 150 in CI (derandomized, so every run tries the same ones), thousands with
EST_CA_FUZZ=long. The domain is driven directly (the wire has its own fuzzing).
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from typing import Any

import hypothesis.strategies as st
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import AttributeOID, ExtendedKeyUsageOID, NameOID
from hypothesis import assume, given

from est_ca.ca.building import IssuanceRequest
from est_ca.ca.certificates import CertificateStatus, Serial
from est_ca.ca.csr_policy import SubscriberKey
from est_ca.ca.precheck import problems
from est_ca.ca.spki import public_key_der
from est_ca.errors import EstCaError
from est_ca.registration.orders import OrderState
from est_ca.service import Service
from est_ca.web.errors import status_for
from tests.helpers import new_order, new_system

ALLOWED = {"rsa-3072", "rsa-4096"}  # the shipped system profile


@functools.cache
def key(name: str) -> CertificateIssuerPrivateKeyTypes:
    """One key per kind for the whole run (key generation is the slow part)."""
    kinds: dict[str, Any] = {
        "rsa-2048": lambda: rsa.generate_private_key(65537, 2048),
        "rsa-3072": lambda: rsa.generate_private_key(65537, 3072),
        "rsa-4096": lambda: rsa.generate_private_key(65537, 4096),
        "ec-p256": lambda: ec.generate_private_key(ec.SECP256R1()),
        "ec-p384": lambda: ec.generate_private_key(ec.SECP384R1()),
        "ec-secp256k1": lambda: ec.generate_private_key(ec.SECP256K1()),
        "ed25519": ed25519.Ed25519PrivateKey.generate,
    }
    created: CertificateIssuerPrivateKeyTypes = kinds[name]()
    return created


TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1, max_size=80)
ATTRIBUTES = st.sampled_from(
    [
        NameOID.COMMON_NAME,
        NameOID.ORGANIZATION_NAME,
        NameOID.COUNTRY_NAME,
        NameOID.SERIAL_NUMBER,
        NameOID.GIVEN_NAME,
        NameOID.EMAIL_ADDRESS,
        NameOID.ORGANIZATION_IDENTIFIER,
        x509.ObjectIdentifier("1.2.3.4.5"),
    ]
)


@dataclass(frozen=True)
class Generated:
    der: bytes
    key_name: str
    unknown_critical: bool


@st.composite
def generated_csrs(draw: st.DrawFn) -> Generated:
    key_name = draw(
        st.sampled_from(
            [
                "rsa-3072",
                "rsa-3072",
                "rsa-4096",
                "rsa-2048",
                "ec-p256",
                "ec-p384",
                "ec-secp256k1",
                "ed25519",
            ]
        )
    )
    private = key(key_name)
    names = draw(st.lists(st.tuples(ATTRIBUTES, TEXT), max_size=6))
    attributes = []
    for oid, value in names:
        try:
            attributes.append(x509.NameAttribute(oid, value))
        except ValueError:  # cryptography's own bounds (CN length, country code)
            continue
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attributes))
    unknown_critical = False
    if draw(st.booleans()):
        emails = draw(
            st.lists(
                st.from_regex(r"[a-z]{1,8}@[a-z]{1,8}\.dk", fullmatch=True), min_size=1, max_size=3
            )
        )
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.RFC822Name(e) for e in emails]), critical=False
        )
    if draw(st.booleans()):
        builder = builder.add_extension(
            x509.BasicConstraints(ca=draw(st.booleans()), path_length=None), critical=True
        )
    if draw(st.booleans()):
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=draw(st.booleans())
        )
    if draw(st.booleans()):
        unknown_critical = draw(st.booleans())
        arc = draw(st.integers(min_value=1, max_value=10**6))
        builder = builder.add_extension(
            x509.UnrecognizedExtension(
                x509.ObjectIdentifier(f"1.3.6.1.4.1.99999.{arc}"), draw(st.binary(max_size=40))
            ),
            critical=unknown_critical,
        )
    if draw(st.booleans()):
        password = draw(
            st.text(
                alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=40
            )
        )
        builder = builder.add_attribute(AttributeOID.CHALLENGE_PASSWORD, password.encode())
    if draw(st.booleans()):
        builder = builder.add_attribute(AttributeOID.UNSTRUCTURED_NAME, draw(TEXT).encode("utf-8"))
    algorithm = (
        None
        if key_name == "ed25519"
        else draw(st.sampled_from([hashes.SHA256(), hashes.SHA384(), hashes.SHA512()]))
    )
    try:
        csr = builder.sign(private, algorithm)  # type: ignore[arg-type]
    except ValueError:
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .sign(
                private,
                algorithm,  # type: ignore[arg-type]
            )
        )
        unknown_critical = False
    return Generated(csr.public_bytes(serialization.Encoding.DER), key_name, unknown_critical)


def _valid_der() -> bytes:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mutant")]))
        .sign(key("rsa-3072"), hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.DER)


VALID = functools.cache(_valid_der)


@st.composite
def mutated_csrs(draw: st.DrawFn) -> tuple[str, bytes]:
    original = VALID()
    kind = draw(
        st.sampled_from(
            ["flip", "truncate", "trailing", "long-length", "wrong-signature", "splice"]
        )
    )
    if kind == "flip":
        data = bytearray(original)
        for _ in range(draw(st.integers(min_value=1, max_value=4))):
            position = draw(st.integers(min_value=0, max_value=len(data) - 1))
            data[position] ^= draw(st.integers(min_value=1, max_value=255))
        mutated = bytes(data)
    elif kind == "truncate":
        mutated = original[: draw(st.integers(min_value=0, max_value=len(original) - 1))]
    elif kind == "trailing":
        mutated = original + draw(st.binary(min_size=1, max_size=64))
    elif kind == "long-length":
        # The outer SEQUENCE's length re-encoded in a longer (BER, not DER) form.
        assert original[1] == 0x82
        mutated = b"\x30\x83\x00" + original[2:]
    elif kind == "wrong-signature":
        other = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mutant")]))
            .sign(key("rsa-4096"), hashes.SHA256())
        )
        signature = other.signature[: len(original) // 2]
        mutated = original[: -len(signature)] + signature
    else:
        cut = draw(st.integers(min_value=1, max_value=len(original) - 1))
        mutated = original[:cut] + draw(st.binary(min_size=1, max_size=16)) + original[cut:]
    assume(mutated != original)
    return kind, mutated


_IDENTITIES: dict[tuple[int, str], Any] = {}


async def attempt(service: Service, der: bytes, key_name: str) -> Attempt:
    """Enroll `der` on a fresh order of the identity that uses this key (a key may be reused
    by its own identity only); returns what happened and what the store held before."""
    assert service.authority is not None
    slot = (id(service), key_name)
    if slot not in _IDENTITIES:
        _IDENTITIES[slot] = await new_system(service, f"svc-{uuid.uuid4().hex[:8]}")
    identity = _IDENTITIES[slot]
    placed = await new_order(service, identity)
    before = await live_certificates(service, identity)
    try:
        outcome: Any = await service.authority.enroll_with_order(
            placed.order.reference, placed.one_time_code, der, source=None
        )
    except EstCaError as error:
        outcome = error
    return Attempt(identity, placed, before, outcome)


@dataclass(frozen=True)
class Attempt:
    identity: Any
    placed: Any
    before: set[Serial]
    outcome: Any


async def live_certificates(service: Service, identity: Any) -> set[Serial]:
    records = await service.registry.list_certificates(identity_id=identity.id, limit=10_000)
    return {r.serial for r in records if r.status is not CertificateStatus.ABANDONED}


async def assert_refused_and_unchanged(service: Service, tried: Attempt) -> None:
    error = tried.outcome
    assert isinstance(error, EstCaError), f"expected a refusal, got {error!r}"
    assert 400 <= status_for(error) < 500, f"{type(error).__name__}: {error.detail}"
    assert error.detail
    order = await service.registry.get_order(tried.placed.order.reference)
    assert service.registry.order_state(order) is OrderState.PENDING
    assert await live_certificates(service, tried.identity) == tried.before
    async with service.store.read() as tx:
        refusals = await tx.list_audit(action="enroll.refused", limit=100_000)
    assert refusals[-1].reason == f"{type(error).__name__}: {error.detail}"
    assert refusals[-1].order_reference is None
    assert str(refusals[-1].actor) == f"order:{tried.placed.order.reference}"


async def assert_one_certificate_satisfying_the_profile(service: Service, tried: Attempt) -> None:
    certificate = tried.outcome
    assert isinstance(certificate, x509.Certificate), certificate
    assert service.ca is not None
    after = await live_certificates(service, tried.identity)
    assert after - tried.before == {Serial(certificate.serial_number)}
    order = await service.registry.get_order(tried.placed.order.reference)
    assert service.registry.order_state(order) is OrderState.CONSUMED
    public_key = certificate.public_key()
    request = IssuanceRequest(
        serial=Serial(certificate.serial_number),
        identity=tried.identity,
        profile=service.profiles.profiles["system"],
        key=SubscriberKey(public_key=public_key, spki_der=public_key_der(public_key)),
        not_before=certificate.not_valid_before_utc,
    )
    assert problems(certificate, request, service.ca, service.publication) == []


@given(generated=generated_csrs())
async def test_a_generated_csr_is_issued_once_or_refused_with_nothing_changed(
    service: Service, generated: Generated
) -> None:
    tried = await attempt(service, generated.der, generated.key_name)
    should_issue = generated.key_name in ALLOWED and not generated.unknown_critical
    if isinstance(tried.outcome, x509.Certificate):
        assert should_issue, f"{generated.key_name} was issued"
        await assert_one_certificate_satisfying_the_profile(service, tried)
    else:
        assert not should_issue, f"refused: {tried.outcome!r}"
        await assert_refused_and_unchanged(service, tried)


@given(mutation=mutated_csrs())
async def test_a_mutated_csr_is_refused_with_nothing_changed(
    service: Service, mutation: tuple[str, bytes]
) -> None:
    _, der = mutation
    tried = await attempt(service, der, "rsa-3072")
    await assert_refused_and_unchanged(service, tried)
