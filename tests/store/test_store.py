"""The store's guarantees, on both backends: one winner per order, unique serials, UTC times."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from est_ca.audit import AuditSeal
from est_ca.ca.certificates import CertificateRecord, CertificateStatus, KeyId, Serial
from est_ca.errors import AlreadyExists, BadRequest, EstCaError
from est_ca.registration.codes import new_key
from est_ca.registration.identities import Identity, IdentityType
from est_ca.registration.orders import Order
from est_ca.revocation.reasons import RevocationReason
from est_ca.store.store import Store, StoreTx

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
ISSUER = KeyId("11" * 20)
OTHER_ISSUER = KeyId("22" * 20)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = Store(database_url, seal=AuditSeal(new_key()))
    await opened.migrate()
    yield opened
    await opened.close()


async def stored_order(store: Store) -> tuple[Identity, Order]:
    identity = Identity.create(
        type=IdentityType.SYSTEM,
        organisation_name="ÆØÅ ApS",
        cvr="99999999",
        display_name="svc",
        created_at=NOW,
    )
    order = Order.place(
        reference="REF" + identity.id.hex[:9].upper(),
        identity_id=identity.id,
        profile="system",
        created_at=NOW,
        validity=dt.timedelta(days=14),
    )
    async with store.write() as tx:
        await tx.insert_identity(identity)
        await tx.insert_order(order, "scrypt$x")
    return identity, order


def reservation(identity: Identity, serial: Serial, issuer: KeyId = ISSUER) -> CertificateRecord:
    return CertificateRecord(
        serial=serial,
        issuer_key_id=issuer,
        identity_id=identity.id,
        order_id=None,
        renewal_of=None,
        profile="system",
        status=CertificateStatus.RESERVED,
        public_key_sha256="0" * 64,
        created_at=NOW,
    )


async def test_of_many_simultaneous_claims_on_one_order_exactly_one_wins(store: Store) -> None:
    _, order = await stored_order(store)

    async def claim() -> bool:
        async with store.write() as tx:
            return await tx.claim_order(order.id, Serial.random(), now=NOW, stale_before=NOW)

    results = await asyncio.gather(*(claim() for _ in range(20)))
    assert results.count(True) == 1


async def test_a_serial_cannot_be_reserved_twice(store: Store) -> None:
    """A duplicate primary key is the domain's AlreadyExists, not the database library's error."""
    identity, _ = await stored_order(store)
    serial = Serial.random()
    async with store.write() as tx:
        await tx.insert_reservation(reservation(identity, serial))
    with pytest.raises(AlreadyExists):
        async with store.write() as tx:
            await tx.insert_reservation(reservation(identity, serial))


async def test_a_taken_unique_value_is_already_exists(store: Store) -> None:
    identity, order = await stored_order(store)
    again = Order.place(
        reference=order.reference,
        identity_id=identity.id,
        profile="system",
        created_at=NOW,
        validity=dt.timedelta(days=14),
    )
    with pytest.raises(AlreadyExists):
        async with store.write() as tx:
            await tx.insert_order(again, "scrypt$x")


async def test_an_integrity_error_that_is_no_duplicate_stays_an_internal_error(
    store: Store,
) -> None:
    """An order for an identity that does not exist is a bug, not a conflict to report."""
    _, order = await stored_order(store)
    orphan = Order.place(
        reference="REF" + order.id.hex[:9].upper(),
        identity_id=uuid.uuid4(),
        profile="system",
        created_at=NOW,
        validity=dt.timedelta(days=14),
    )
    with pytest.raises(IntegrityError) as raised:
        async with store.write() as tx:
            await tx.insert_order(orphan, "scrypt$x")
    assert not isinstance(raised.value, EstCaError)


async def test_times_come_back_as_the_same_utc_instant(store: Store) -> None:
    _, order = await stored_order(store)
    async with store.read() as tx:
        loaded = await tx.get_order(order.id)
    assert loaded is not None
    assert loaded.created_at == NOW
    assert loaded.created_at.tzinfo is not None
    assert loaded.expires_at == NOW + dt.timedelta(days=14)


async def test_a_failed_transaction_leaves_nothing_behind(store: Store) -> None:
    identity, order = await stored_order(store)
    serial = Serial.random()

    async def crash_before_commit() -> None:
        async with store.write() as tx:
            await tx.claim_order(order.id, serial, now=NOW, stale_before=NOW)
            await tx.insert_reservation(reservation(identity, serial))
            raise RuntimeError("crash before commit")

    with pytest.raises(RuntimeError):
        await crash_before_commit()
    async with store.read() as tx:
        assert await tx.get_certificate(ISSUER, serial) is None
        reloaded = await tx.get_order(order.id)
    assert reloaded is not None
    assert reloaded.claimed_serial is None


async def test_a_certificate_is_revoked_only_once(store: Store) -> None:
    identity, _ = await stored_order(store)
    serial = Serial.random()
    async with store.write() as tx:
        await tx.insert_reservation(reservation(identity, serial))
        assert await tx.mark_issued(
            ISSUER, serial, der=b"x", not_before=NOW, not_after=NOW, issued_at=NOW
        )
        assert await tx.revoke_certificate(
            ISSUER, serial, reason=RevocationReason.UNSPECIFIED, at=NOW
        )
        assert not await tx.revoke_certificate(
            ISSUER, serial, reason=RevocationReason.UNSPECIFIED, at=NOW
        )


@pytest.mark.parametrize("reason", list(RevocationReason))
async def test_a_revocation_reason_comes_back_as_the_reason(
    store: Store, reason: RevocationReason
) -> None:
    identity, _ = await stored_order(store)
    serial = Serial.random()
    async with store.write() as tx:
        await tx.insert_reservation(reservation(identity, serial))
        await tx.mark_issued(
            ISSUER,
            serial,
            der=b"x",
            not_before=NOW,
            not_after=NOW + dt.timedelta(days=1),
            issued_at=NOW,
        )
        await tx.revoke_certificate(ISSUER, serial, reason=reason, at=NOW)
    async with store.read() as tx:
        record = await tx.get_certificate(ISSUER, serial)
        [entry] = [entry async for entry in tx.revoked_entries(ISSUER, NOW)]
    assert record is not None
    assert record.revocation_reason is reason
    assert entry.reason is reason


async def test_unspecified_is_stored_as_no_reason(store: Store) -> None:
    """RFC 5280 wants no reasonCode rather than unspecified; rows keep that as NULL."""
    identity, _ = await stored_order(store)
    serial = Serial.random()
    async with store.write() as tx:
        await tx.insert_reservation(reservation(identity, serial))
        await tx.mark_issued(ISSUER, serial, der=b"x", not_before=NOW, not_after=NOW, issued_at=NOW)
        await tx.revoke_certificate(ISSUER, serial, reason=RevocationReason.UNSPECIFIED, at=NOW)
    async with store.read() as tx:
        rows = await tx._conn.execute(text("SELECT revocation_reason FROM certificates"))
        assert [row.revocation_reason for row in rows] == [None]


async def test_a_certificate_not_revoked_has_no_reason(store: Store) -> None:
    identity, _ = await stored_order(store)
    serial = Serial.random()
    async with store.write() as tx:
        await tx.insert_reservation(reservation(identity, serial))
        await tx.mark_issued(ISSUER, serial, der=b"x", not_before=NOW, not_after=NOW, issued_at=NOW)
        record = await tx.get_certificate(ISSUER, serial)
    assert record is not None
    assert record.revocation_reason is None


async def test_an_orders_serials_come_back_as_serials(store: Store) -> None:
    identity, order = await stored_order(store)
    serial = Serial.random()
    async with store.write() as tx:
        await tx.claim_order(order.id, serial, now=NOW, stale_before=NOW)
        claimed = await tx.get_order(order.id)
        await tx.insert_reservation(reservation(identity, serial))
        await tx.complete_order(order.id, serial, NOW)
        completed = await tx.get_order(order.id)
    assert claimed is not None
    assert completed is not None
    assert claimed.claimed_serial == serial
    assert completed.certificate_serial == serial


async def issued_under(store: Store, identity: Identity, serial: Serial, issuer: KeyId) -> None:
    async with store.write() as tx:
        await tx.insert_reservation(reservation(identity, serial, issuer))
        await tx.mark_issued(
            issuer,
            serial,
            der=b"x",
            not_before=NOW,
            not_after=NOW + dt.timedelta(days=1),
            issued_at=NOW,
        )


async def test_one_serial_can_be_recorded_under_two_issuers(store: Store) -> None:
    """A serial is unique per issuer (RFC 5280 4.1.2.2), not across CAs."""
    identity, _ = await stored_order(store)
    serial = Serial.random()
    await issued_under(store, identity, serial, ISSUER)
    await issued_under(store, identity, serial, OTHER_ISSUER)
    async with store.read() as tx:
        ours = await tx.get_certificate(ISSUER, serial)
        theirs = await tx.get_certificate(OTHER_ISSUER, serial)
        both = await tx.certificates_with_serial(serial)
    assert ours is not None
    assert ours.issuer_key_id == ISSUER
    assert theirs is not None
    assert theirs.issuer_key_id == OTHER_ISSUER
    assert {record.issuer_key_id for record in both} == {ISSUER, OTHER_ISSUER}


async def test_revoking_a_serial_under_one_issuer_leaves_the_other_issuers_certificate(
    store: Store,
) -> None:
    identity, _ = await stored_order(store)
    serial = Serial.random()
    await issued_under(store, identity, serial, ISSUER)
    await issued_under(store, identity, serial, OTHER_ISSUER)
    async with store.write() as tx:
        assert await tx.revoke_certificate(
            OTHER_ISSUER, serial, reason=RevocationReason.KEY_COMPROMISE, at=NOW
        )
    async with store.read() as tx:
        ours = await tx.get_certificate(ISSUER, serial)
        ours_on_crl = [entry async for entry in tx.revoked_entries(ISSUER, NOW)]
        theirs_on_crl = [entry async for entry in tx.revoked_entries(OTHER_ISSUER, NOW)]
    assert ours is not None
    assert ours.status is CertificateStatus.ISSUED
    assert ours_on_crl == []
    assert [entry.serial for entry in theirs_on_crl] == [serial]


async def test_a_key_id_that_is_not_hex_is_a_bad_request() -> None:
    with pytest.raises(BadRequest):
        KeyId("not hex")
    assert KeyId.parse("AB:CD") == KeyId("abcd")


async def test_a_step_that_fails_beside_simultaneous_steps_is_rolled_back_alone(
    store: Store,
) -> None:
    """On SQLite, write steps that queue together commit together (one fsync): each must
    still be all-or-nothing on its own."""
    identity, _ = await stored_order(store)
    serials = [Serial.random() for _ in range(12)]
    failing = serials[5]

    async def reserve(serial: Serial) -> None:
        async def step(tx: StoreTx) -> None:
            await tx.insert_reservation(reservation(identity, serial))
            if serial == failing:
                raise RuntimeError("this step fails after its insert")

        await store.in_transaction(step)

    outcomes = await asyncio.gather(*(reserve(s) for s in serials), return_exceptions=True)
    assert [isinstance(o, RuntimeError) for o in outcomes] == [s == failing for s in serials]
    async with store.read() as tx:
        stored = {s for s in serials if await tx.get_certificate(ISSUER, s) is not None}
    assert stored == set(serials) - {failing}


async def test_a_duplicate_key_in_a_step_is_already_exists(store: Store) -> None:
    identity, _ = await stored_order(store)
    serial = Serial.random()
    await store.in_transaction(lambda tx: tx.insert_reservation(reservation(identity, serial)))
    with pytest.raises(AlreadyExists):
        await store.in_transaction(lambda tx: tx.insert_reservation(reservation(identity, serial)))
