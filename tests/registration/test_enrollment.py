"""The registration authority, without HTTP: who may enroll, and issuing in two steps."""

from __future__ import annotations

import datetime as dt

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509.oid import NameOID
from sqlalchemy import text

from est_ca.ca.certificates import CertificateRecord, CertificateStatus, Serial
from est_ca.clock import SettableClock
from est_ca.errors import (
    BadRequest,
    CertificateNotUsable,
    NoPendingOrder,
    NotEntitled,
    OrderLocked,
    Unauthenticated,
)
from est_ca.registration.orders import OrderState, OrderStatus
from est_ca.revocation.reasons import RevocationReason
from est_ca.service import Service
from tests.conftest import CaMaterial
from tests.helpers import (
    ADMIN,
    KeyPool,
    csr_der,
    make_csr,
    new_order,
    new_system,
    new_user,
    openssl,
)
from tests.registration.test_codes import scrypt_hash


def der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


async def enroll(service: Service, keys: KeyPool, *, key_index: int = 0) -> x509.Certificate:
    assert service.authority is not None
    placed = await new_order(service, await new_user(service))
    return await service.authority.enroll_with_order(
        placed.order.reference,
        placed.one_time_code,
        csr_der(make_csr(keys.rsa(key_index).key)),
        source="test",
    )


async def audit(service: Service) -> list[tuple[str, str | None]]:
    async with service.store.read() as tx:
        return [(e.action, e.reason) for e in await tx.list_audit()]


async def test_an_order_yields_a_certificate_whose_subject_comes_from_the_identity(
    service: Service, keys: KeyPool
) -> None:
    assert service.authority is not None
    identity = await new_user(service, given_name="Søren", surname="Ærø Ålborg")
    placed = await new_order(service, identity)
    asked = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Administrator")])
    certificate = await service.authority.enroll_with_order(
        placed.order.reference,
        placed.one_time_code,
        csr_der(make_csr(keys.rsa().key, subject=asked)),
        source="test",
    )
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [n.value for n in names] == ["Søren Ærø Ålborg"]
    assert certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == (
        f"UI:DK-E:G:{identity.id}"
    )
    assert certificate.public_key() == keys.rsa().key.public_key()


async def test_the_certificate_is_recorded_and_the_order_consumed(
    service: Service, keys: KeyPool
) -> None:
    certificate = await enroll(service, keys)
    record = await service.registry.get_certificate(Serial(certificate.serial_number))
    assert record.status is CertificateStatus.ISSUED
    assert record.der == der(certificate)
    [order] = await service.registry.list_orders()
    assert order.status is OrderStatus.CONSUMED
    assert order.certificate_serial == record.serial


async def test_an_order_yields_one_certificate_and_refuses_another_key(
    service: Service, keys: KeyPool
) -> None:
    assert service.authority is not None
    placed = await new_order(service, await new_user(service))
    await service.authority.enroll_with_order(
        placed.order.reference,
        placed.one_time_code,
        csr_der(make_csr(keys.rsa(0).key)),
        source="test",
    )
    with pytest.raises(NoPendingOrder, match="already been used"):
        await service.authority.enroll_with_order(
            placed.order.reference,
            placed.one_time_code,
            csr_der(make_csr(keys.rsa(1).key)),
            source="test",
        )
    assert len(await service.registry.list_certificates()) == 1


async def test_a_retry_with_the_same_key_gets_the_certificate_the_order_already_yielded(
    service: Service, keys: KeyPool
) -> None:
    """A client that lost the response after its order was consumed asks again."""
    assert service.authority is not None
    placed = await new_order(service, await new_user(service))
    first = await service.authority.enroll_with_order(
        placed.order.reference,
        placed.one_time_code,
        csr_der(make_csr(keys.rsa(0).key)),
        source="test",
    )
    # Another CSR (another subject, a fresh signature) for the same key.
    asked = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "asked again")])
    again = await service.authority.enroll_with_order(
        placed.order.reference,
        placed.one_time_code,
        csr_der(make_csr(keys.rsa(0).key, subject=asked)),
        source="retry",
    )
    assert der(again) == der(first)
    assert len(await service.registry.list_certificates()) == 1
    async with service.store.read() as tx:
        [event] = await tx.list_audit(action="certificate.redelivered")
    assert (event.order_reference, event.serial) == (
        placed.order.reference,
        Serial(first.serial_number).hex,
    )
    assert event.actor.source == "retry"


