"""Manual approval in the registration authority, on SQLite and PostgreSQL (real row locks)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import AttributeOID, NameOID

from est_ca.ca.certificates import CertificateStatus
from est_ca.errors import ApprovalPending, Conflict, EstCaError, NoPendingOrder
from est_ca.registration.approvals import EnrollmentRequest, RequestStatus
from est_ca.revocation.reasons import RevocationReason
from est_ca.service import Service
from tests.conftest import OpenService
from tests.helpers import ADMIN, KeyPool, credentials, csr_der, make_csr, new_order, new_system


@pytest.fixture
async def service(open_service: OpenService, database_url: str) -> Service:
    return await open_service(database_url=database_url)


async def test_simultaneous_first_attempts_store_one_request(
    service: Service, keys: KeyPool
) -> None:
    assert service.authority is not None
    reference, code = credentials(
        await new_order(service, await new_system(service), require_approval=True)
    )
    csr = csr_der(make_csr(keys.rsa(0).key))
    outcomes = await asyncio.gather(
        *(
            service.authority.enroll_with_order(reference, code, csr, source="test")
            for _ in range(5)
        ),
        return_exceptions=True,
    )
    assert all(isinstance(outcome, ApprovalPending) for outcome in outcomes), outcomes
    (request,) = await service.registry.list_requests()
    assert request.status is RequestStatus.PENDING
    async with service.store.read() as tx:
        assert len(await tx.list_audit(action="request.submitted")) == 1


async def test_simultaneous_retries_after_approval_issue_exactly_once(
    service: Service, keys: KeyPool
) -> None:
    assert service.authority is not None
    identity = await new_system(service)
    reference, code = credentials(await new_order(service, identity, require_approval=True))
    csr = csr_der(make_csr(keys.rsa(0).key))
    with pytest.raises(ApprovalPending):
        await service.authority.enroll_with_order(reference, code, csr, source="test")
    await service.registry.approve_request(ADMIN, reference)
    outcomes = await asyncio.gather(
        *(
            service.authority.enroll_with_order(reference, code, csr, source="test")
            for _ in range(8)
        ),
        return_exceptions=True,
    )
    certificates = [o for o in outcomes if isinstance(o, x509.Certificate)]
    refusals = [o for o in outcomes if isinstance(o, EstCaError)]
    assert len(certificates) + len(refusals) == len(outcomes), outcomes
    assert certificates, outcomes
    assert all(isinstance(r, ApprovalPending) and r.retry_after_seconds == 1 for r in refusals)
    assert len({c.serial_number for c in certificates}) == 1
    issued = await service.registry.list_certificates(
        identity_id=identity.id, status=CertificateStatus.ISSUED
    )
    assert [r.serial.value for r in issued] == [certificates[0].serial_number]


async def test_two_administrators_deciding_at_once_decide_once(
    service: Service, keys: KeyPool
) -> None:
    assert service.authority is not None
    reference, code = credentials(
        await new_order(service, await new_system(service), require_approval=True)
    )
    with pytest.raises(ApprovalPending):
        await service.authority.enroll_with_order(
            reference, code, csr_der(make_csr(keys.rsa(0).key)), source="test"
        )
    outcomes = await asyncio.gather(
        service.registry.approve_request(ADMIN, reference),
        service.registry.reject_request(ADMIN, reference, "no"),
        return_exceptions=True,
    )
    assert sum(isinstance(o, Conflict) for o in outcomes) == 1, outcomes
    async with service.store.read() as tx:
        decided = await tx.list_audit(action="request.approved") + await tx.list_audit(
            action="request.rejected"
        )
    assert len(decided) == 1


async def test_a_client_certificate_does_not_bypass_the_approval_of_the_order_it_uses(
    service: Service, keys: KeyPool
) -> None:
    """simpleenroll with a TLS client certificate consumes a pending order of its identity:
    when that order requires approval, it waits like one used with its code."""
    assert service.authority is not None
    identity = await new_system(service)
    reference, code = credentials(await new_order(service, identity))
    current = await service.authority.enroll_with_order(
        reference, code, csr_der(make_csr(keys.rsa(0).key)), source="test"
    )
    waiting = await new_order(service, identity, require_approval=True)
    current_der = current.public_bytes(serialization.Encoding.DER)
    csr = csr_der(make_csr(keys.rsa(1).key))
    with pytest.raises(ApprovalPending):
        await service.authority.enroll_with_certificate(current_der, csr, source="test")
    await service.registry.approve_request(ADMIN, waiting.order.reference)
    issued = await service.authority.enroll_with_certificate(current_der, csr, source="test")
    assert issued.public_key() == keys.rsa(1).key.public_key()


@pytest.mark.parametrize("how", ["order cancelled", "identity disabled"])
async def test_a_pending_request_is_rejected_with_its_cancelled_order(
    service: Service, keys: KeyPool, how: str
) -> None:
    assert service.authority is not None
    identity = await new_system(service)
    reference, code = credentials(await new_order(service, identity, require_approval=True))
    csr = csr_der(make_csr(keys.rsa(0).key))
    with pytest.raises(ApprovalPending):
        await service.authority.enroll_with_order(reference, code, csr, source="test")
    if how == "order cancelled":
        await service.registry.cancel_order(ADMIN, reference)
    else:
        await service.revocations.revoke_identity(ADMIN, identity.id, RevocationReason.UNSPECIFIED)
    assert await service.registry.list_requests(status=RequestStatus.PENDING) == []
    request = await service.registry.get_request(reference)
    assert (request.status, request.reason) == (RequestStatus.REJECTED, "its order was cancelled")
    with pytest.raises(NoPendingOrder, match="rejected by an administrator: its order was"):
        await service.authority.enroll_with_order(reference, code, csr, source="test")


def _csr(
    key: CertificateIssuerPrivateKeyTypes, name: str = "device", password: bytes | None = None
) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    )
    if password is not None:
        builder = builder.add_attribute(AttributeOID.CHALLENGE_PASSWORD, password)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _stored(csr: bytes) -> EnrollmentRequest:
    return EnrollmentRequest.submit(
        order_id=uuid.uuid4(),
        order_reference="REF",
        identity_id=uuid.uuid4(),
        csr_der=csr,
        now=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    )


def test_a_retry_differing_only_in_its_challenge_password_is_the_same_request(
    keys: KeyPool,
) -> None:
    """Channel binding puts each session's tls-unique in the password (RFC 7030 3.5)."""
    key = keys.ec(0).key
    stored = _stored(_csr(key, password=b"first-session"))
    assert stored.same_csr(_csr(key, password=b"second-session"))


