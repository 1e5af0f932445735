"""The audit trail: append-only, hash-chained, verifiable, exportable, free of secrets."""

from __future__ import annotations

import asyncio
import dataclasses
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

from est_ca.audit import (
    GENESIS_HASH,
    SERVICE,
    AuditEvent,
    AuditSeal,
    ChainReport,
    Outcome,
    chain_hash,
)
from est_ca.errors import ConfigurationError
from est_ca.registration.codes import new_key
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


KEY = new_key()


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = Store(database_url, seal=AuditSeal(KEY))
    await opened.migrate()
    await opened.anchor_audit(fresh_key=True)
    yield opened
    await opened.close()


async def verify(store: Store) -> ChainReport:
    return await store.verify_audit()


async def tamper(store: Store, statement: str, **values: object) -> None:
    """What an intruder with database rights does: switch the guard off, then edit."""
    async with store.write() as tx:
        if store.is_sqlite:
            await tx._conn.execute(text("DROP TRIGGER IF EXISTS audit_events_no_update"))
            await tx._conn.execute(text("DROP TRIGGER IF EXISTS audit_events_no_delete"))
        else:
            await tx._conn.execute(text("ALTER TABLE audit_events DISABLE TRIGGER USER"))
        await tx._conn.execute(text(statement), values)


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
    store = Store(database_url, seal=AuditSeal(KEY))
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
        await store.anchor_audit(fresh_key=True)
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
    assert run_cli(data, "init").returncode == 0
    registered = run_cli(data, "organisation", "create", "--cvr", "99999999", "--name", "ÆØÅ")
    assert registered.returncode == 0, registered.stderr
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
    identity = json.loads(created.stdout)["id"]
    order = run_cli(data, "order", "create", identity, "--json")
    code = json.loads(order.stdout)["one_time_code"]
    verified = run_cli(data, "audit", "verify")
    assert (verified.returncode, verified.stdout.strip()) == (
        0,
        "audit chain intact and sealed: 4 events",
    )
    exported = [json.loads(line) for line in run_cli(data, "audit", "export").stdout.splitlines()]
    assert [(e["seq"], e["action"]) for e in exported] == [
        (1, "service_certificate.issued"),  # `init`: the listener's certificate, from the CA
        (2, "organisation.created"),
        (3, "identity.created"),
        (4, "order.created"),
    ]
    assert exported[3]["prev_hash"] == exported[2]["hash"]
    assert code not in json.dumps(exported)
    later = run_cli(data, "audit", "export", "--after", "3").stdout.splitlines()
    assert [json.loads(line)["seq"] for line in later] == [4]

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


# -- tamper evidence against someone who can write the database ----------------------------------


async def test_cutting_the_last_events_and_rewriting_the_head_is_found(store: Store) -> None:
    async with store.write() as tx:
        await tx.append_audits([event(n) for n in range(10)])
    async with store.read() as tx:
        rows = [row async for row in tx.audit_chain()]
    seventh = rows[6]
    await tamper(store, "DELETE FROM audit_events WHERE seq > 7")
    await tamper(
        store, "UPDATE audit_chain SET seq = 7, hash = :hash WHERE id = 1", hash=seventh.hash
    )
    report = await verify(store)
    assert not report.intact
    assert report.problem is not None
    assert "not sealed by the audit key" in report.problem


async def test_an_event_edited_and_the_chain_recomputed_without_the_key_is_found(
    store: Store,
) -> None:
    async with store.write() as tx:
        await tx.append_audits([event(n) for n in range(10)])
    async with store.read() as tx:
        rows = [row async for row in tx.audit_chain()]
    # The intruder changes event 6 and recomputes every hash after it, and the head.
    edited = dataclasses.replace(rows[5].event, reason="nothing happened")
    previous = rows[4].hash
    for row in rows[5:]:
        content = edited if row.seq == 6 else row.event
        digest = chain_hash(previous, row.seq, content)
        await tamper(
            store,
            "UPDATE audit_events SET reason = :reason, prev_hash = :previous, hash = :hash "
            "WHERE seq = :seq",
            reason=content.reason,
            previous=previous,
            hash=digest,
            seq=row.seq,
        )
        previous = digest
    await tamper(store, "UPDATE audit_chain SET hash = :hash WHERE id = 1", hash=previous)
    report = await verify(store)
    assert not report.intact
    assert report.seq == 6
    assert report.problem is not None
    assert "not sealed by the audit key" in report.problem


async def test_events_from_before_sealing_are_covered_by_the_anchor(database_url: str) -> None:
    store = Store(database_url, seal=AuditSeal(KEY))
    try:
        await store.migrate("0004")
        previous = GENESIS_HASH
        async with store.write() as tx:  # what a version without the audit key wrote
            for seq in range(1, 4):
                digest = chain_hash(previous, seq, event(seq))
                await tx._conn.execute(
                    text(
                        "INSERT INTO audit_events (seq, prev_hash, hash, at, action, outcome, "
                        "actor, reason, details) VALUES (:seq, :previous, :hash, :at, "
                        "'test.event', 'success', 'service:est-ca', :reason, :details)"
                    ),
                    {
                        "seq": seq,
                        "previous": previous,
                        "hash": digest,
                        "at": NOW,
                        "reason": f"event {seq}",
                        "details": json.dumps(dict(event(seq).details)),
                    },
                )
                previous = digest
            await tx._conn.execute(
                text("UPDATE audit_chain SET seq = 3, hash = :hash"), {"hash": previous}
            )
        await store.migrate()
        await store.anchor_audit(fresh_key=True)
        async with store.write() as tx:
            await tx.append_audit(event(99))
        assert (await verify(store)).intact
        await tamper(store, "UPDATE audit_events SET reason = 'edited' WHERE seq = 2")
        report = await verify(store)
        assert (report.intact, report.seq) == (False, 2)
    finally:
        await store.close()


async def test_another_key_does_not_confirm_the_anchor_and_may_not_write(store: Store) -> None:
    async with store.write() as tx:
        await tx.append_audits([event(n) for n in range(3)])
    impostor = Store(store.url, seal=AuditSeal(new_key()))
    try:
        with pytest.raises(ConfigurationError, match="not the key the trail was sealed with"):
            await impostor.anchor_audit(fresh_key=False)
        report = await impostor.verify_audit()
        assert not report.intact
    finally:
        await impostor.close()


async def test_seals_removed_to_have_a_rewritten_trail_sealed_anew_stop_the_start(
    store: Store,
) -> None:
    async with store.write() as tx:
        await tx.append_audits([event(n) for n in range(3)])
    await tamper(store, "UPDATE audit_events SET mac = NULL")
    await tamper(store, "UPDATE audit_chain SET anchor_seq = NULL, anchor_mac = NULL, mac = NULL")
    with pytest.raises(ConfigurationError, match="no anchor, although the audit key exists"):
        await store.anchor_audit(fresh_key=False)
    report = await verify(store)
    assert report.problem is not None
    assert "no anchor" in report.problem
