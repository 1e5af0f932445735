"""Reading import files: every row checked, every error with its line, nothing half-read."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import pytest

from est_ca.clock import SettableClock
from est_ca.errors import BadRequest
from est_ca.registration.identities import IdentityStatus
from est_ca.registration.importing import ImportRejected, parse_csv, parse_json_lines
from est_ca.registration.orders import OrderState, OrderStatus
from est_ca.service import Service
from est_ca.store.store import StoreTx
from tests.helpers import ADMIN

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
HEADER = "external_id,type,organisation_name,cvr,display_name,given_name,surname,email\n"


def rows(count: int) -> str:
    return HEADER + "".join(
        f"emp-{n},user,ÆØÅ ApS,99999999,,Søren {n},Ærø,s{n}@example.dk\n" for n in range(count)
    )


def test_a_csv_file_becomes_validated_identities() -> None:
    [first, second] = parse_csv(rows(2), NOW)
    assert (first.line, second.line) == (2, 3)
    assert first.identity.display_name == "Søren 0 Ærø"
    assert first.key == ("99999999", "emp-0")


def test_columns_may_come_in_any_order_and_optional_ones_may_be_left_out() -> None:
    text = "cvr,external_id,display_name,type,organisation_name\n99999999,s1,svc,system,ÆØÅ\n"
    [row] = parse_csv(text, NOW)
    assert row.identity.display_name == "svc"


def test_an_unknown_or_missing_column_is_reported_on_line_1() -> None:
    with pytest.raises(ImportRejected) as rejected:
        parse_csv("external_id,type,organisation_name,colour\n", NOW)
    assert {(e.line, e.field) for e in rejected.value.errors} == {(1, "colour"), (1, "cvr")}


def test_the_organisation_name_may_be_left_out_of_a_row() -> None:
    """An identity takes its organisation's registered name; the file need not repeat it."""
    [row] = parse_csv(HEADER + "svc,system,,99999999,svc,,,\n", NOW)
    assert row.organisation_name is None


def test_every_error_of_every_row_is_reported_at_once() -> None:
    text = HEADER + (
        "a,user,ÆØÅ ApS,123,,Bo,Bøgh,bo@example.dk\n"
        "b,user,ÆØÅ ApS,99999999,,,,\n"
        "c,robot,,99999999,,,,\n"
        "a,user,ÆØÅ ApS,99999999,,Bo,Bøgh,bo@example.dk\n"
    )
    with pytest.raises(ImportRejected) as rejected:
        parse_csv(text, NOW)
    found = [(e.line, e.field) for e in rejected.value.errors]
    assert (2, "cvr") in found
    assert (3, "given_name") in found
    assert (4, "type") in found
    assert len(found) == 3  # line 5 repeats line 2's id, but not its (invalid) CVR: no clash
    assert rejected.value.detail.startswith("3 error(s) in 3 row(s), nothing was imported")


def test_a_row_repeated_in_one_file_is_an_error_naming_the_first() -> None:
    text = HEADER + "a,system,Ø,99999999,x,,,\n" + "a,system,Ø,99999999,x,,,\n"
    with pytest.raises(ImportRejected) as rejected:
        parse_csv(text, NOW)
    [error] = rejected.value.errors
    assert (error.line, error.field, error.detail) == (
        3,
        "external_id",
        "duplicates the row on line 2",
    )


def test_a_row_with_more_values_than_columns_is_an_error() -> None:
    with pytest.raises(ImportRejected) as rejected:
        parse_csv(HEADER + "a,system,Ø,99999999,x,,,,surplus\n", NOW)
    assert rejected.value.errors[0].line == 2


def test_json_lines_are_read_with_blank_lines_skipped() -> None:
    lines = [
        json.dumps(
            {
                "external_id": "a",
                "type": "system",
                "organisation_name": "Ø",
                "cvr": "99999999",
                "display_name": "a",
            }
        ),
        "",
        json.dumps(
            {
                "external_id": "b",
                "type": "system",
                "organisation_name": "Ø",
                "cvr": "99999999",
                "display_name": "b",
                "cvr_extra": 1,
            }
        ),
    ]
    with pytest.raises(ImportRejected) as rejected:
        parse_json_lines("\n".join(lines), NOW)
    [error] = rejected.value.errors
    assert (error.line, error.field) == (3, "cvr_extra")