def test_a_retry_with_another_subject_key_or_attribute_is_another_request(
    keys: KeyPool,
) -> None:
    key = keys.ec(0).key
    stored = _stored(_csr(key, password=b"first-session"))
    assert not stored.same_csr(_csr(key, name="other", password=b"first-session"))
    assert not stored.same_csr(_csr(keys.ec(1).key, password=b"first-session"))
    with_extension = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device")]))
        .add_attribute(AttributeOID.CHALLENGE_PASSWORD, b"first-session")
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("x.example")]), critical=False)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    assert not stored.same_csr(with_extension)
    assert not stored.same_csr(b"not a CSR")
    assert not stored.same_csr(stored.csr_der[:-1])


async def test_a_first_request_of_an_order_cancelled_meanwhile_is_not_stored(
    service: Service, keys: KeyPool
) -> None:
    """The order is authenticated, then cancelled while its CSR is checked: the request must
    not be stored pending behind the cancellation (it would wait in the queue for an order
    that can no longer issue, which the cancellation's rejection is there to prevent)."""
    authority = service.authority
    assert authority is not None
    identity = await new_system(service)
    placed = await new_order(service, identity, require_approval=True)
    profile = service.profiles.profiles[placed.order.profile]
    await service.registry.cancel_order(ADMIN, placed.order.reference)  # after authentication
    with pytest.raises(NoPendingOrder, match="cancelled"):
        await authority._require_approved(  # the window: the order was read before the cancel
            placed.order,
            identity,
            profile,
            csr_der(make_csr(keys.rsa(0).key)),
            ADMIN,
        )
    assert await service.registry.list_requests() == []
