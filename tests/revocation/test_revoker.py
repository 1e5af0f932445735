"""Revoking certificates and identities: final, audited, and refused when it makes no sense."""

from __future__ import annotations

import datetime as dt

import pytest

from est_ca.ca.certificates import CertificateStatus, KeyId, Serial
from est_ca.clock import SettableClock
from est_ca.errors import BadRequest, Conflict, NotFound
from est_ca.registration.identities import IdentityStatus
from est_ca.registration.orders import OrderState
from est_ca.revocation.reasons import RevocationReason
from est_ca.service import Service
from tests.helpers import ADMIN, KeyPool, csr_der, make_csr, new_order
from tests.revocation.helpers import OTHER_ISSUER, issue, record_under_other_issuer


async def test_a_certificate_is_revoked_with_reason_and_invalidity_date(
    service: Service, clock: SettableClock, keys: KeyPool
) -> None:
    certificate = await issue(service, keys)
    clock.advance(dt.timedelta(days=3))
    compromised = service.clock.now() - dt.timedelta(days=2)
    record = await service.revocations.revoke_certificate(
        ADMIN, Serial(certificate.serial_number), RevocationReason.KEY_COMPROMISE, compromised
    )
    assert record.status is CertificateStatus.REVOKED
    assert record.revoked_at == service.clock.now()
    assert record.revocation_reason is RevocationReason.KEY_COMPROMISE
    assert record.invalidity_date == compromised
    async with service.store.read() as tx:
        [event] = await tx.list_audit(action="certificate.revoked")
    assert (event.serial, event.reason, str(event.actor)) == (
        record.serial.hex,
        "keyCompromise",
        "admin:test",
    )


async def test_revoking_twice_is_a_conflict(service: Service, keys: KeyPool) -> None:
    certificate = await issue(service, keys)
    await service.revocations.revoke_certificate(ADMIN, Serial(certificate.serial_number))
    with pytest.raises(Conflict, match=r"already revoked .* final"):
        await service.revocations.revoke_certificate(ADMIN, Serial(certificate.serial_number))


async def test_a_serial_two_issuers_share_is_revoked_only_with_the_issuer_named(
    service: Service, keys: KeyPool
) -> None:
    certificate = await issue(service, keys)
    serial = Serial(certificate.serial_number)
    await record_under_other_issuer(service, serial)
    with pytest.raises(Conflict, match="issuer"):
        await service.revocations.revoke_certificate(ADMIN, serial)
    assert service.ca is not None
    ours = KeyId.of(service.ca.key_identifier)
    record = await service.revocations.revoke_certificate(ADMIN, serial, issuer=ours)
    assert (record.issuer_key_id, record.status) == (ours, CertificateStatus.REVOKED)
    theirs = await service.registry.get_certificate(serial, issuer=OTHER_ISSUER)
    assert theirs.status is CertificateStatus.ISSUED
    async with service.store.read() as tx:
        [event] = await tx.list_audit(action="certificate.revoked")
    assert event.details["issuer"] == ours.hex
    with pytest.raises(Conflict, match="issuer"):
        await service.registry.get_certificate(serial)


async def test_revoking_an_unknown_serial_is_not_found(service: Service) -> None:
    with pytest.raises(NotFound, match="no issued certificate"):
        await service.revocations.revoke_certificate(ADMIN, Serial.random())


async def test_an_invalidity_date_in_the_future_is_refused(service: Service, keys: KeyPool) -> None:
    certificate = await issue(service, keys)
    with pytest.raises(BadRequest, match="future"):
        await service.revocations.revoke_certificate(
            ADMIN,
            Serial(certificate.serial_number),
            RevocationReason.KEY_COMPROMISE,
            service.clock.now() + dt.timedelta(hours=1),
        )


@pytest.mark.parametrize(
    "moved",
    [dt.timedelta(seconds=-1), dt.datetime(1, 1, 1, tzinfo=dt.UTC)],
    ids=["a-second-before-not-before", "year-1"],
)
async def test_an_invalidity_date_before_the_certificates_validity_is_refused(
    service: Service, keys: KeyPool, moved: dt.timedelta | dt.datetime
) -> None:
    certificate = await issue(service, keys)
    not_before = certificate.not_valid_before_utc
    when = not_before + moved if isinstance(moved, dt.timedelta) else moved
    with pytest.raises(BadRequest, match="validity") as refused:
        await service.revocations.revoke_certificate(
            ADMIN, Serial(certificate.serial_number), RevocationReason.KEY_COMPROMISE, when
        )
    assert refused.value.field == "invalidity_date"
    record = await service.revocations.revoke_certificate(
        ADMIN, Serial(certificate.serial_number), RevocationReason.KEY_COMPROMISE, not_before
    )
    assert record.invalidity_date == not_before


async def test_an_invalidity_date_after_the_certificates_validity_is_refused(
    service: Service, clock: SettableClock, keys: KeyPool
) -> None:
    certificate = await issue(service, keys)
    clock.advance(certificate.not_valid_after_utc - clock.now() + dt.timedelta(days=1))
    with pytest.raises(BadRequest, match="validity") as refused:
        await service.revocations.revoke_certificate(
            ADMIN,
            Serial(certificate.serial_number),
            RevocationReason.KEY_COMPROMISE,
            certificate.not_valid_after_utc + dt.timedelta(seconds=1),
        )
    assert refused.value.field == "invalidity_date"


async def test_disabling_an_identity_revokes_its_live_certificates_and_cancels_orders(
    service: Service, keys: KeyPool
) -> None:
    first = await issue(service, keys, 0)
    record = await service.registry.get_certificate(Serial(first.serial_number))
    identity = await service.registry.get_identity(record.identity_id)
    assert service.authority is not None
    placed = await new_order(service, identity)
    second = await service.authority.enroll_with_order(
        placed.order.reference,
        placed.one_time_code,
        csr_der(make_csr(keys.rsa(0).key)),
        source="test",
    )
    pending = await new_order(service, identity)
    disabled, revoked = await service.revocations.revoke_identity(ADMIN, identity.id)
    assert disabled.status is IdentityStatus.DISABLED
    assert sorted(r.serial.value for r in revoked) == sorted(
        [first.serial_number, second.serial_number]
    )
    for serial in (first.serial_number, second.serial_number):
        revoked_record = await service.registry.get_certificate(Serial(serial))
        assert revoked_record.status is CertificateStatus.REVOKED
        assert revoked_record.revocation_reason is RevocationReason.CESSATION_OF_OPERATION
    order = await service.registry.get_order(pending.order.reference)
    assert service.registry.order_state(order) is OrderState.CANCELLED
    with pytest.raises(Conflict, match="already disabled"):
        await service.revocations.revoke_identity(ADMIN, identity.id)


async def test_an_identity_is_revoked_with_the_reason_given(
    service: Service, keys: KeyPool
) -> None:
    certificate = await issue(service, keys)
    record = await service.registry.get_certificate(Serial(certificate.serial_number))
    await service.revocations.revoke_identity(
        ADMIN, record.identity_id, RevocationReason.AFFILIATION_CHANGED
    )
    revoked = await service.registry.get_certificate(record.serial)
    assert revoked.revocation_reason is RevocationReason.AFFILIATION_CHANGED