async def test_a_retry_after_the_order_expired_is_refused(
    service: Service, keys: KeyPool, clock: SettableClock
) -> None:
    assert service.authority is not None
    placed = await new_order(service, await new_user(service), validity_days=1)
    request = csr_der(make_csr(keys.rsa(0).key))
    await service.authority.enroll_with_order(
        placed.order.reference, placed.one_time_code, request, source="test"
    )
    clock.advance(dt.timedelta(days=1))
    with pytest.raises(NoPendingOrder, match="already been used"):
        await service.authority.enroll_with_order(
            placed.order.reference, placed.one_time_code, request, source="test"
        )


async def test_a_retry_whose_certificate_was_revoked_is_refused(
    service: Service, keys: KeyPool
) -> None:
    assert service.authority is not None
    placed = await new_order(service, await new_user(service))
    request = csr_der(make_csr(keys.rsa(0).key))
    first = await service.authority.enroll_with_order(
        placed.order.reference, placed.one_time_code, request, source="test"
    )
    await service.revocations.revoke_certificate(
        ADMIN, Serial(first.serial_number), RevocationReason.CESSATION_OF_OPERATION
    )
    with pytest.raises(NoPendingOrder, match="revoked"):
        await service.authority.enroll_with_order(
            placed.order.reference, placed.one_time_code, request, source="test"
        )


async def test_a_retry_needs_proof_of_possession_of_the_key(
    service: Service, keys: KeyPool
) -> None:
    assert service.authority is not None
    placed = await new_order(service, await new_user(service))
    request = csr_der(make_csr(keys.rsa(0).key))
    await service.authority.enroll_with_order(
        placed.order.reference, placed.one_time_code, request, source="test"
    )
    forged = bytearray(request)
    forged[-5] ^= 0xFF  # inside the signature
    with pytest.raises(BadRequest, match="proof of possession"):
        await service.authority.enroll_with_order(
            placed.order.reference, placed.one_time_code, bytes(forged), source="test"
        )


async def test_a_retry_with_a_wrong_code_counts_against_the_order(
    service: Service, keys: KeyPool
) -> None:
    assert service.authority is not None
    placed = await new_order(service, await new_user(service))
    request = csr_der(make_csr(keys.rsa(0).key))
    await service.authority.enroll_with_order(
        placed.order.reference, placed.one_time_code, request, source="test"
    )
    for _ in range(5):
        with pytest.raises(Unauthenticated):
            await service.authority.enroll_with_order(
                placed.order.reference, "WRONG-WRONG-WRONG-WRONG", request, source="test"
            )
    with pytest.raises(OrderLocked):
        await service.authority.enroll_with_order(
            placed.order.reference, placed.one_time_code, request, source="test"
        )


async def test_an_expired_order_is_refused(
    service: Service, keys: KeyPool, clock: SettableClock
) -> None:
    assert service.authority is not None
    placed = await new_order(service, await new_user(service), validity_days=1)
    clock.advance(dt.timedelta(days=1))
    with pytest.raises(NoPendingOrder, match="expired"):
        await service.authority.enroll_with_order(
            placed.order.reference,
            placed.one_time_code,
            csr_der(make_csr(keys.rsa().key)),
            source="test",
        )


async def test_a_cancelled_order_is_refused(service: Service, keys: KeyPool) -> None:
    assert service.authority is not None
    placed = await new_order(service, await new_user(service))
    await service.registry.cancel_order(ADMIN, placed.order.reference)
    with pytest.raises(NoPendingOrder, match="cancelled"):
        await service.authority.enroll_with_order(
            placed.order.reference,
            placed.one_time_code,
            csr_der(make_csr(keys.rsa().key)),
            source="test",
        )


async def test_an_unknown_reference_is_unauthenticated(service: Service, keys: KeyPool) -> None:
    assert service.authority is not None
    with pytest.raises(Unauthenticated):
        await service.authority.enroll_with_order(
            "NOSUCHORDER1",
            "AAAAA-AAAAA-AAAAA-AAAAA",
            csr_der(make_csr(keys.rsa().key)),
            source="test",
        )


async def test_five_wrong_codes_lock_the_order_until_an_administrator_unlocks_it(
    service: Service, keys: KeyPool
) -> None:
    assert service.authority is not None
    placed = await new_order(service, await new_user(service))
    request = csr_der(make_csr(keys.rsa().key))
    for _ in range(5):
        with pytest.raises(Unauthenticated):
            await service.authority.enroll_with_order(
                placed.order.reference, "WRONG-WRONG-WRONG-WRONG", request, source="test"
            )
    order = await service.registry.get_order(placed.order.reference)
    assert service.registry.order_state(order) is OrderState.LOCKED
    with pytest.raises(OrderLocked):
        await service.authority.enroll_with_order(
            placed.order.reference, placed.one_time_code, request, source="test"
        )
    await service.registry.unlock_order(ADMIN, placed.order.reference)
    certificate = await service.authority.enroll_with_order(
        placed.order.reference, placed.one_time_code, request, source="test"
    )
    assert certificate.serial_number
    actions = [action for action, _ in await audit(service)]
    assert actions.count("order.locked") == 1
    assert "order.unlocked" in actions


