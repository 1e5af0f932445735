"""The audit trail: append-only, hash-chained, verifiable, exportable, free of secrets."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from est_ca.audit import SERVICE, AuditEvent, ChainReport, ChainVerifier, Outcome
from est_ca.store.store import Store

NOW = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)


def event(number: int) -> AuditEvent:
    return AuditEvent(
        action="test.event",
        outcome=Outcome.SUCCESS,
        actor=SERVICE,
        at=NOW,
        reason=f"event {number}",
        details={"n": str(number), "name": "Søren Ærø"},
    )


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = Store(database_url)
    await opened.migrate()
    yield opened
    await opened.close()


async def verify(store: Store) -> ChainReport:
    verifier = ChainVerifier()
    async with store.read() as tx:
        async for row in tx.audit_chain():
            if not verifier.add(row):
                break
        head = await tx.audit_chain_head()
    return verifier.finish(*head)


async def tamper(store: Store, statement: str) -> None:
    """What an intruder with database rights does: switch the guard off, then edit."""
    async with store.write() as tx:
        if store.is_sqlite:
            await tx._conn.execute(text("DROP TRIGGER audit_events_no_update"))
            await tx._conn.execute(text("DROP TRIGGER audit_events_no_delete"))
        else:
            await tx._conn.execute(text("ALTER TABLE audit_events DISABLE TRIGGER USER"))
        await tx._conn.execute(text(statement))


async def test_concurrent_appends_form_one_unbroken_chain(store: Store) -> None:
    async def append(number: int) -> None:
        async with store.write() as tx:
            await tx.append_audit(event(number))

    await asyncio.gather(*(append(n) for n in range(40)))
    async with store.write() as tx:
        await tx.append_audits([event(n) for n in range(40, 60)])
    report = await verify(store)
    assert report.intact
    assert report.checked == 60


async def test_updating_or_deleting_an_event_is_refused_by_the_database(store: Store) -> None:
    async with store.write() as tx:
        await tx.append_audit(event(1))
    for statement in ("UPDATE audit_events SET reason = 'edited'", "DELETE FROM audit_events"):
        with pytest.raises(DBAPIError, match="append-only"):
            async with store.write() as tx:
                await tx._conn.execute(text(statement))


async def test_a_modified_event_is_found_by_its_position(store: Store) -> None:
    async with store.write() as tx:
        await tx.append_audits([event(n) for n in range(10)])
    await tamper(store, "UPDATE audit_events SET reason = 'nothing happened' WHERE seq = 6")
    report = await verify(store)
    assert (report.intact, report.seq, report.checked) == (False, 6, 5)
    assert report.problem == "the event was modified after it was written"


async def test_a_removed_event_is_found(store: Store) -> None:
    async with store.write() as tx:
        await tx.append_audits([event(n) for n in range(10)])
    await tamper(store, "DELETE FROM audit_events WHERE seq = 4")
    report = await verify(store)
    assert (report.seq, report.problem) == (4, "event 4 is missing")


async def test_events_removed_from_the_end_are_found(store: Store) -> None:
    async with store.write() as tx:
        await tx.append_audits([event(n) for n in range(10)])
    await tamper(store, "DELETE FROM audit_events WHERE seq > 7")
    report = await verify(store)
    assert not report.intact
    assert report.problem == "the chain ends at 7, its head says 10"


async def test_a_rewritten_link_is_found(store: Store) -> None:
    async with store.write() as tx:
        await tx.append_audits([event(n) for n in range(5)])
    await tamper(store, "UPDATE audit_events SET prev_hash = hash WHERE seq = 3")
    report = await verify(store)
    assert (report.seq, report.problem) == (3, "the link to the previous event is broken")


async def test_events_written_before_the_chain_existed_are_chained_by_the_migration(
    database_url: str,
) -> None:
    store = Store(database_url)
    try:
        await store.migrate("0002")
        async with store.write() as tx:
            for number in range(3):
                await tx._conn.execute(
                    text(
                        "INSERT INTO audit_events (at, action, outcome, actor, details) "
                        "VALUES (:at, 'old.event', 'success', 'service:est-ca', :details)"
                    ),
                    {"at": NOW, "details": json.dumps({"n": str(number)})},
                )
        await store.migrate()
        async with store.write() as tx:
            await tx.append_audit(event(99))
        report = await verify(store)
        assert (report.intact, report.checked) == (True, 4)
    finally:
        await store.close()


def run_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "est_ca", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "EST_CA_DATA_DIR": str(data_dir)},
    )


def test_the_cli_verifies_exports_and_reports_tampering(tmp_path: Path) -> None:
    data = tmp_path / "data"
    created = run_cli(
        data,
        "identity",
        "create",
        "--type",
        "system",
        "--organisation",
        "ÆØÅ",
        "--cvr",
        "99999999",
        "--display-name",
        "svc",
        "--json",
    )
    identity = json.loads(created.stdout)[0]["id"]
    order = run_cli(data, "order", "create", identity, "--json")
    code = json.loads(order.stdout)[0]["one_time_code"]
    verified = run_cli(data, "audit", "verify")
    assert (verified.returncode, verified.stdout.strip()) == (0, "audit chain intact: 2 events")
    exported = [json.loads(line) for line in run_cli(data, "audit", "export").stdout.splitlines()]
    assert [(e["seq"], e["action"]) for e in exported] == [
        (1, "identity.created"),
        (2, "order.created"),
    ]
    assert exported[1]["prev_hash"] == exported[0]["hash"]
    assert code not in json.dumps(exported)
    later = run_cli(data, "audit", "export", "--after", "1").stdout.splitlines()
    assert [json.loads(line)["seq"] for line in later] == [2]

    database = sqlite3.connect(data / "est-ca.db")
    database.execute("DROP TRIGGER audit_events_no_update")
    database.execute("UPDATE audit_events SET actor = 'admin:someone-else' WHERE seq = 1")
    database.commit()
    database.close()
    broken = run_cli(data, "audit", "verify")
    assert broken.returncode == 1
    assert broken.stderr.strip() == (
        "est-ca: audit chain broken at event 1: the event was modified after it was written "
        "(0 events before it verify)"
    )