def test_a_json_line_too_deep_or_with_a_huge_number_is_a_row_error() -> None:
    """json.loads raises RecursionError and ValueError for these, not JSONDecodeError."""
    lines = ["[" * 20_000 + "]" * 20_000, '{"external_id": ' + "9" * 5000 + "}"]
    with pytest.raises(ImportRejected) as rejected:
        parse_json_lines("\n".join(lines), NOW)
    assert [(e.line, e.detail) for e in rejected.value.errors] == [
        (1, "nested too deeply to read"),
        (2, "a number too long to read"),
    ]


def test_an_empty_file_is_refused() -> None:
    with pytest.raises(BadRequest, match="no rows"):
        parse_csv(HEADER, NOW)


async def test_an_import_is_all_or_nothing_in_the_database(service: Service) -> None:
    await service.registry.import_identities(ADMIN, parse_csv(rows(3), NOW))
    changed = rows(5).replace("Søren 1,", "Sørine 1,")
    with pytest.raises(ImportRejected) as rejected:
        await service.registry.import_identities(ADMIN, parse_csv(changed, NOW))
    assert [e.line for e in rejected.value.errors] == [3]
    assert len(await service.registry.list_identities()) == 3


async def test_ten_thousand_rows_import_with_their_audit_events(service: Service) -> None:
    """Correctness at size; tools/bench_import.py prints how long it takes."""
    async with service.store.read() as tx:
        before = (await tx.audit_chain_head()).seq
    result = await service.registry.import_identities(ADMIN, parse_csv(rows(10_000), NOW))
    assert len(result.created) == 10_000
    async with service.store.read() as tx:
        assert len(await tx.list_identities(limit=20_000)) == 10_000
        # One event per identity, and the one that made them all active together.
        assert (await tx.audit_chain_head()).seq - before == 10_001
        [completed] = await tx.list_audit(action="import.completed")
    assert completed.details["identities"] == "10000"
    again = await service.registry.import_identities(ADMIN, parse_csv(rows(10_000), NOW))
    assert (len(again.created), len(again.existing)) == (0, 10_000)


async def test_a_staged_import_is_invisible_until_its_last_transaction(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows go in a chunk at a time; until the end nobody sees or uses any of them."""
    seen_while_importing: list[int] = []
    real = StoreTx.activate_staged

    async def look_first(self: StoreTx, *args: Any) -> int:
        async with service.store.read() as tx:
            seen_while_importing.append(len(await tx.list_identities(limit=5000)))
        return await real(self, *args)

    monkeypatch.setattr(StoreTx, "activate_staged", look_first)
    result = await service.registry.import_identities(
        ADMIN, parse_csv(rows(1200), NOW), place_orders=True
    )
    assert seen_while_importing == [0]
    assert len(await service.registry.list_identities(limit=5000)) == 1200
    assert {service.registry.order_state(p.order) for p in result.orders} == {OrderState.PENDING}
    stored = await service.registry.get_order(result.orders[0].order.reference)
    assert stored.status is OrderStatus.PENDING


async def test_an_import_that_fails_half_way_leaves_nothing_behind(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = StoreTx.insert_orders
    calls = 0

    async def fail_on_the_third_chunk(self: StoreTx, orders: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OSError("disk full")
        await real(self, orders)

    monkeypatch.setattr(StoreTx, "insert_orders", fail_on_the_third_chunk)
    with pytest.raises(OSError, match="disk full"):
        await service.registry.import_identities(
            ADMIN, parse_csv(rows(1200), NOW), place_orders=True
        )
    async with service.store.read() as tx:
        assert await tx.list_identities(status=IdentityStatus.STAGED, limit=5000) == []
        assert await tx.list_orders(limit=5000) == []
        [abandoned] = await tx.list_audit(action="import.abandoned")
    assert abandoned.details["identities_removed"] == "1000"


async def test_what_an_import_that_died_staged_is_removed_later(
    service: Service, clock: SettableClock
) -> None:
    staged = dataclasses.replace(
        parse_csv(rows(1), clock.now())[0].identity, status=IdentityStatus.STAGED
    )
    async with service.store.write() as tx:
        await tx.insert_identities([staged])
    assert await service.registry.remove_stale_imports(dt.timedelta(hours=1)) == 0
    clock.advance(dt.timedelta(hours=2))
    assert await service.registry.remove_stale_imports(dt.timedelta(hours=1)) == 1
    async with service.store.read() as tx:
        assert await tx.get_identity(staged.id) is None