async def test_four_wrong_codes_do_not_lock(service: Service, keys: KeyPool) -> None:
    assert service.authority is not None
    placed = await new_order(service, await new_user(service))
    for _ in range(4):
        with pytest.raises(Unauthenticated):
            await service.authority.enroll_with_order(
                placed.order.reference, "WRONG", b"", source="test"
            )
    order = await service.registry.get_order(placed.order.reference)
    assert service.registry.order_state(order) is OrderState.PENDING
    assert order.failed_attempts == 4


async def test_a_csr_whose_signature_does_not_verify_changes_nothing(
    service: Service, keys: KeyPool
) -> None:
    assert service.authority is not None
    placed = await new_order(service, await new_user(service))
    good = bytearray(csr_der(make_csr(keys.rsa().key)))
    good[-5] ^= 0xFF  # inside the signature
    with pytest.raises(BadRequest, match="proof of possession"):
        await service.authority.enroll_with_order(
            placed.order.reference, placed.one_time_code, bytes(good), source="test"
        )
    order = await service.registry.get_order(placed.order.reference)
    assert service.registry.order_state(order) is OrderState.PENDING
    assert await service.registry.list_certificates() == []
    assert (
        "enroll.refused",
        "BadRequest: " + "the CSR's signature does not verify: it must be "
        "signed with the private key of the public key it contains (proof of possession)",
    ) in (await audit(service))


async def test_a_key_the_profile_does_not_allow_is_refused(service: Service, keys: KeyPool) -> None:
    assert service.authority is not None
    placed = await new_order(service, await new_user(service))
    with pytest.raises(BadRequest, match="RSA 2048 keys are not allowed"):
        await service.authority.enroll_with_order(
            placed.order.reference,
            placed.one_time_code,
            csr_der(make_csr(keys.rsa(bits=2048).key)),
            source="test",
        )


@pytest.mark.parametrize("digest", ["sha1", "md5"])
async def test_a_csr_signed_with_a_broken_hash_is_refused(
    service: Service, keys: KeyPool, digest: str
) -> None:
    assert service.authority is not None
    placed = await new_order(service, await new_user(service))
    request = await openssl(
        "req", "-new", "-key", keys.rsa().path, "-subj", "/CN=x", f"-{digest}", "-outform", "DER"
    )
    with pytest.raises(BadRequest, match=digest.upper()):
        await service.authority.enroll_with_order(
            placed.order.reference, placed.one_time_code, request, source="test"
        )


async def test_disabling_an_identity_cancels_its_pending_orders(
    service: Service, keys: KeyPool
) -> None:
    assert service.authority is not None
    identity = await new_user(service)
    placed = await new_order(service, identity)
    await service.revocations.revoke_identity(ADMIN, identity.id)
    with pytest.raises(NoPendingOrder, match="cancelled"):
        await service.authority.enroll_with_order(
            placed.order.reference,
            placed.one_time_code,
            csr_der(make_csr(keys.rsa().key)),
            source="test",
        )


# -- TLS-authenticated enroll and reenroll ------------------------------------------------------


async def test_a_client_certificate_consumes_a_pending_order_of_its_identity(
    service: Service, keys: KeyPool
) -> None:
    assert service.authority is not None
    current = await enroll(service, keys)
    record = await service.registry.get_certificate(Serial(current.serial_number))
    identity = await service.registry.get_identity(record.identity_id)
    placed = await new_order(service, identity)
    issued = await service.authority.enroll_with_certificate(
        der(current), csr_der(make_csr(keys.rsa(1).key)), source="test"
    )
    assert issued.subject == current.subject
    order = await service.registry.get_order(placed.order.reference)
    assert order.status is OrderStatus.CONSUMED


async def test_a_client_certificate_without_a_pending_order_is_not_entitled(
    service: Service, keys: KeyPool
) -> None:
    assert service.authority is not None
    current = await enroll(service, keys)
    with pytest.raises(NoPendingOrder):
        await service.authority.enroll_with_certificate(
            der(current), csr_der(make_csr(keys.rsa(1).key)), source="test"
        )


