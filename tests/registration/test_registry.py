"""Administrators create identities and orders; each change is audited; codes exist once."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import text

from est_ca.clock import SettableClock
from est_ca.errors import BadRequest, Conflict, NotFound
from est_ca.registration import codes
from est_ca.registration.identities import IdentityType
from est_ca.registration.orders import OrderState
from est_ca.service import Service
from tests.conftest import OpenService
from tests.helpers import ADMIN, new_order, new_system, new_user


async def audit_actions(service: Service) -> list[str]:
    async with service.store.read() as tx:
        return [event.action for event in await tx.list_audit()]


async def test_creating_an_identity_assigns_a_uuid_and_is_audited(service: Service) -> None:
    identity = await new_user(service)
    assert identity.id.version == 4
    assert await service.registry.get_identity(identity.id) == identity
    assert (await audit_actions(service))[-1] == "identity.created"


async def test_identities_are_listed_by_type_and_cvr(service: Service) -> None:
    user = await new_user(service)
    system = await new_system(service)
    listed = await service.registry.list_identities(type=IdentityType.SYSTEM)
    assert [i.id for i in listed] == [system.id]
    assert [i.id for i in await service.registry.list_identities(cvr=user.cvr)] == [user.id]


async def test_an_order_returns_a_reference_and_a_one_time_code(service: Service) -> None:
    placed = await new_order(service, await new_user(service))
    assert len(placed.order.reference) == 12
    assert len(placed.one_time_code) == 23
    assert placed.order.profile == "user"
    assert "one_time_code" not in repr(placed)


async def test_the_one_time_code_is_stored_only_as_a_hash(service: Service) -> None:
    placed = await new_order(service, await new_user(service))
    async with service.store.read() as tx:
        rows = await tx._conn.execute(text("SELECT * FROM orders"))
        stored = " ".join(str(value) for row in rows for value in row)
        audit = await tx._conn.execute(text("SELECT * FROM audit_events"))
        stored += " ".join(str(value) for row in audit for value in row)
    assert "hmac-sha256$" in stored
    assert placed.one_time_code not in stored
    for group in placed.one_time_code.split("-"):  # digits alone may occur in timestamps
        if not group.isdigit():
            assert group not in stored


async def test_an_order_expires_after_14_days_by_default(
    service: Service, clock: SettableClock
) -> None:
    placed = await new_order(service, await new_user(service))
    assert placed.order.expires_at - placed.order.created_at == dt.timedelta(days=14)
    clock.advance(dt.timedelta(days=14))
    order = await service.registry.get_order(placed.order.reference)
    assert service.registry.order_state(order) is OrderState.EXPIRED


async def test_an_order_reference_taken_already_is_drawn_again(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store reports the duplicate as AlreadyExists; the registry tries another reference."""
    identity = await new_user(service)
    taken = (await new_order(service, identity)).order.reference
    fresh = codes.new_reference()
    drawn = iter([taken, fresh])
    monkeypatch.setattr(codes, "new_reference", lambda: next(drawn))
    placed = await new_order(service, identity)
    assert placed.order.reference == fresh


async def test_an_order_can_be_given_its_own_validity(service: Service) -> None:
    placed = await new_order(service, await new_user(service), validity_days=2)
    assert placed.order.expires_at - placed.order.created_at == dt.timedelta(days=2)


async def test_a_pending_order_can_be_cancelled_once(service: Service) -> None:
    placed = await new_order(service, await new_user(service))
    cancelled = await service.registry.cancel_order(ADMIN, placed.order.reference)
    assert service.registry.order_state(cancelled) is OrderState.CANCELLED
    with pytest.raises(Conflict, match="cancelled"):
        await service.registry.cancel_order(ADMIN, placed.order.reference)
    assert (await audit_actions(service))[-1] == "order.cancelled"


async def test_an_unknown_order_is_not_found(service: Service) -> None:
    with pytest.raises(NotFound):
        await service.registry.get_order("NOSUCHORDER1")


async def test_unlocking_an_order_that_is_not_locked_is_a_conflict(service: Service) -> None:
    placed = await new_order(service, await new_user(service))
    with pytest.raises(Conflict, match="not locked"):
        await service.registry.unlock_order(ADMIN, placed.order.reference)


async def test_an_order_for_a_profile_of_another_type_is_refused(service: Service) -> None:
    system = await new_system(service)
    with pytest.raises(BadRequest, match="for user identities"):
        await new_order(service, system, profile="user")


async def test_an_order_for_an_unknown_profile_is_refused(service: Service) -> None:
    with pytest.raises(BadRequest, match="no certificate profile"):
        await new_order(service, await new_user(service), profile="nonesuch")


async def test_an_order_for_an_unknown_identity_is_not_found(service: Service) -> None:
    with pytest.raises(NotFound):
        await service.registry.place_order(ADMIN, uuid.uuid4())


async def test_the_code_hashing_key_lives_outside_the_database_readable_by_the_owner_only(
    service: Service,
) -> None:
    key_file = service.files.hmac_key
    assert key_file.is_file()
    assert key_file.parent.name == "secrets"
    assert key_file.stat().st_mode & 0o777 == 0o600
    placed = await new_order(service, await new_user(service))
    key = key_file.read_text().strip()
    async with service.store.read() as tx:
        rows = await tx._conn.execute(text("SELECT * FROM orders"))
        stored = " ".join(str(value) for row in rows for value in row)
    assert key not in stored
    assert placed.order.reference in stored


async def test_orders_listed_by_state_agree_with_the_state_each_order_shows(
    open_service: OpenService, database_url: str, clock: SettableClock
) -> None:
    service = await open_service(database_url=database_url)
    user = await new_user(service)
    expiring = await new_order(service, user, validity_days=1)
    locked = await new_order(service, user)
    cancelled = await new_order(service, user)
    pending = await new_order(service, user)
    async with service.store.write() as tx:
        await tx.count_failed_attempt(locked.order.id, lock_after=1, now=clock.now())
    await service.registry.cancel_order(ADMIN, cancelled.order.reference)
    clock.advance(dt.timedelta(days=2))
    expected = {
        OrderState.EXPIRED: [expiring.order.reference],
        OrderState.LOCKED: [locked.order.reference],
        OrderState.CANCELLED: [cancelled.order.reference],
        OrderState.PENDING: [pending.order.reference],
    }
    for state in OrderState:
        listed = await service.registry.list_orders(state=state)
        assert [o.reference for o in listed] == expected.get(state, []), state
        assert all(service.registry.order_state(o) is state for o in listed)
    counts = await service.registry.count_records()
    assert counts["orders"] == {str(state): 1 for state in expected}