async def test_reenroll_renews_with_a_new_key_and_the_same_identity(
    service: Service, keys: KeyPool
) -> None:
    assert service.authority is not None
    current = await enroll(service, keys)
    renewed = await service.authority.reenroll(
        der(current),
        csr_der(make_csr(keys.rsa(1).key, subject=current.subject, san=_san(current))),
        source="test",
    )
    assert renewed.subject == current.subject
    assert renewed.serial_number != current.serial_number
    assert renewed.public_key() == keys.rsa(1).key.public_key()
    old = await service.registry.get_certificate(Serial(current.serial_number))
    new = await service.registry.get_certificate(Serial(renewed.serial_number))
    assert (new.identity_id, new.profile, new.order_id) == (old.identity_id, old.profile, None)
    assert new.renewal_of == old.serial


def _san(certificate: x509.Certificate) -> x509.SubjectAlternativeName:
    return certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


async def test_reenroll_with_another_subject_is_refused(service: Service, keys: KeyPool) -> None:
    assert service.authority is not None
    current = await enroll(service, keys)
    other = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Someone Else")])
    with pytest.raises(NotEntitled, match="subject"):
        await service.authority.reenroll(
            der(current),
            csr_der(make_csr(keys.rsa(1).key, subject=other, san=_san(current))),
            source="test",
        )


async def test_reenroll_with_another_san_is_refused(service: Service, keys: KeyPool) -> None:
    assert service.authority is not None
    current = await enroll(service, keys)
    with pytest.raises(NotEntitled, match="subjectAltName"):
        await service.authority.reenroll(
            der(current),
            csr_der(
                make_csr(
                    keys.rsa(1).key,
                    subject=current.subject,
                    san=x509.SubjectAlternativeName([x509.RFC822Name("other@example.dk")]),
                )
            ),
            source="test",
        )


async def test_reenroll_with_a_revoked_certificate_is_refused(
    service: Service, keys: KeyPool
) -> None:
    assert service.authority is not None
    current = await enroll(service, keys)
    await service.revocations.revoke_certificate(
        ADMIN, Serial(current.serial_number), RevocationReason.KEY_COMPROMISE
    )
    with pytest.raises(CertificateNotUsable, match="revoked"):
        await service.authority.reenroll(
            der(current),
            csr_der(make_csr(keys.rsa(1).key, subject=current.subject, san=_san(current))),
            source="test",
        )


async def test_reenroll_with_an_expired_certificate_is_refused(
    service: Service, keys: KeyPool, clock: SettableClock
) -> None:
    assert service.authority is not None
    current = await enroll(service, keys)
    clock.advance(dt.timedelta(days=1095))
    with pytest.raises(CertificateNotUsable, match="expired"):
        await service.authority.reenroll(
            der(current),
            csr_der(make_csr(keys.rsa(1).key, subject=current.subject, san=_san(current))),
            source="test",
        )


async def test_a_certificate_we_did_not_record_is_refused(service: Service, keys: KeyPool) -> None:
    assert service.authority is not None
    current = await enroll(service, keys)
    async with service.store.write() as tx:
        await tx._conn.exec_driver_sql("DELETE FROM certificates")
    with pytest.raises(CertificateNotUsable, match="not issued by this CA"):
        await service.authority.reenroll(
            der(current),
            csr_der(make_csr(keys.rsa(1).key, subject=current.subject)),
            source="test",
        )


@pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive")
@pytest.mark.parametrize("serial", [0, -1, 1 << 160])
async def test_a_certificate_with_a_serial_we_never_use_is_not_ours(
    service: Service, keys: KeyPool, serial: int
) -> None:
    """No lookup for a serial outside RFC 5280's range: the certificate is simply not ours."""
    assert service.authority is not None
    current = asn1_x509.Certificate.load(der(await enroll(service, keys)))
    current["tbs_certificate"]["serial_number"] = serial
    with pytest.raises(CertificateNotUsable, match="not issued by this CA"):
        await service.authority.reenroll(
            current.dump(force=True),
            csr_der(make_csr(keys.rsa(1).key)),
            source="test",
        )


# -- crash safety of the two-step issuance ------------------------------------------------------


async def test_an_interrupted_issuance_is_recovered_and_the_order_used_again(
    service: Service, keys: KeyPool, clock: SettableClock
) -> None:
    """A process that died after reserving a serial leaves a reservation, never a certificate."""
    assert service.authority is not None
    assert service.ca is not None
    identity = await new_system(service)
    placed = await new_order(service, identity)
    dead_serial = Serial.random()

    async with service.store.write() as tx:
        assert await tx.claim_order(
            placed.order.id, dead_serial, now=clock.now(), stale_before=clock.now()
        )
        await tx.insert_reservation(
            CertificateRecord(
                serial=dead_serial,
                issuer_key_id=service.ca.key_id,
                identity_id=identity.id,
                order_id=placed.order.id,
                renewal_of=None,
                profile="system",
                status=CertificateStatus.RESERVED,
                public_key_sha256="0" * 64,
                created_at=clock.now(),
            )
        )
    request = csr_der(make_csr(keys.rsa().key))
    with pytest.raises(NoPendingOrder):  # the claim is still fresh: someone may be signing
        await service.authority.enroll_with_order(
            placed.order.reference, placed.one_time_code, request, source="test"
        )
    clock.advance(dt.timedelta(seconds=service.settings.orders.claim_lease_seconds + 1))
    await service.recover()
    certificate = await service.authority.enroll_with_order(
        placed.order.reference, placed.one_time_code, request, source="test"
    )
    assert (await service.registry.get_certificate(dead_serial)).status is (
        CertificateStatus.ABANDONED
    )
    assert certificate.serial_number != dead_serial.value


# -- key policies that need the store or the CA ---------------------------------------------------


async def test_the_cas_own_public_key_is_refused(service: Service, ca_material: CaMaterial) -> None:
    assert service.authority is not None
    ca_key = load_pem_private_key(
        ca_material.hierarchy.issuing_key.read_bytes(), password=b"test passphrase"
    )
    placed = await new_order(service, await new_user(service))
    with pytest.raises(BadRequest, match="CA's own public key"):
        await service.authority.enroll_with_order(
            placed.order.reference,
            placed.one_time_code,
            csr_der(make_csr(ca_key)),  # type: ignore[arg-type]
            source="test",
        )


async def test_a_key_certified_for_another_identity_is_refused(
    service: Service, keys: KeyPool
) -> None:
    assert service.authority is not None
    await enroll(service, keys, key_index=0)
    placed = await new_order(service, await new_user(service, given_name="Other"))
    with pytest.raises(BadRequest, match="another identity"):
        await service.authority.enroll_with_order(
            placed.order.reference,
            placed.one_time_code,
            csr_der(make_csr(keys.rsa(0).key)),
            source="test",
        )


async def test_the_same_identity_may_keep_its_key(service: Service, keys: KeyPool) -> None:
    assert service.authority is not None
    first = await enroll(service, keys, key_index=0)
    record = await service.registry.get_certificate(Serial(first.serial_number))
    identity = await service.registry.get_identity(record.identity_id)
    placed = await new_order(service, identity)
    second = await service.authority.enroll_with_order(
        placed.order.reference,
        placed.one_time_code,
        csr_der(make_csr(keys.rsa(0).key)),
        source="test",
    )
    assert second.public_key() == first.public_key()


async def test_a_key_revoked_as_compromised_is_refused_for_everyone(
    service: Service, keys: KeyPool
) -> None:
    assert service.authority is not None
    first = await enroll(service, keys, key_index=0)
    record = await service.registry.get_certificate(Serial(first.serial_number))
    await service.revocations.revoke_certificate(
        ADMIN, record.serial, RevocationReason.KEY_COMPROMISE
    )
    placed = await new_order(service, await service.registry.get_identity(record.identity_id))
    with pytest.raises(BadRequest, match="compromised"):
        await service.authority.enroll_with_order(
            placed.order.reference,
            placed.one_time_code,
            csr_der(make_csr(keys.rsa(0).key)),
            source="test",
        )


async def test_an_order_whose_code_an_earlier_version_hashed_with_scrypt_still_enrolls(
    service: Service, keys: KeyPool
) -> None:
    assert service.authority is not None
    placed = await new_order(service, await new_user(service))
    async with service.store.write() as tx:
        await tx._conn.execute(
            text("UPDATE orders SET code_hash = :hash WHERE reference = :reference"),
            {"hash": scrypt_hash(placed.one_time_code), "reference": placed.order.reference},
        )
    with pytest.raises(Unauthenticated):
        await service.authority.enroll_with_order(
            placed.order.reference, "WRONG-WRONG-WRONG-WRONG", b"", source="test"
        )
    certificate = await service.authority.enroll_with_order(
        placed.order.reference,
        placed.one_time_code,
        csr_der(make_csr(keys.rsa().key)),
        source="test",
    )
    assert certificate.serial_number
