"""The one module that speaks SQL.

`Store.read()` and `Store.write()` open a transaction and hand out a `StoreTx` whose methods are
the only queries the service runs. Domain code composes them inside one transaction when a
change and its audit event must land together. Database errors the domain must act on are
translated here into est_ca.errors (a duplicate key is `AlreadyExists`); sqlalchemy's
exceptions do not leave this module.

Concurrency rules, the same on SQLite and PostgreSQL:
- state changes are conditional UPDATEs (`... WHERE status = 'pending'`), and the row count
  says who won, so two requests racing for one order cannot both succeed;
- rows that a decision reads and then changes are read with SELECT ... FOR UPDATE (PostgreSQL
  locks the row; SQLite ignores it, its write transactions are serialised by BEGIN IMMEDIATE).
On SQLite one process's writers also queue on an asyncio lock, which is fairer and faster than
SQLite's sleeping busy handler; the busy timeout then only covers other processes (the CLI,
the other workers of `serve --workers N`).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import fcntl
import hashlib
import json
import os
import time
import uuid
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterator,
    Mapping,
    Sequence,
)
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar, cast

import asyncpg
import structlog
from alembic import command
from alembic.config import Config
from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    Table,
    case,
    create_engine,
    event,
    func,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine, Row, make_url
from sqlalchemy.exc import IntegrityError, InvalidatePoolError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from est_ca.admin.access import (
    AdministrationGrant,
    ApiToken,
    CertificateLink,
    IdmStanding,
    Scope,
)
from est_ca.audit import (
    GENESIS_HASH,
    Actor,
    AuditEvent,
    AuditSeal,
    ChainedEvent,
    ChainHead,
    ChainReport,
    ChainVerifier,
    Outcome,
    chain_hash,
)
from est_ca.ca.certificates import (
    CertificateRecord,
    CertificateStatus,
    KeyBinding,
    KeyId,
    Serial,
    several_issuers,
)
from est_ca.errors import AlreadyExists, ConfigurationError
from est_ca.registration.approvals import ORDER_CANCELLED, EnrollmentRequest, RequestStatus
from est_ca.registration.identities import Identity, IdentityStatus, IdentityType
from est_ca.registration.orders import Order, OrderState, OrderStatus
from est_ca.registration.organisations import Organisation, OrganisationStatus
from est_ca.revocation.reasons import RevocationReason
from est_ca.revocation.state import (
    PublishedCrl,
    RecordedResponder,
    RevocationState,
    RevokedEntry,
    StoredOcspResponse,
)
from est_ca.store.schema import (
    AdministrationGrantRow,
    ApiTokenRow,
    AuditChainRow,
    AuditEventRow,
    CertificateRow,
    ConsoleSessionRow,
    EnrollmentRequestRow,
    IdentityRow,
    OcspResponderRow,
    OcspResponseRow,
    OrderRow,
    OrganisationRow,
    RevocationStateRow,
    ServiceCertificateRow,
    SourceFailureRow,
    SubscriberKeyRow,
    UtcDateTime,
)
from est_ca.workers import chunks

_log = structlog.get_logger(__name__)
T = TypeVar("T")

IDENTITIES = cast(Table, IdentityRow.__table__)
ORGANISATIONS = cast(Table, OrganisationRow.__table__)
# An identity as the domain sees it: with its organisation's registered name.
_IDENTITY = select(IDENTITIES, ORGANISATIONS.c.name.label("organisation_name")).join_from(
    IDENTITIES, ORGANISATIONS, ORGANISATIONS.c.cvr == IDENTITIES.c.cvr
)
REVOCATION_STATE = cast(Table, RevocationStateRow.__table__)
OCSP_RESPONDERS = cast(Table, OcspResponderRow.__table__)
OCSP_RESPONSES = cast(Table, OcspResponseRow.__table__)
SERVICE_CERTIFICATES = cast(Table, ServiceCertificateRow.__table__)
ORDERS = cast(Table, OrderRow.__table__)
CERTIFICATES = cast(Table, CertificateRow.__table__)
REQUESTS = cast(Table, EnrollmentRequestRow.__table__)
# A request as the domain sees it: with its order's reference.
_REQUEST = select(REQUESTS, ORDERS.c.reference.label("order_reference")).join_from(
    REQUESTS, ORDERS, ORDERS.c.id == REQUESTS.c.order_id
)
AUDIT_EVENTS = cast(Table, AuditEventRow.__table__)
AUDIT_CHAIN = cast(Table, AuditChainRow.__table__)
API_TOKENS = cast(Table, ApiTokenRow.__table__)
SUBSCRIBER_KEYS = cast(Table, SubscriberKeyRow.__table__)
SOURCE_FAILURES = cast(Table, SourceFailureRow.__table__)
CONSOLE_SESSIONS = cast(Table, ConsoleSessionRow.__table__)
ADMINISTRATION_GRANTS = cast(Table, AdministrationGrantRow.__table__)
# Certificates that exist for someone: a reservation may still become one; abandoned never will.
_CERTIFYING = (
    str(CertificateStatus.RESERVED),
    str(CertificateStatus.ISSUED),
    str(CertificateStatus.REVOKED),
)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Any constant works; it keeps two instances from migrating one PostgreSQL database at once.
_MIGRATION_LOCK_ID = 0x657374_6361
# What a duplicate key is called: PostgreSQL's SQLSTATE unique_violation (asyncpg's `sqlstate`),
# SQLite's extended result codes (a duplicate primary key is the same thing to the caller).
_PG_UNIQUE_VIOLATION = "23505"
_SQLITE_UNIQUE = frozenset({"SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"})
# What a committed revocation notifies on PostgreSQL (payload: the issuer's key id), so other
# instances need not wait for their next poll to stop saying "good".
REVOCATION_CHANNEL = "est_ca_revocation"
# What asyncpg raises when the server or the connection to it is gone.
_CONNECTION_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


def _ping_when_idle(engine: AsyncEngine, idle_seconds: float) -> None:
    """Ping a pooled PostgreSQL connection at checkout only when it has been idle longer than
    `idle_seconds` (pool_pre_ping pings every checkout: three round trips per transaction).

    A failed ping raises InvalidatePoolError, which makes the pool invalidate every connection
    made before now (the database restarted, most likely) and draw a fresh one."""
    pool = engine.sync_engine.pool

    @event.listens_for(pool, "connect")
    def _connected(_dbapi: Any, record: ConnectionPoolEntry) -> None:
        record.info["est_ca_idle_since"] = time.monotonic()

    @event.listens_for(pool, "checkin")
    def _checked_in(_dbapi: Any, record: ConnectionPoolEntry) -> None:
        record.info["est_ca_idle_since"] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _checked_out(dbapi: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        idle_since = record.info.get("est_ca_idle_since")
        if idle_since is not None and time.monotonic() - idle_since <= idle_seconds:
            return
        if not engine.sync_engine.dialect._do_ping_w_event(dbapi):
            raise InvalidatePoolError("a pooled connection failed its ping")


def lock_key(name: str) -> int:
    """The 64-bit advisory lock key of a named lock (PostgreSQL keys locks by integers)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def _is_duplicate_key(error: IntegrityError) -> bool:
    driver_error = error.orig
    return (
        getattr(driver_error, "sqlstate", None) == _PG_UNIQUE_VIOLATION
        or getattr(driver_error, "sqlite_errorname", None) in _SQLITE_UNIQUE
    )


class Store:
    """A database connection pool plus the transactions the domain runs on it."""

    def __init__(self, url: str, *, seal: AuditSeal, ping_idle_seconds: float = 1.0) -> None:
        self.url = url
        self.seal = seal
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self._writer = _sqlite_engine(url, immediate=True)
            self._reader = _sqlite_engine(url, immediate=False)
        else:
            # No ping per checkout (pool_pre_ping's costs three round trips: BEGIN, a query,
            # ROLLBACK): `_ping_when_idle` pings only a connection idle for longer than
            # `ping_idle_seconds`, so one the database dropped while the service was quiet is
            # replaced before a request uses it. One dropped while in use (a restart under
            # load) fails that request (503), and SQLAlchemy's disconnect detection
            # invalidates the whole pool, so the next checkouts connect anew.
            self._writer = create_async_engine(url, pool_size=10, max_overflow=10)
            _ping_when_idle(self._writer, ping_idle_seconds)
            self._reader = self._writer
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        # SQLite: transactions run as one step (`in_transaction`) go to a thread with a plain
        # sqlite3 connection, the writer's thread alone (one writer at a time anyway).
        self._steps: _SqliteSteps | None = _SqliteSteps(url) if self.is_sqlite else None
        # SQLite: an exclusive section is one of this process, and of every process on the
        # file (`serve --workers N`) through a lock file beside it.
        self._local_locks: dict[str, asyncio.Lock] = {}
        self._lock_files = _sqlite_lock_files(url) if self.is_sqlite else None

    def _asyncpg_dsn(self) -> str:
        return make_url(self.url).set(drivername="postgresql").render_as_string(False)

    async def listen(self, channel: str, callback: Callable[[], None]) -> Listening | None:
        """Call `callback` on the event loop whenever a transaction that notified `channel`
        commits, from any process (PostgreSQL LISTEN, on a connection of its own). None on
        SQLite, which has no notifications: callers poll."""
        if self.is_sqlite:
            return None
        try:
            connection = await asyncpg.connect(self._asyncpg_dsn(), timeout=5)
            await connection.add_listener(channel, lambda *_: callback())
        except _CONNECTION_ERRORS as exc:
            _log.warning("cannot listen for notifications; polling only", error=str(exc))
            return None
        return Listening(connection)

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[None]:
        """One holder of `name` at a time across every instance on this database.

        PostgreSQL: a transaction-scoped advisory lock, so it ends with the holder however that
        ends (an error, a lost connection, a killed process); SQLite: within this process, and
        across the processes on the database file by a flock on a lock file beside it (which
        ends with its holder's process too)."""
        if self.is_sqlite:
            async with self._local_locks.setdefault(name, asyncio.Lock()):
                if self._lock_files is None:
                    yield
                    return
                with await _FileLock.acquire_async(self._lock_files(name)):
                    yield
            return
        async with self._writer.begin() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key(name)})
            yield

    def lease(self, name: str) -> Lease:
        """A lease on work that one instance of the cluster does for all (see Lease)."""
        if self.is_sqlite:
            lock_file = self._lock_files(name) if self._lock_files is not None else None
            return Lease(None, lock_key(name), name, lock_file=lock_file)
        return Lease(self._asyncpg_dsn(), lock_key(name), name)

    async def close(self) -> None:
        if self._steps is not None:
            await self._steps.close()
        await self._writer.dispose()
        if self._reader is not self._writer:
            await self._reader.dispose()

    async def migrate(self, revision: str = "head", *, issuer_key_id: KeyId | None = None) -> None:
        """Bring the schema to the newest migration, or `revision` (idempotent).

        `issuer_key_id` is the issuing CA's: migration 0007 records it as the issuer of
        certificate rows that have no signed certificate to name their own."""
        async with self._writer.connect() as conn:
            if not self.is_sqlite:
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID}
                )
            await conn.run_sync(_upgrade, revision, issuer_key_id)
            await conn.commit()

    async def schema_revision(self) -> str | None:
        async with self._reader.connect() as conn:
            exists = await conn.run_sync(
                lambda sync: sync.dialect.has_table(sync, "alembic_version")
            )
            if not exists:
                return None
            result = await conn.execute(text("SELECT version_num FROM alembic_version"))
            return result.scalar_one_or_none()

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[StoreTx]:
        async with self._reader.begin() as conn:
            yield StoreTx(conn)

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[StoreTx]:
        """A write transaction. Its audit events are chained just before it commits (so the
        chain's head, which every writer needs, is the last lock taken and held briefly) and
        logged once it has committed.

        A duplicate key, met by a statement or at commit, is `AlreadyExists` (rolled back):
        the domain sees the error family, never sqlalchemy's. Other integrity errors are bugs,
        not conflicts, and stay what they are (a 500 with nothing said)."""
        try:
            async with contextlib.AsyncExitStack() as stack:
                if self._write_lock is not None:
                    await stack.enter_async_context(self._write_lock)
                conn = await stack.enter_async_context(self._writer.begin())
                tx = StoreTx(conn)
                yield tx
                first = await tx.chain_pending_audit(self.seal)
        except IntegrityError as exc:
            if _is_duplicate_key(exc):
                raise AlreadyExists("that record exists already (perhaps made meanwhile)") from exc
            raise
        if len(tx.audit_events) > BULK_AUDIT:
            log_bulk_audit(tx.audit_events, first)
        else:
            for offset, audit_event in enumerate(tx.audit_events):
                audit_event.log(first + offset)

    async def in_transaction(
        self, step: Callable[[StoreTx], Awaitable[T]], *, write: bool = True
    ) -> T:
        """Run `step` as one transaction (`write()`'s, or `read()`'s with `write=False`).

        `step` may await only the StoreTx it is given: on SQLite it runs on a thread of its own
        over a plain sqlite3 connection, in one hand-off, instead of handing every statement
        (cursor, execute, fetch, close: four hand-offs each) to aiosqlite's thread and back
        while the event loop waits for the GIL. On PostgreSQL it is `write()`/`read()` as
        they are (asyncpg needs no thread). The rules are those of `write()`: the same
        transaction boundaries, BEGIN IMMEDIATE, the audit chained before the commit, a
        duplicate key as `AlreadyExists`, events logged once committed."""
        if self._steps is None:
            if not write:
                return await self._autocommit_read(step)
            async with self.write() as tx:
                return await step(tx)
        if not write:
            read: T = await self._steps.run(self._steps.reader, self._step, step, None)
            return read
        assert self._write_lock is not None
        try:
            outcome: tuple[T, list[AuditEvent], int] = await self._steps.write(
                self._write_lock, self._write_step, step, self.seal
            )
        except IntegrityError as exc:
            if _is_duplicate_key(exc):
                raise AlreadyExists("that record exists already (perhaps made meanwhile)") from exc
            raise
        result, events, first = outcome
        for offset, audit_event in enumerate(events):
            audit_event.log(first + offset)
        return result

    async def _autocommit_read(self, step: Callable[[StoreTx], Awaitable[T]]) -> T:
        """PostgreSQL: a read step's statements without BEGIN and COMMIT (two round trips).

        The same reads: under READ COMMITTED (PostgreSQL's default, which the store's
        locking, SELECT ... FOR UPDATE then write, assumes throughout) every statement of a
        transaction sees what was committed when that statement began, as in autocommit.
        Only for `in_transaction` steps, which neither stream (a server-side cursor needs a
        transaction) nor lock rows."""
        async with self._reader.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            return await step(StoreTx(conn))

    def _step(self, connection: Connection, step: Callable[[StoreTx], Awaitable[T]], _: None) -> T:
        """Blocking: a read step on a sqlite3 connection (a thread of `_SqliteSteps`)."""
        return _completed(step(StoreTx(cast(AsyncConnection, _SyncConnection(connection)))))

    def _write_step(
        self, connection: Connection, step: Callable[[StoreTx], Awaitable[T]], seal: AuditSeal
    ) -> tuple[T, list[AuditEvent], int]:
        """Blocking: a write step and its audit chaining, in the one transaction."""
        tx = StoreTx(cast(AsyncConnection, _SyncConnection(connection)))
        result = _completed(step(tx))
        first = _completed(tx.chain_pending_audit(seal))
        return result, tx.audit_events, first

    async def append_audit(self, audit_event: AuditEvent) -> None:
        """Record one event in a transaction of its own (refusals: nothing else changes)."""
        async with self.write() as tx:
            await tx.append_audit(audit_event)

    async def verify_audit(self) -> ChainReport:
        """Walk the whole audit chain: every hash, link and seal, and the head."""
        async with self.read() as tx:
            verifier = ChainVerifier(self.seal, await tx.audit_chain_head())
            async for row in tx.audit_chain():
                if not verifier.add(row):
                    break
        return verifier.finish()

    async def anchor_audit(self, *, fresh_key: bool) -> None:
        """Make sure the audit chain is sealed with this store's key from some point on.

        A chain without an anchor is anchored at its current head, but only with a key that
        was created just now (the first start of a version with sealing, or of a new
        deployment): otherwise someone may have removed the seals to have a rewritten trail
        sealed anew. An anchor that this key does not confirm means the key file is not the
        one the trail was sealed with; neither may start.
        """
        async with self.write() as tx:
            head = await tx.audit_chain_head(for_update=True)
            if head.anchor_seq is None:
                if not fresh_key:
                    raise ConfigurationError(
                        "the audit trail has no anchor, although the audit key exists: its "
                        "seals were removed, or a first start was interrupted; run "
                        "`est-ca audit verify` and see docs/architecture.md (audit trail)"
                    )
                await tx.anchor_audit_chain(self.seal, head)
                return
            anchored_at = await tx.audit_hash_at(head.anchor_seq)
            if anchored_at is None or not self.seal.confirms_anchor(head, anchored_at):
                raise ConfigurationError(
                    "the audit key does not confirm the audit trail's anchor: this is not the "
                    "key the trail was sealed with (every instance needs the same key file), "
                    "or the trail was rewritten; run `est-ca audit verify`"
                )


class Listening:
    """A LISTEN connection; `alive` turns false when it is lost (the caller listens anew)."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection

    @property
    def alive(self) -> bool:
        return not self._connection.is_closed()

    async def close(self) -> None:
        with contextlib.suppress(*_CONNECTION_ERRORS):
            await self._connection.close(timeout=5)


class Lease:
    """Work one instance does for the whole cluster, held by at most one at a time.

    On PostgreSQL the lease is a session-level advisory lock on a connection of its own: the
    server releases it when that connection ends, so when the holder dies (even kill -9) the
    next instance to ask takes it over. A holder that loses its connection stops holding at
    once (it could no longer tell whether another took over). On SQLite the lease is the
    same thing as a lock file beside the database (flock, which the kernel releases when the
    holder dies): one of the worker processes of `serve --workers N` holds it; an in-memory
    database has one process, which always holds it."""

    def __init__(
        self, dsn: str | None, key: int, name: str, *, lock_file: Path | None = None
    ) -> None:
        self._dsn = dsn
        self._key = key
        self._name = name
        self._connection: asyncpg.Connection | None = None
        self._held = False
        self._lock_file = lock_file
        self._file_lock: _FileLock | None = None

    async def held(self) -> bool:
        """Whether this instance holds the lease now, taking it when it is free."""
        if self._dsn is None:
            if self._lock_file is None:
                return True
            if self._file_lock is None:
                try:
                    self._file_lock = _FileLock.try_acquire(self._lock_file)
                except OSError as exc:  # out of descriptors in a flood: ask again next round
                    _log.warning("lease not asked for", lease=self._name, error=exc.strerror)
                    return False
                if self._file_lock is not None:
                    _log.info("lease taken", lease=self._name)
            return self._file_lock is not None
        try:
            if self._connection is None or self._connection.is_closed():
                self._held = False
                self._connection = await asyncpg.connect(self._dsn, timeout=5)
            if self._held:
                await self._connection.fetchval("SELECT 1", timeout=5)
                return True
            self._held = bool(
                await self._connection.fetchval(
                    "SELECT pg_try_advisory_lock($1)", self._key, timeout=5
                )
            )
        except _CONNECTION_ERRORS as exc:
            if self._held:
                _log.warning("lease lost", lease=self._name, error=str(exc))
            await self.release()
            return False
        if self._held:
            _log.info("lease taken", lease=self._name)
        return self._held

    async def release(self) -> None:
        if self._file_lock is not None:
            self._file_lock.release()
            self._file_lock = None
        connection, self._connection, self._held = self._connection, None, False
        if connection is not None:
            with contextlib.suppress(*_CONNECTION_ERRORS):
                await connection.close(timeout=5)


class _FileLock:
    """An exclusive flock on a file: held until released or until the process ends (the
    kernel releases it even after kill -9), so no holder outlives its process."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @classmethod
    def acquire(cls, path: Path) -> _FileLock:
        """Blocking until it is free: call on a thread."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        return cls(fd)

    @classmethod
    async def acquire_async(cls, path: Path) -> _FileLock:
        """`acquire` on a thread; a waiter cancelled meanwhile releases what the thread then
        takes, so a cancelled waiter never leaves the lock held."""
        waiting = asyncio.ensure_future(asyncio.to_thread(cls.acquire, path))
        try:
            return await asyncio.shield(waiting)
        except asyncio.CancelledError:
            waiting.add_done_callback(_release_taken)
            raise

    @classmethod
    def try_acquire(cls, path: Path) -> _FileLock | None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return cls(fd)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the only descriptor releases the flock
            self._fd = -1

    def __enter__(self) -> _FileLock:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


def _release_taken(waiting: asyncio.Future[_FileLock]) -> None:
    if not waiting.cancelled() and waiting.exception() is None:
        waiting.result().release()


def _sqlite_lock_files(url: str) -> Callable[[str], Path] | None:
    """Where the cross-process locks of a SQLite database file live: `<file>.lock-<key>`
    beside it (a name hashed, as PostgreSQL's advisory locks are). None for a database in
    memory, which one process alone can see."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    base = Path(database)

    def path(name: str) -> Path:
        return base.with_name(f"{base.name}.lock-{lock_key(name) & 0xFFFFFFFFFFFFFFFF:016x}")

    return path


def log_bulk_audit(events: Sequence[AuditEvent], first: int) -> None:
    """One log line for a bulk commit (an import's thousands of events): what and how many,
    and the chain positions, instead of thousands of lines rendered on the event loop."""
    actions = collections.Counter(event.action for event in events)
    _log.info(
        "audit",
        bulk=len(events),
        seq=f"{first}..{first + len(events) - 1}",
        actions=",".join(f"{action}={count}" for action, count in sorted(actions.items())),
        actor=str(events[0].actor),
        source=events[0].actor.source,
    )


def _completed(coroutine: Awaitable[T]) -> T:
    """The result of a coroutine that never suspends (StoreTx over `_SyncConnection`): one
    send runs it to the end. One that does suspend awaited something other than the store,
    which a step run on a thread must not: a bug, refused loudly."""
    assert isinstance(coroutine, Coroutine)
    try:
        coroutine.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    coroutine.close()
    raise RuntimeError("a store step awaited something other than its transaction")


class _SyncConnection:
    """What StoreTx uses of an AsyncConnection, over a blocking Connection: its awaitables
    complete at once (see `_completed`)."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self.dialect = connection.dialect

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        return self._connection.execute(statement, parameters)

    async def scalar(self, statement: Any, parameters: Any = None) -> Any:
        return self._connection.scalar(statement, parameters)


@dataclasses.dataclass(eq=False)
class _WriteStep:
    """One write step waiting for the writer: what to run, and where its outcome goes."""

    function: Callable[[Connection, Any, Any], Any]
    step: Any
    extra: Any
    future: asyncio.Future[Any]
    started: bool = False
    withdrawn: bool = False


class _SqliteSteps:
    """Blocking SQLite engines for transactions run as one step on a thread (readers on a
    few: WAL lets them read at once), and the writer, which commits in groups.

    SQLite has one writer, and every commit waits for an fsync (synchronous=FULL: a few
    milliseconds here), which serialised writers each paid alone. The write steps that
    queue while one group commits form the next group: one BEGIN IMMEDIATE, each step in a
    SAVEPOINT of its own (its error rolls back it alone, and it is refused as it would be in
    a transaction of its own), one COMMIT, and only then is any step's outcome handed back.
    So each step is still atomic and isolated (steps run one after another), and durable
    before anyone hears of it; a crash before the group's commit loses only steps nobody
    was told about. The same pragmas and BEGIN as the aiosqlite engines."""

    READERS = 4
    # Steps in one group at most: bounds how long the writer holds the database.
    GROUP = 64

    def __init__(self, url: str) -> None:
        plain = make_url(url).set(drivername="sqlite")
        self._write_engine = create_engine(
            plain, connect_args={"timeout": 30, "check_same_thread": False}, pool_size=1
        )
        self._read_engine = create_engine(
            plain,
            connect_args={"timeout": 30, "check_same_thread": False},
            pool_size=self.READERS,
        )
        _configure_sqlite(self._write_engine, immediate=True)
        _configure_sqlite(self._read_engine, immediate=False)
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sqlite-write")
        self.reader = concurrent.futures.ThreadPoolExecutor(
            self.READERS, thread_name_prefix="sqlite-read"
        )
        # The processes of `serve --workers N` on one file take turns at writing through a
        # lock file (blocking: the kernel wakes the next at once) instead of SQLite's busy
        # handler, which polls with sleeps of up to 100 ms while another process commits.
        lock_files = _sqlite_lock_files(url)
        self._turns = lock_files("sqlite-writer") if lock_files is not None else None
        self._queue: collections.deque[_WriteStep] = collections.deque()
        self._wake: asyncio.Event | None = None
        self._committer: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def run(
        self,
        executor: concurrent.futures.ThreadPoolExecutor,
        function: Callable[[Connection, Any, Any], T],
        step: Any,
        extra: Any,
    ) -> T:
        """`function(connection, step, extra)` in one read transaction on a reader thread."""

        def transaction() -> T:
            with self._read_engine.begin() as connection:
                return function(connection, step, extra)

        return await asyncio.get_running_loop().run_in_executor(executor, transaction)

    async def write(
        self,
        lock: asyncio.Lock,
        function: Callable[[Connection, Any, Any], T],
        step: Any,
        extra: Any,
    ) -> T:
        """`function(connection, step, extra)` as a write step of the next group (see the
        class). A caller cancelled before its step started withdraws it; once started, it
        waits for the group to end, so it never leaves a step running it does not know the
        outcome of."""
        loop = asyncio.get_running_loop()
        if self._committer is None or self._committer.done() or self._loop is not loop:
            self._loop = loop
            self._queue.clear()
            self._wake = asyncio.Event()
            self._committer = loop.create_task(self._commit_groups(lock))
        assert self._wake is not None
        queued = _WriteStep(function, step, extra, loop.create_future())
        self._queue.append(queued)
        self._wake.set()
        try:
            return cast(T, await asyncio.shield(queued.future))
        except asyncio.CancelledError:
            if not queued.started:
                queued.withdrawn = True
            else:
                with contextlib.suppress(BaseException):
                    await queued.future
            raise

    async def _commit_groups(self, lock: asyncio.Lock) -> None:
        """On the event loop: take what has queued as a group, and run it on the writer's
        thread under the process's write lock (which `Store.write()` takes too)."""
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                group: list[_WriteStep] = []
                while self._queue and len(group) < self.GROUP:
                    queued = self._queue.popleft()
                    if not queued.withdrawn:
                        queued.started = True
                        group.append(queued)
                if not group:
                    continue
                async with lock:
                    outcomes = await loop.run_in_executor(self._writer, self._group, group)
                for queued, (ok, value) in zip(group, outcomes, strict=True):
                    if queued.future.done():
                        continue
                    if ok:
                        queued.future.set_result(value)
                    else:
                        queued.future.set_exception(value)

    def _group(self, group: list[_WriteStep]) -> list[tuple[bool, Any]]:
        """Blocking: one transaction, a SAVEPOINT per step, one commit (see the class)."""
        outcomes: list[tuple[bool, Any]] = []
        try:
            with (
                self._writers_turn(),
                self._write_engine.connect() as connection,
                connection.begin(),
            ):
                for queued in group:
                    savepoint = connection.begin_nested()
                    try:
                        value = queued.function(connection, queued.step, queued.extra)
                    except BaseException as exc:
                        savepoint.rollback()
                        outcomes.append((False, exc))
                    else:
                        savepoint.commit()
                        outcomes.append((True, value))
        except BaseException as exc:
            return [(False, exc)] * len(group)
        return outcomes

    @contextlib.contextmanager
    def _writers_turn(self) -> Iterator[None]:
        """Blocking, on the writer's thread: this process's turn at the file (see __init__)."""
        if self._turns is None:
            yield
            return
        try:
            turn = _FileLock.acquire(self._turns)
        except OSError:  # out of descriptors: SQLite's own lock still keeps writes apart
            yield
            return
        with turn:
            yield

    async def close(self) -> None:
        if self._committer is not None and self._loop is asyncio.get_running_loop():
            self._committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._committer
        self._writer.shutdown(wait=True)
        self.reader.shutdown(wait=True)
        self._write_engine.dispose()
        self._read_engine.dispose()


def _sqlite_engine(url: str, *, immediate: bool) -> AsyncEngine:
    engine = create_async_engine(url, connect_args={"timeout": 30})
    _configure_sqlite(engine.sync_engine, immediate=immediate)
    return engine


def _configure_sqlite(engine: Engine, *, immediate: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # SQLAlchemy emits BEGIN itself (below), so SELECTs are inside transactions too.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=FULL",
            "PRAGMA foreign_keys=ON",
            "PRAGMA busy_timeout=30000",
        ):
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _upgrade(connection: Connection, revision: str, issuer_key_id: KeyId | None) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    if issuer_key_id is not None:
        config.attributes["issuer_key_id"] = issuer_key_id.hex
    command.upgrade(config, revision)


# Rows per statement in bulk inserts: each statement's parameters are prepared on the event
# loop, so a bulk import lets other requests in between chunks instead of stalling them.
INSERT_CHUNK = 500
# More audit events than this in one commit are chained on a thread and logged as one line.
BULK_AUDIT = 100


class StoreTx:
    """The queries, inside one open transaction."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn
        self.audit_events: list[AuditEvent] = []

    async def _insert_unless_present(self, table: Table, **values: object) -> None:
        """INSERT ... ON CONFLICT DO NOTHING, in the dialect of the database at hand."""
        insert = sqlite_insert if self._conn.dialect.name == "sqlite" else postgresql_insert
        await self._conn.execute(insert(table).values(**values).on_conflict_do_nothing())

    async def _insert_many(self, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        for chunk in chunks(rows, INSERT_CHUNK):
            await self._conn.execute(table.insert(), list(chunk))

    # -- organisations ----------------------------------------------------------------------

    async def insert_organisations(self, organisations: Sequence[Organisation]) -> None:
        await self._insert_many(
            ORGANISATIONS,
            [
                {
                    "cvr": organisation.cvr,
                    "name": organisation.name,
                    "email_domains": ",".join(organisation.email_domains),
                    "status": str(organisation.status),
                    "created_at": organisation.created_at,
                    "updated_at": organisation.created_at,
                }
                for organisation in organisations
            ],
        )

    async def update_organisation(self, organisation: Organisation, now: dt.datetime) -> None:
        await self._conn.execute(
            update(ORGANISATIONS)
            .where(ORGANISATIONS.c.cvr == organisation.cvr)
            .values(
                name=organisation.name,
                email_domains=",".join(organisation.email_domains),
                status=str(organisation.status),
                updated_at=now,
            )
        )

    async def get_organisation(self, cvr: str, *, for_update: bool = False) -> Organisation | None:
        query = select(ORGANISATIONS).where(ORGANISATIONS.c.cvr == cvr)
        if for_update:
            query = query.with_for_update()
        row = (await self._conn.execute(query)).one_or_none()
        return _organisation(row) if row is not None else None

    async def organisations_by_cvr(self, cvrs: Sequence[str]) -> dict[str, Organisation]:
        found: dict[str, Organisation] = {}
        wanted = sorted(set(cvrs))
        for chunk in chunks(wanted, INSERT_CHUNK):
            result = await self._conn.execute(
                select(ORGANISATIONS).where(ORGANISATIONS.c.cvr.in_(chunk))
            )
            found.update((row.cvr, _organisation(row)) for row in result)
        return found

    async def list_organisations(
        self,
        *,
        cvr: str | None = None,
        status: OrganisationStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Organisation]:
        query = _page(ORGANISATIONS, (ORGANISATIONS.c.cvr,), limit, offset, cvr=cvr, status=status)
        return [_organisation(row) for row in await self._conn.execute(query)]

    # -- identities -------------------------------------------------------------------------

    async def insert_identity(self, identity: Identity) -> None:
        await self.insert_identities([identity])

    async def insert_identities(self, identities: Sequence[Identity]) -> None:
        """Many at once (bulk import): executemany in chunks."""
        await self._insert_many(
            IDENTITIES,
            [
                {
                    "id": identity.id,
                    "type": str(identity.type),
                    "display_name": identity.display_name,
                    "cvr": identity.cvr,
                    "given_name": identity.given_name,
                    "surname": identity.surname,
                    "email": identity.email,
                    "status": str(identity.status),
                    "external_id": identity.external_id,
                    "created_at": identity.created_at,
                    "updated_at": identity.created_at,
                }
                for identity in identities
            ],
        )

    async def update_identity(self, identity: Identity, now: dt.datetime) -> None:
        await self._conn.execute(
            update(IDENTITIES)
            .where(IDENTITIES.c.id == identity.id)
            .values(
                display_name=identity.display_name,
                given_name=identity.given_name,
                surname=identity.surname,
                email=identity.email,
                updated_at=now,
            )
        )

    async def identities_by_external_id(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], Identity]:
        """Existing identities for (cvr, external_id) pairs, looked up in chunks."""
        found: dict[tuple[str, str], Identity] = {}
        wanted = sorted(set(keys))
        for chunk in chunks(wanted, INSERT_CHUNK):
            asked = set(chunk)
            external_ids = {external_id for _, external_id in chunk}
            result = await self._conn.execute(
                _IDENTITY.where(IDENTITIES.c.external_id.in_(external_ids))
            )
            for row in result:
                identity = _identity(row)
                assert identity.external_id is not None
                key = (identity.cvr, identity.external_id)
                if key in asked:
                    found[key] = identity
        return found

    async def set_identity_status(
        self, identity_id: uuid.UUID, status: IdentityStatus, now: dt.datetime
    ) -> bool:
        result = await self._conn.execute(
            update(IDENTITIES)
            .where(IDENTITIES.c.id == identity_id, IDENTITIES.c.status != str(status))
            .values(status=str(status), updated_at=now)
        )
        return result.rowcount == 1

    async def get_identity(
        self, identity_id: uuid.UUID, *, for_update: bool = False
    ) -> Identity | None:
        """`for_update` locks the row: issuance and disabling of one identity queue on it."""
        query = _IDENTITY.where(IDENTITIES.c.id == identity_id)
        if for_update:
            query = query.with_for_update(of=IDENTITIES)
        result = await self._conn.execute(query)
        row = result.one_or_none()
        return _identity(row) if row is not None else None

    async def identity_with_organisation(
        self, identity_id: uuid.UUID
    ) -> tuple[Identity, Organisation] | None:
        """The identity and its organisation in one query (an enrollment needs both)."""
        row = (
            await self._conn.execute(
                _IDENTITY.add_columns(
                    ORGANISATIONS.c.email_domains.label("organisation_email_domains"),
                    ORGANISATIONS.c.status.label("organisation_status"),
                    ORGANISATIONS.c.created_at.label("organisation_created_at"),
                ).where(IDENTITIES.c.id == identity_id)
            )
        ).one_or_none()
        if row is None:
            return None
        domains = row.organisation_email_domains.split(",")
        organisation = Organisation(
            cvr=row.cvr,
            name=row.organisation_name,
            email_domains=tuple(domain for domain in domains if domain),
            status=OrganisationStatus(row.organisation_status),
            created_at=row.organisation_created_at,
        )
        return _identity(row), organisation

    async def list_identities(
        self,
        *,
        type: IdentityType | None = None,
        cvr: str | None = None,
        status: IdentityStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Identity]:
        query = _page(
            IDENTITIES,
            (IDENTITIES.c.created_at, IDENTITIES.c.id),
            limit,
            offset,
            base=_IDENTITY,
            type=type,
            cvr=cvr,
            status=status,
        )
        if status is None:  # an import in progress shows when it is complete
            query = query.where(IDENTITIES.c.status != str(IdentityStatus.STAGED))
        return [_identity(row) for row in await self._conn.execute(query)]

    # -- bulk imports in stages ---------------------------------------------------------------

    async def activate_staged(
        self, identity_ids: Sequence[uuid.UUID], order_ids: Sequence[uuid.UUID], now: dt.datetime
    ) -> int:
        """Make an import's staged identities active and its orders pending; the number of
        identities made active (fewer than asked: its cleanup removed some)."""
        activated = 0
        for chunk in chunks(identity_ids, INSERT_CHUNK):
            result = await self._conn.execute(
                update(IDENTITIES)
                .where(
                    IDENTITIES.c.id.in_(chunk),
                    IDENTITIES.c.status == str(IdentityStatus.STAGED),
                )
                .values(status=str(IdentityStatus.ACTIVE), updated_at=now)
            )
            activated += result.rowcount
        for order_chunk in chunks(order_ids, INSERT_CHUNK):
            await self._conn.execute(
                update(ORDERS)
                .where(
                    ORDERS.c.id.in_(order_chunk),
                    ORDERS.c.status == str(OrderStatus.STAGED),
                )
                .values(status=str(OrderStatus.PENDING))
            )
        return activated

    async def delete_staged(self, identity_ids: Sequence[uuid.UUID]) -> int:
        """Remove what an unfinished import staged (its orders first); staged rows were never
        usable, so nothing else refers to them."""
        deleted = 0
        for chunk in chunks(identity_ids, INSERT_CHUNK):
            await self._conn.execute(
                ORDERS.delete().where(
                    ORDERS.c.identity_id.in_(chunk), ORDERS.c.status == str(OrderStatus.STAGED)
                )
            )
            result = await self._conn.execute(
                IDENTITIES.delete().where(
                    IDENTITIES.c.id.in_(chunk),
                    IDENTITIES.c.status == str(IdentityStatus.STAGED),
                )
            )
            deleted += result.rowcount
        return deleted

    async def stale_staged_identities(self, created_before: dt.datetime) -> list[uuid.UUID]:
        """Identities staged by imports that did not finish (their process died)."""
        result = await self._conn.execute(
            select(IDENTITIES.c.id).where(
                IDENTITIES.c.status == str(IdentityStatus.STAGED),
                IDENTITIES.c.created_at < created_before,
            )
        )
        return [row.id for row in result]

    # -- orders -----------------------------------------------------------------------------

    async def insert_order(self, order: Order, code_hash: str) -> None:
        await self.insert_orders([(order, code_hash)])

    async def insert_orders(self, orders: Sequence[tuple[Order, str]]) -> None:
        """Many orders with their code hashes at once (bulk import)."""
        await self._insert_many(
            ORDERS,
            [
                {
                    "id": order.id,
                    "reference": order.reference,
                    "identity_id": order.identity_id,
                    "profile": order.profile,
                    "code_hash": code_hash,
                    "status": str(order.status),
                    "failed_attempts": 0,
                    "locked_at": None,
                    "created_at": order.created_at,
                    "expires_at": order.expires_at,
                    "claimed_serial": None,
                    "claimed_at": None,
                    "consumed_at": None,
                    "cancelled_at": None,
                    "certificate_serial": None,
                    "ca_label": order.ca_label,
                    "require_approval": order.require_approval,
                }
                for order, code_hash in orders
            ],
        )

    async def get_order(self, order_id: uuid.UUID) -> Order | None:
        result = await self._conn.execute(select(ORDERS).where(ORDERS.c.id == order_id))
        row = result.one_or_none()
        return _order(row) if row is not None else None

    async def get_order_by_reference(
        self, reference: str, *, for_update: bool = False
    ) -> tuple[Order, str] | None:
        """The order and its stored code hash (for verification only); `for_update` makes
        concurrent attempts on one order check their codes one after another."""
        query = select(ORDERS).where(ORDERS.c.reference == reference)
        if for_update:
            query = query.with_for_update()
        result = await self._conn.execute(query)
        row = result.one_or_none()
        return (_order(row), row.code_hash) if row is not None else None

    async def list_orders(
        self,
        *,
        identity_id: uuid.UUID | None = None,
        state: OrderState | None = None,
        now: dt.datetime | None = None,
        cvr: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Order]:
        """Orders in `state` as `Order.state(now)` derives it (None: every state but staged)."""
        query = _page(
            ORDERS,
            (ORDERS.c.created_at, ORDERS.c.id),
            limit,
            offset,
            of_cvr=cvr,
            identity_id=identity_id,
        )
        if state is None:
            query = query.where(ORDERS.c.status != str(OrderStatus.STAGED))
        else:
            if now is None:
                raise ValueError("listing orders by state needs the time it is judged at")
            query = query.where(_order_in_state(state, now))
        return [_order(row) for row in await self._conn.execute(query)]

    async def count_identities(self, cvr: str) -> int:
        """How many identities an organisation has (of any status but staged)."""
        number = await self._conn.scalar(
            select(func.count())
            .select_from(IDENTITIES)
            .where(IDENTITIES.c.cvr == cvr, IDENTITIES.c.status != str(IdentityStatus.STAGED))
        )
        return int(number or 0)

    async def count_records(self, now: dt.datetime) -> dict[str, dict[str, int]]:
        """How many organisations, identities, certificates per status and orders per state."""
        counts: dict[str, dict[str, int]] = {}
        for name, table in (
            ("organisations", ORGANISATIONS),
            ("identities", IDENTITIES),
            ("certificates", CERTIFICATES),
        ):
            rows = await self._conn.execute(
                select(table.c.status, func.count()).group_by(table.c.status)
            )
            counts[name] = {str(status): int(number) for status, number in rows}
        counts["orders"] = {}
        for state in OrderState:
            number = await self._conn.scalar(
                select(func.count()).select_from(ORDERS).where(_order_in_state(state, now))
            )
            if number:
                counts["orders"][str(state)] = int(number)
        return counts

    async def live_certificates_by_issuer(
        self, now: dt.datetime
    ) -> dict[str, tuple[int, dt.datetime | None]]:
        """Per issuer key id: its issued certificates not yet expired, and the last expiry
        (a retired CA may go once it has none)."""
        rows = await self._conn.execute(
            select(
                CERTIFICATES.c.issuer_key_id,
                func.count(),
                func.max(CERTIFICATES.c.not_after),
            )
            .where(
                (CERTIFICATES.c.status == str(CertificateStatus.ISSUED))
                & (CERTIFICATES.c.not_after > now)
            )
            .group_by(CERTIFICATES.c.issuer_key_id)
        )
        return {str(issuer): (int(number), last) for issuer, number, last in rows}

    async def count_failed_attempt(
        self, order_id: uuid.UUID, *, lock_after: int, now: dt.datetime
    ) -> Order:
        """Add one wrong code to the order; the attempt that reaches `lock_after` locks it."""
        reaches_limit = ORDERS.c.failed_attempts + 1 >= lock_after
        await self._conn.execute(
            update(ORDERS)
            .where(ORDERS.c.id == order_id)
            .values(
                failed_attempts=ORDERS.c.failed_attempts + 1,
                locked_at=case(
                    (ORDERS.c.locked_at.is_(None) & reaches_limit, literal(now, UtcDateTime())),
                    else_=ORDERS.c.locked_at,
                ),
            )
        )
        order = await self.get_order(order_id)
        assert order is not None
        return order

    async def cancel_order(self, order_id: uuid.UUID, now: dt.datetime) -> bool:
        result = await self._conn.execute(
            update(ORDERS)
            .where(ORDERS.c.id == order_id, ORDERS.c.status == str(OrderStatus.PENDING))
            .values(status=str(OrderStatus.CANCELLED), cancelled_at=now)
        )
        return result.rowcount == 1

    async def unlock_order(self, order_id: uuid.UUID) -> bool:
        result = await self._conn.execute(
            update(ORDERS)
            .where(ORDERS.c.id == order_id, ORDERS.c.locked_at.is_not(None))
            .values(locked_at=None, failed_attempts=0)
        )
        return result.rowcount == 1

    async def find_claimable_order(
        self,
        identity_id: uuid.UUID,
        now: dt.datetime,
        ca_label: str | None = None,
        *,
        or_unlabelled: bool = False,
    ) -> Order | None:
        """The oldest order of the identity that an enrollment could consume now; with
        `ca_label`, the oldest for that label (`or_unlabelled`: or naming none, as orders placed
        before labels existed, which are the default label's)."""
        conditions = [
            ORDERS.c.identity_id == identity_id,
            ORDERS.c.status == str(OrderStatus.PENDING),
            ORDERS.c.locked_at.is_(None),
            ORDERS.c.expires_at > now,
        ]
        if ca_label is not None:
            labelled = ORDERS.c.ca_label == ca_label
            conditions.append(
                or_(labelled, ORDERS.c.ca_label.is_(None)) if or_unlabelled else labelled
            )
        result = await self._conn.execute(
            select(ORDERS).where(*conditions).order_by(ORDERS.c.created_at, ORDERS.c.id).limit(1)
        )
        row = result.one_or_none()
        return _order(row) if row is not None else None

    async def claim_order(
        self, order_id: uuid.UUID, serial: Serial, *, now: dt.datetime, stale_before: dt.datetime
    ) -> bool:
        """Mark the order as being issued under `serial`; False when another request has it.

        A claim older than `stale_before` belonged to an enrollment that never finished (its
        process died); it is taken over and its reserved serial abandoned.
        """
        current = await self._conn.execute(
            select(ORDERS.c.status, ORDERS.c.claimed_serial)
            .where(ORDERS.c.id == order_id)
            .with_for_update()
        )
        before = current.one_or_none()
        if before is None:
            return False
        result = await self._conn.execute(
            update(ORDERS)
            .where(
                ORDERS.c.id == order_id,
                ORDERS.c.locked_at.is_(None),
                ORDERS.c.expires_at > now,
                (ORDERS.c.status == str(OrderStatus.PENDING))
                | (
                    (ORDERS.c.status == str(OrderStatus.ISSUING))
                    & (ORDERS.c.claimed_at < stale_before)
                ),
            )
            .values(status=str(OrderStatus.ISSUING), claimed_serial=serial.hex, claimed_at=now)
        )
        if result.rowcount != 1:
            return False
        if before.status == str(OrderStatus.ISSUING) and before.claimed_serial:
            # The order's own reservation: its id names it whichever CA reserved the serial.
            await self._conn.execute(
                update(CERTIFICATES)
                .where(
                    CERTIFICATES.c.order_id == order_id,
                    CERTIFICATES.c.serial == before.claimed_serial,
                    CERTIFICATES.c.status == str(CertificateStatus.RESERVED),
                )
                .values(status=str(CertificateStatus.ABANDONED))
            )
        return True

    async def complete_order(self, order_id: uuid.UUID, serial: Serial, now: dt.datetime) -> bool:
        """Consume the order for the certificate `serial`; False when the claim was lost."""
        result = await self._conn.execute(
            update(ORDERS)
            .where(
                ORDERS.c.id == order_id,
                ORDERS.c.status == str(OrderStatus.ISSUING),
                ORDERS.c.claimed_serial == serial.hex,
            )
            .values(
                status=str(OrderStatus.CONSUMED), consumed_at=now, certificate_serial=serial.hex
            )
        )
        return result.rowcount == 1

    async def release_order(self, order_id: uuid.UUID, serial: Serial) -> bool:
        """Give a claimed order back (issuance stopped before a certificate existed)."""
        result = await self._conn.execute(
            update(ORDERS)
            .where(
                ORDERS.c.id == order_id,
                ORDERS.c.status == str(OrderStatus.ISSUING),
                ORDERS.c.claimed_serial == serial.hex,
            )
            .values(status=str(OrderStatus.PENDING), claimed_serial=None, claimed_at=None)
        )
        return result.rowcount == 1

    # -- enrollment requests awaiting approval ----------------------------------------------

    async def insert_request(self, request: EnrollmentRequest) -> None:
        """The order's one request; a second for the same order is `AlreadyExists`."""
        await self._conn.execute(
            REQUESTS.insert().values(
                order_id=request.order_id,
                identity_id=request.identity_id,
                csr_der=request.csr_der,
                csr_sha256=request.csr_sha256,
                status=str(request.status),
                created_at=request.created_at,
            )
        )

    async def get_request(
        self, order_id: uuid.UUID, *, for_update: bool = False
    ) -> EnrollmentRequest | None:
        query = _REQUEST.where(REQUESTS.c.order_id == order_id)
        if for_update:
            query = query.with_for_update(of=REQUESTS)
        row = (await self._conn.execute(query)).one_or_none()
        return _request(row) if row is not None else None

    async def list_requests(
        self,
        *,
        status: RequestStatus | None = None,
        cvr: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[EnrollmentRequest]:
        """Oldest first: the queue an administrator works through."""
        query = _page(
            REQUESTS,
            (REQUESTS.c.created_at, REQUESTS.c.order_id),
            limit,
            offset,
            of_cvr=cvr,
            base=_REQUEST,
            status=status,
        )
        return [_request(row) for row in await self._conn.execute(query)]

    async def decide_request(
        self,
        order_id: uuid.UUID,
        status: RequestStatus,
        *,
        now: dt.datetime,
        by: str,
        reason: str | None,
    ) -> bool:
        """Pending -> approved or rejected, once: False when it was decided already (a
        conditional UPDATE, so two administrators deciding at once cannot both win)."""
        result = await self._conn.execute(
            update(REQUESTS)
            .where(
                REQUESTS.c.order_id == order_id,
                REQUESTS.c.status == str(RequestStatus.PENDING),
            )
            .values(status=str(status), decided_at=now, decided_by=by, reason=reason)
        )
        return result.rowcount == 1

    # -- certificates -----------------------------------------------------------------------

    async def insert_reservation(self, record: CertificateRecord) -> None:
        """Record the intent to issue `record.serial`; the primary key refuses a serial its
        issuer used before."""
        if record.status is not CertificateStatus.RESERVED:
            raise ValueError("only reservations are inserted; issued certificates are updates")
        await self._conn.execute(
            CERTIFICATES.insert().values(
                issuer_key_id=record.issuer_key_id.hex,
                serial=record.serial.hex,
                identity_id=record.identity_id,
                order_id=record.order_id,
                renewal_of=record.renewal_of.hex if record.renewal_of else None,
                profile=record.profile,
                status=str(record.status),
                public_key_sha256=record.public_key_sha256,
                created_at=record.created_at,
            )
        )

    async def mark_issued(
        self,
        issuer: KeyId,
        serial: Serial,
        *,
        der: bytes,
        not_before: dt.datetime,
        not_after: dt.datetime,
        issued_at: dt.datetime,
    ) -> bool:
        result = await self._conn.execute(
            update(CERTIFICATES)
            .where(
                _is_certificate(issuer, serial),
                CERTIFICATES.c.status == str(CertificateStatus.RESERVED),
            )
            .values(
                status=str(CertificateStatus.ISSUED),
                der=der,
                not_before=not_before,
                not_after=not_after,
                issued_at=issued_at,
            )
        )
        return result.rowcount == 1

    async def abandon_reservation(self, issuer: KeyId, serial: Serial) -> bool:
        result = await self._conn.execute(
            update(CERTIFICATES)
            .where(
                _is_certificate(issuer, serial),
                CERTIFICATES.c.status == str(CertificateStatus.RESERVED),
            )
            .values(status=str(CertificateStatus.ABANDONED))
        )
        return result.rowcount == 1

    async def revoke_certificate(
        self,
        issuer: KeyId,
        serial: Serial,
        *,
        reason: RevocationReason,
        at: dt.datetime,
        invalidity_date: dt.datetime | None = None,
    ) -> bool:
        """Issued -> revoked, once: False when it is not an issued certificate. Its stored
        OCSP responses go in the same transaction, so no instance can serve a "good" one
        from the database once this commits."""
        result = await self._conn.execute(
            update(CERTIFICATES)
            .where(
                _is_certificate(issuer, serial),
                CERTIFICATES.c.status == str(CertificateStatus.ISSUED),
            )
            .values(
                status=str(CertificateStatus.REVOKED),
                revoked_at=at,
                revocation_reason=_reason_column(reason),
                invalidity_date=invalidity_date,
            )
        )
        await self._conn.execute(
            OCSP_RESPONSES.delete().where(
                OCSP_RESPONSES.c.issuer_key_id == issuer.hex,
                OCSP_RESPONSES.c.serial == serial.hex,
            )
        )
        return result.rowcount == 1

    async def get_certificate(
        self, issuer: KeyId, serial: Serial, *, for_update: bool = False
    ) -> CertificateRecord | None:
        query = select(CERTIFICATES).where(_is_certificate(issuer, serial))
        if for_update:
            query = query.with_for_update()
        result = await self._conn.execute(query)
        row = result.one_or_none()
        return _certificate(row) if row is not None else None

    async def order_certificate(
        self, order_id: uuid.UUID, serial: Serial
    ) -> CertificateRecord | None:
        """The certificate an order yielded, locked; the order names it whichever CA issued it."""
        result = await self._conn.execute(
            select(CERTIFICATES)
            .where(CERTIFICATES.c.order_id == order_id, CERTIFICATES.c.serial == serial.hex)
            .with_for_update()
        )
        row = result.first()
        return _certificate(row) if row is not None else None

    async def predecessor_of(self, record: CertificateRecord) -> CertificateRecord | None:
        """The certificate `record` renewed, locked. `renewal_of` keeps the serial only: the
        predecessor is the one of that serial certifying the same identity (it may have been
        issued by a CA since rolled over)."""
        if record.renewal_of is None:
            return None
        result = await self._conn.execute(
            select(CERTIFICATES)
            .where(
                CERTIFICATES.c.serial == record.renewal_of.hex,
                CERTIFICATES.c.identity_id == record.identity_id,
                CERTIFICATES.c.status.in_(_CERTIFYING),
            )
            .order_by(CERTIFICATES.c.created_at)
            .with_for_update()
        )
        row = result.first()
        return _certificate(row) if row is not None else None

    async def certificate_by_serial(
        self, serial: Serial, issuer: KeyId | None = None, *, for_update: bool = False
    ) -> CertificateRecord | None:
        """An administrator's lookup: by serial and issuer, or by serial alone while only one
        CA has a certificate with that serial (several: `Conflict`, naming them)."""
        if issuer is not None:
            return await self.get_certificate(issuer, serial, for_update=for_update)
        found = await self.certificates_with_serial(serial)
        if len(found) > 1:
            raise several_issuers(serial, found)
        if not found:
            return None
        if for_update:
            return await self.get_certificate(found[0].issuer_key_id, serial, for_update=True)
        return found[0]

    async def certificates_with_serial(self, serial: Serial) -> list[CertificateRecord]:
        """Every CA's certificate with this serial (an administrator gave the serial alone)."""
        result = await self._conn.execute(
            select(CERTIFICATES)
            .where(CERTIFICATES.c.serial == serial.hex)
            .order_by(CERTIFICATES.c.issuer_key_id)
        )
        return [_certificate(row) for row in result]

    async def list_certificates(
        self,
        *,
        identity_id: uuid.UUID | None = None,
        status: CertificateStatus | None = None,
        cvr: str | None = None,
        expires_after: dt.datetime | None = None,
        expires_before: dt.datetime | None = None,
        limit: int = 100,
        offset: int = 0,
        identity_type: IdentityType | None = None,
    ) -> list[CertificateRecord]:
        query = _page(
            CERTIFICATES,
            (CERTIFICATES.c.created_at, CERTIFICATES.c.serial),
            limit,
            offset,
            of_cvr=cvr,
            identity_id=identity_id,
            status=status,
        )
        if expires_after is not None:
            query = query.where(CERTIFICATES.c.not_after > expires_after)
        if expires_before is not None:
            query = query.where(CERTIFICATES.c.not_after <= expires_before)
        if identity_type is not None:
            query = query.where(
                CERTIFICATES.c.identity_id.in_(
                    select(IDENTITIES.c.id).where(IDENTITIES.c.type == str(identity_type))
                )
            )
        return [_certificate(row) for row in await self._conn.execute(query)]

    async def live_certificates_with_key(self, public_key_sha256: str) -> list[CertificateRecord]:
        """Issued, unrevoked certificates for this key, of every issuer (a compromised key is
        compromised under every CA), locked for revocation."""
        result = await self._conn.execute(
            select(CERTIFICATES)
            .where(
                CERTIFICATES.c.public_key_sha256 == public_key_sha256,
                CERTIFICATES.c.status == str(CertificateStatus.ISSUED),
            )
            .order_by(CERTIFICATES.c.created_at, CERTIFICATES.c.serial)
            .with_for_update()
        )
        return [_certificate(row) for row in result]

    async def successor_of(self, serial: Serial) -> CertificateRecord | None:
        """The renewal of `serial` that exists or may yet exist (not an abandoned attempt)."""
        result = await self._conn.execute(
            select(CERTIFICATES)
            .where(
                CERTIFICATES.c.renewal_of == serial.hex,
                CERTIFICATES.c.status.in_(_CERTIFYING),
            )
            .order_by(CERTIFICATES.c.created_at)
        )
        row = result.first()
        return _certificate(row) if row is not None else None

    async def superseded_candidates(
        self, renewed_before: dt.datetime
    ) -> list[tuple[CertificateRecord, str, dt.datetime]]:
        """Live certificates whose successor was issued by `renewed_before`, with the
        successor's serial and issuance time (the domain applies each profile's grace)."""
        successor = CERTIFICATES.alias("successor")
        result = await self._conn.execute(
            select(
                CERTIFICATES,
                successor.c.serial.label("successor_serial"),
                successor.c.issued_at.label("renewed_at"),
            )
            .join(
                successor,
                (successor.c.renewal_of == CERTIFICATES.c.serial)
                & (successor.c.identity_id == CERTIFICATES.c.identity_id),
            )
            .where(
                CERTIFICATES.c.status == str(CertificateStatus.ISSUED),
                successor.c.status.in_(
                    [str(CertificateStatus.ISSUED), str(CertificateStatus.REVOKED)]
                ),
                successor.c.issued_at <= renewed_before,
            )
            .order_by(successor.c.issued_at)
        )
        return [(_certificate(row), row.successor_serial, row.renewed_at) for row in result]

    # -- subscriber keys ----------------------------------------------------------------------

    async def bind_key(
        self, public_key_sha256: str, identity_id: uuid.UUID, now: dt.datetime
    ) -> KeyBinding:
        """The key's binding, created for `identity_id` if the key is new, and locked: two
        identities racing for one key meet here, and the first binding stays."""
        # One statement: an upsert whose update changes nothing locks the row as FOR UPDATE
        # would and returns the binding that stays, new or not.
        insert = sqlite_insert if self._conn.dialect.name == "sqlite" else postgresql_insert
        statement = insert(SUBSCRIBER_KEYS).values(
            public_key_sha256=public_key_sha256, identity_id=identity_id, bound_at=now
        )
        row = (
            await self._conn.execute(
                statement.on_conflict_do_update(
                    index_elements=[SUBSCRIBER_KEYS.c.public_key_sha256],
                    set_={"public_key_sha256": statement.excluded.public_key_sha256},
                ).returning(SUBSCRIBER_KEYS)
            )
        ).one()
        return KeyBinding(
            public_key_sha256=row.public_key_sha256,
            identity_id=row.identity_id,
            bound_at=row.bound_at,
            compromised_at=row.compromised_at,
        )

    async def key_binding(
        self, public_key_sha256: str, *, for_update: bool = False
    ) -> KeyBinding | None:
        query = select(SUBSCRIBER_KEYS).where(
            SUBSCRIBER_KEYS.c.public_key_sha256 == public_key_sha256
        )
        if for_update:
            query = query.with_for_update()
        row = (await self._conn.execute(query)).one_or_none()
        if row is None:
            return None
        return KeyBinding(
            public_key_sha256=row.public_key_sha256,
            identity_id=row.identity_id,
            bound_at=row.bound_at,
            compromised_at=row.compromised_at,
        )

    async def mark_key_compromised(self, public_key_sha256: str, at: dt.datetime) -> None:
        await self._conn.execute(
            update(SUBSCRIBER_KEYS)
            .where(
                SUBSCRIBER_KEYS.c.public_key_sha256 == public_key_sha256,
                SUBSCRIBER_KEYS.c.compromised_at.is_(None),
            )
            .values(compromised_at=at)
        )

    async def release_unused_key(self, public_key_sha256: str) -> None:
        """Forget a binding no certificate came of (its only enrollment was abandoned)."""
        await self._conn.execute(
            SUBSCRIBER_KEYS.delete().where(
                SUBSCRIBER_KEYS.c.public_key_sha256 == public_key_sha256,
                SUBSCRIBER_KEYS.c.compromised_at.is_(None),
                ~select(CERTIFICATES.c.serial)
                .where(
                    CERTIFICATES.c.public_key_sha256 == public_key_sha256,
                    CERTIFICATES.c.status.in_(_CERTIFYING),
                )
                .exists(),
            )
        )

    async def recover_stale_issuances(self, stale_before: dt.datetime) -> tuple[int, int]:
        """Abandon reservations and release order claims left by enrollments that died.

        Returns (orders released, reservations abandoned). Nothing is lost: a reservation has
        never been handed to anyone, so its order can be used again under a new serial.
        """
        released = await self._conn.execute(
            update(ORDERS)
            .where(
                ORDERS.c.status == str(OrderStatus.ISSUING),
                ORDERS.c.claimed_at < stale_before,
            )
            .values(status=str(OrderStatus.PENDING), claimed_serial=None, claimed_at=None)
        )
        abandoned = await self._conn.execute(
            update(CERTIFICATES)
            .where(
                CERTIFICATES.c.status == str(CertificateStatus.RESERVED),
                CERTIFICATES.c.created_at < stale_before,
            )
            .values(status=str(CertificateStatus.ABANDONED))
        )
        return released.rowcount, abandoned.rowcount

    async def live_certificates_of(self, identity_id: uuid.UUID) -> list[CertificateRecord]:
        result = await self._conn.execute(
            select(CERTIFICATES)
            .where(
                CERTIFICATES.c.identity_id == identity_id,
                CERTIFICATES.c.status == str(CertificateStatus.ISSUED),
            )
            .with_for_update()
        )
        return [_certificate(row) for row in result]

    async def cancel_open_orders_of(self, identity_id: uuid.UUID, now: dt.datetime) -> int:
        """Cancel pending orders and those an enrollment is using right now (its final
        commit then finds the order gone and issues nothing)."""
        result = await self._conn.execute(
            update(ORDERS)
            .where(
                ORDERS.c.identity_id == identity_id,
                ORDERS.c.status.in_([str(OrderStatus.PENDING), str(OrderStatus.ISSUING)]),
            )
            .values(status=str(OrderStatus.CANCELLED), cancelled_at=now)
        )
        # Their requests awaiting approval are decided with them: none waits for nothing.
        await self._conn.execute(
            update(REQUESTS)
            .where(
                REQUESTS.c.identity_id == identity_id,
                REQUESTS.c.status == str(RequestStatus.PENDING),
            )
            .values(
                status=str(RequestStatus.REJECTED),
                decided_at=now,
                reason=ORDER_CANCELLED,
            )
        )
        return result.rowcount

    async def revoked_entries(
        self, issuer: KeyId, now: dt.datetime, batch: int = 1000
    ) -> AsyncIterator[RevokedEntry]:
        """`issuer`'s revoked certificates that have not expired (expired ones leave the CRL),
        streamed: one CRL, one issuer (RFC 5280 has us publish no indirect CRLs)."""
        result = await self._conn.stream(
            select(
                CERTIFICATES.c.serial,
                CERTIFICATES.c.revoked_at,
                CERTIFICATES.c.revocation_reason,
                CERTIFICATES.c.invalidity_date,
            )
            .where(
                CERTIFICATES.c.issuer_key_id == issuer.hex,
                CERTIFICATES.c.status == str(CertificateStatus.REVOKED),
                CERTIFICATES.c.not_after > now,
            )
            .order_by(CERTIFICATES.c.serial)
            .execution_options(yield_per=batch)
        )
        async for rows in result.partitions(batch):
            for index, row in enumerate(rows):
                if index % 200 == 199:
                    await asyncio.sleep(0)  # turning rows into values is CPU: let others in
                yield RevokedEntry(
                    serial=Serial.from_hex(row.serial),
                    revoked_at=row.revoked_at,
                    reason=_reason(row.revocation_reason),
                    invalidity_date=row.invalidity_date,
                )

    async def certificate_statuses(
        self, issuer: KeyId, *, revoked_only: bool = False, batch: int = 5000
    ) -> AsyncIterator[tuple[int, str, dt.datetime | None, RevocationReason]]:
        """Every certificate `issuer` recorded (or only the revoked ones), streamed as (serial,
        status, revoked_at, reason): what the OCSP responder's status index is loaded from."""
        query = select(
            CERTIFICATES.c.serial,
            CERTIFICATES.c.status,
            CERTIFICATES.c.revoked_at,
            CERTIFICATES.c.revocation_reason,
        ).where(CERTIFICATES.c.issuer_key_id == issuer.hex)
        if revoked_only:
            query = query.where(CERTIFICATES.c.status == str(CertificateStatus.REVOKED))
        result = await self._conn.stream(query.execution_options(yield_per=batch))
        async for rows in result.partitions(batch):
            for row in rows:
                yield (
                    int(row.serial, 16),
                    row.status,
                    row.revoked_at,
                    _reason(row.revocation_reason),
                )
            await asyncio.sleep(0)  # a big CA's load is CPU: let others in between batches

    async def own_serials(self, issuer_key_id: str, *, service: bool = True) -> list[int]:
        """The OCSP responders' and (`service`) the listener's certificates `issuer_key_id`
        signed: "good" to the status index like the subscribers' issued ones."""
        serials: list[int] = []
        for table in (OCSP_RESPONDERS, SERVICE_CERTIFICATES) if service else (OCSP_RESPONDERS,):
            result = await self._conn.execute(
                select(table.c.serial).where(table.c.issuer_key_id == issuer_key_id)
            )
            serials.extend(int(serial, 16) for serial in result.scalars())
        return serials

    # -- revocation state (CRL numbers, published CRLs) ---------------------------------------

    async def ensure_revocation_state(self, issuer_key_id: str) -> None:
        exists = await self._conn.execute(
            select(REVOCATION_STATE.c.issuer_key_id).where(
                REVOCATION_STATE.c.issuer_key_id == issuer_key_id
            )
        )
        if exists.one_or_none() is None:
            await self._insert_unless_present(
                REVOCATION_STATE, issuer_key_id=issuer_key_id, revision=0, last_crl_number=0
            )

    async def count_revocation(self, issuer_key_id: str) -> None:
        """One more revocation by this CA: every instance's CRL and OCSP cache are now stale.
        On PostgreSQL the transaction also notifies REVOCATION_CHANNEL, which the server
        delivers when (and only if) it commits."""
        await self._conn.execute(
            update(REVOCATION_STATE)
            .where(REVOCATION_STATE.c.issuer_key_id == issuer_key_id)
            .values(revision=REVOCATION_STATE.c.revision + 1)
        )
        if self._conn.dialect.name == "postgresql":
            await self._conn.execute(
                text("SELECT pg_notify(:channel, :issuer)"),
                {"channel": REVOCATION_CHANNEL, "issuer": issuer_key_id},
            )

    async def revocation_state(self, issuer_key_id: str) -> RevocationState:
        result = await self._conn.execute(
            select(REVOCATION_STATE).where(REVOCATION_STATE.c.issuer_key_id == issuer_key_id)
        )
        row = result.one()
        crl = None
        if row.crl_der is not None and row.crl_number is not None:
            crl = PublishedCrl(
                number=row.crl_number,
                revision=row.crl_revision,
                this_update=row.crl_this_update,
                next_update=row.crl_next_update,
                der=row.crl_der,
            )
        return RevocationState(revision=row.revision, crl=crl)

    async def next_crl_number(self, issuer_key_id: str) -> int:
        result = await self._conn.execute(
            update(REVOCATION_STATE)
            .where(REVOCATION_STATE.c.issuer_key_id == issuer_key_id)
            .values(last_crl_number=REVOCATION_STATE.c.last_crl_number + 1)
            .returning(REVOCATION_STATE.c.last_crl_number)
        )
        return int(result.scalar_one())

    async def publish_crl(self, issuer_key_id: str, crl: PublishedCrl) -> bool:
        """Keep `crl` as the CA's current one, unless one with a higher number is kept already."""
        result = await self._conn.execute(
            update(REVOCATION_STATE)
            .where(
                REVOCATION_STATE.c.issuer_key_id == issuer_key_id,
                REVOCATION_STATE.c.crl_number.is_(None)
                | (REVOCATION_STATE.c.crl_number < crl.number),
            )
            .values(
                crl_number=crl.number,
                crl_revision=crl.revision,
                crl_this_update=crl.this_update,
                crl_next_update=crl.next_update,
                crl_der=crl.der,
            )
        )
        return result.rowcount == 1

    # -- failed authentications by source (every instance's throttle counts them all) --------

    async def record_source_failure(self, source: str, at: dt.datetime) -> None:
        await self._conn.execute(SOURCE_FAILURES.insert().values(source=source, at=at))

    async def source_failures(
        self, source: str, since: dt.datetime, limit: int
    ) -> list[dt.datetime]:
        """When `source` failed after `since`: the newest `limit` times, oldest first."""
        result = await self._conn.execute(
            select(SOURCE_FAILURES.c.at)
            .where(SOURCE_FAILURES.c.source == source, SOURCE_FAILURES.c.at > since)
            .order_by(SOURCE_FAILURES.c.at.desc())
            .limit(limit)
        )
        return sorted(row.at for row in result)

    async def forget_source_failures(self, before: dt.datetime) -> int:
        result = await self._conn.execute(
            SOURCE_FAILURES.delete().where(SOURCE_FAILURES.c.at <= before)
        )
        return int(result.rowcount)

    # -- OCSP responders ----------------------------------------------------------------------

    async def insert_ocsp_responder(
        self,
        *,
        serial: Serial,
        issuer_key_id: str,
        not_before: dt.datetime,
        not_after: dt.datetime,
        der: bytes,
        created_at: dt.datetime,
        wrapped_key: bytes | None = None,
        key_label: str | None = None,
    ) -> None:
        await self._insert_own(
            OCSP_RESPONDERS,
            serial,
            issuer_key_id,
            not_before,
            not_after,
            der,
            created_at,
            wrapped_key=wrapped_key,
            key_label=key_label,
        )

    async def is_ocsp_responder(self, issuer_key_id: str, serial: Serial) -> bool:
        return await self._is_own(OCSP_RESPONDERS, issuer_key_id, serial)

    async def newest_ocsp_responder(
        self, issuer_key_id: str, *, on_token: bool
    ) -> RecordedResponder | None:
        """The CA's responder with the latest notAfter whose key is usable by this kind of
        instance: named on the token (`on_token`), else wrapped in the row."""
        usable = (
            OCSP_RESPONDERS.c.key_label.is_not(None)
            if on_token
            else OCSP_RESPONDERS.c.wrapped_key.is_not(None)
        )
        result = await self._conn.execute(
            select(OCSP_RESPONDERS)
            .where(OCSP_RESPONDERS.c.issuer_key_id == issuer_key_id, usable)
            .order_by(OCSP_RESPONDERS.c.not_after.desc(), OCSP_RESPONDERS.c.serial)
            .limit(1)
        )
        row = result.one_or_none()
        if row is None:
            return None
        return RecordedResponder(
            serial=Serial.from_hex(row.serial),
            not_after=row.not_after,
            der=row.der,
            wrapped_key=row.wrapped_key,
            key_label=row.key_label,
        )

    async def count_ocsp_responders(self, issuer_key_id: str) -> int:
        result = await self._conn.execute(
            select(func.count()).where(OCSP_RESPONDERS.c.issuer_key_id == issuer_key_id)
        )
        return int(result.scalar_one())

    # -- pre-produced OCSP responses, shared by every instance --------------------------------

    async def ocsp_response(
        self, issuer_key_id: str, serial: Serial, hash_name: str
    ) -> StoredOcspResponse | None:
        result = await self._conn.execute(
            select(OCSP_RESPONSES).where(_is_ocsp_response(issuer_key_id, serial, hash_name))
        )
        row = result.one_or_none()
        return _ocsp_response(row) if row is not None else None

    async def keep_ocsp_response(
        self,
        issuer_key_id: str,
        serial: Serial,
        hash_name: str,
        response: StoredOcspResponse,
        now: dt.datetime,
    ) -> StoredOcspResponse:
        """Store `response` unless a fresh one saying the same is stored already (another
        instance signed it a moment ago); what is stored afterwards, to serve."""
        insert = sqlite_insert if self._conn.dialect.name == "sqlite" else postgresql_insert
        values = {
            "status": response.status,
            "der": response.der,
            "this_update": response.this_update,
            "next_update": response.next_update,
            "refresh_at": response.refresh_at,
        }
        statement = insert(OCSP_RESPONSES).values(
            issuer_key_id=issuer_key_id, serial=serial.hex, hash_name=hash_name, **values
        )
        await self._conn.execute(
            statement.on_conflict_do_update(
                index_elements=[
                    OCSP_RESPONSES.c.issuer_key_id,
                    OCSP_RESPONSES.c.serial,
                    OCSP_RESPONSES.c.hash_name,
                ],
                set_=values,
                where=(OCSP_RESPONSES.c.refresh_at <= now)
                | (OCSP_RESPONSES.c.status != response.status),
            )
        )
        return await self.ocsp_response(issuer_key_id, serial, hash_name) or response

    async def forget_expired_ocsp_responses(self, now: dt.datetime) -> int:
        result = await self._conn.execute(
            OCSP_RESPONSES.delete().where(OCSP_RESPONSES.c.next_update <= now)
        )
        return int(result.rowcount)

    # -- The service's own TLS certificates -----------------------------------------------------

    async def insert_service_certificate(
        self,
        *,
        serial: Serial,
        issuer_key_id: str,
        not_before: dt.datetime,
        not_after: dt.datetime,
        der: bytes,
        created_at: dt.datetime,
    ) -> None:
        await self._insert_own(
            SERVICE_CERTIFICATES, serial, issuer_key_id, not_before, not_after, der, created_at
        )

    async def is_service_certificate(self, issuer_key_id: str, serial: Serial) -> bool:
        return await self._is_own(SERVICE_CERTIFICATES, issuer_key_id, serial)

    async def _insert_own(
        self,
        table: Table,
        serial: Serial,
        issuer_key_id: str,
        not_before: dt.datetime,
        not_after: dt.datetime,
        der: bytes,
        created_at: dt.datetime,
        **extra: object,
    ) -> None:
        """A certificate a CA issued for the service itself (an OCSP responder, the TLS
        listener): the two tables have these columns (a responder's key, `extra`, too)."""
        await self._conn.execute(
            table.insert().values(
                serial=serial.hex,
                issuer_key_id=issuer_key_id,
                not_before=not_before,
                not_after=not_after,
                der=der,
                created_at=created_at,
                **extra,
            )
        )

    async def _is_own(self, table: Table, issuer_key_id: str, serial: Serial) -> bool:
        result = await self._conn.execute(
            select(table.c.serial).where(
                table.c.serial == serial.hex, table.c.issuer_key_id == issuer_key_id
            )
        )
        return result.one_or_none() is not None

    # -- API tokens ---------------------------------------------------------------------------

    async def insert_api_token(self, token: ApiToken, secret_hash: str) -> None:
        await self._conn.execute(
            API_TOKENS.insert().values(
                id=token.id,
                name=token.name,
                secret_hash=secret_hash,
                scopes=",".join(sorted(token.scopes)),
                cvr=token.cvr,
                created_at=token.created_at,
                expires_at=token.expires_at,
                certificate_issuer_key_id=token.certificate and token.certificate.issuer_key_id,
                certificate_serial=token.certificate and token.certificate.serial,
                identity_id=token.certificate and token.certificate.identity_id,
            )
        )

    async def get_api_token(self, token_id: uuid.UUID) -> tuple[ApiToken, str] | None:
        """The token and the hash of its secret (for comparison only)."""
        result = await self._conn.execute(select(API_TOKENS).where(API_TOKENS.c.id == token_id))
        row = result.one_or_none()
        return (_api_token(row), row.secret_hash) if row is not None else None

    async def get_api_token_by_name(self, name: str) -> ApiToken | None:
        result = await self._conn.execute(select(API_TOKENS).where(API_TOKENS.c.name == name))
        row = result.one_or_none()
        return _api_token(row) if row is not None else None

    async def list_api_tokens(self) -> list[ApiToken]:
        result = await self._conn.execute(select(API_TOKENS).order_by(API_TOKENS.c.created_at))
        return [_api_token(row) for row in result]

    async def revoke_api_token(self, token_id: uuid.UUID, now: dt.datetime) -> bool:
        result = await self._conn.execute(
            update(API_TOKENS)
            .where(API_TOKENS.c.id == token_id, API_TOKENS.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return result.rowcount == 1

    async def revoke_idm_tokens(self, identity_id: uuid.UUID, now: dt.datetime) -> int:
        """Revoke the unrevoked tokens an IdM got by logging in as this identity; how many."""
        result = await self._conn.execute(
            update(API_TOKENS)
            .where(API_TOKENS.c.identity_id == identity_id, API_TOKENS.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return result.rowcount

    async def revoke_organisation_idm_tokens(self, cvr: str, now: dt.datetime) -> int:
        """Revoke the unrevoked tokens the IdMs of this organisation got by logging in (tokens
        with a certificate link); an operator's token confined to the CVR stays. How many."""
        result = await self._conn.execute(
            update(API_TOKENS)
            .where(
                API_TOKENS.c.cvr == cvr,
                API_TOKENS.c.identity_id.is_not(None),
                API_TOKENS.c.revoked_at.is_(None),
            )
            .values(revoked_at=now)
        )
        return result.rowcount

    async def revoke_idm_tokens_beyond(
        self, link: CertificateLink, keep: uuid.UUID, live: int, now: dt.datetime
    ) -> int:
        """Revoke a certificate's live login tokens beyond the `live` newest, `keep` (the one
        just made) counted first whatever its timestamp; how many."""
        older = (
            select(API_TOKENS.c.id)
            .where(
                API_TOKENS.c.certificate_issuer_key_id == link.issuer_key_id,
                API_TOKENS.c.certificate_serial == link.serial,
                API_TOKENS.c.revoked_at.is_(None),
                API_TOKENS.c.expires_at > now,
                API_TOKENS.c.id != keep,
            )
            .order_by(API_TOKENS.c.created_at.desc(), API_TOKENS.c.id)
            .offset(max(live - 1, 0))
        )
        beyond = [row.id for row in await self._conn.execute(older)]
        if not beyond:
            return 0
        result = await self._conn.execute(
            update(API_TOKENS).where(API_TOKENS.c.id.in_(beyond)).values(revoked_at=now)
        )
        return int(result.rowcount)

    async def forget_idm_tokens(self, expired_before: dt.datetime) -> int:
        """Delete the IdM login tokens (those with a certificate link) that expired before
        `expired_before`, revoked or not; how many. Operators' tokens are never deleted."""
        result = await self._conn.execute(
            API_TOKENS.delete().where(
                API_TOKENS.c.identity_id.is_not(None), API_TOKENS.c.expires_at < expired_before
            )
        )
        return int(result.rowcount)

    async def touch_api_token(self, token_id: uuid.UUID, now: dt.datetime) -> None:
        await self._conn.execute(
            update(API_TOKENS).where(API_TOKENS.c.id == token_id).values(last_used_at=now)
        )

    # -- web console sessions (console/sessions.py reads and writes the rows) -----------------

    async def insert_console_session(self, values: Mapping[str, Any]) -> None:
        await self._conn.execute(CONSOLE_SESSIONS.insert().values(**values))

    async def get_console_session(
        self, session_id: str, *, for_update: bool = False
    ) -> dict[str, Any] | None:
        query = select(CONSOLE_SESSIONS).where(CONSOLE_SESSIONS.c.id == session_id)
        row = (await self._conn.execute(query.with_for_update() if for_update else query)).first()
        return dict(row._mapping) if row is not None else None

    async def update_console_session(self, session_id: str, **values: Any) -> None:
        await self._conn.execute(
            update(CONSOLE_SESSIONS).where(CONSOLE_SESSIONS.c.id == session_id).values(**values)
        )

    async def delete_console_sessions(
        self,
        *,
        session_id: str | None = None,
        principal: tuple[str, str] | None = None,
        idle_since: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
    ) -> int:
        """Delete the session `session_id`, or a principal's (kind, name), or those unused
        since `idle_since` or created before `created_before`; how many."""
        conditions = []
        if session_id is not None:
            conditions.append(CONSOLE_SESSIONS.c.id == session_id)
        if principal is not None:
            conditions.append(
                (CONSOLE_SESSIONS.c.principal_kind == principal[0])
                & (CONSOLE_SESSIONS.c.principal_name == principal[1])
            )
        if idle_since is not None:
            conditions.append(CONSOLE_SESSIONS.c.last_seen < idle_since)
        if created_before is not None:
            conditions.append(CONSOLE_SESSIONS.c.created_at < created_before)
        if not conditions:
            return 0
        result = await self._conn.execute(CONSOLE_SESSIONS.delete().where(or_(*conditions)))
        return int(result.rowcount or 0)

    # -- an organisation's IdM -----------------------------------------------------------------

    async def get_administration_grant(self, identity_id: uuid.UUID) -> AdministrationGrant | None:
        result = await self._conn.execute(
            select(ADMINISTRATION_GRANTS).where(ADMINISTRATION_GRANTS.c.identity_id == identity_id)
        )
        row = result.one_or_none()
        return _grant(row) if row is not None else None

    async def put_administration_grant(self, grant: AdministrationGrant) -> None:
        """Grant, or replace the scopes of an existing grant."""
        await self._conn.execute(
            ADMINISTRATION_GRANTS.delete().where(
                ADMINISTRATION_GRANTS.c.identity_id == grant.identity_id
            )
        )
        await self._conn.execute(
            ADMINISTRATION_GRANTS.insert().values(
                identity_id=grant.identity_id,
                scopes=",".join(sorted(grant.scopes)),
                granted_by=grant.granted_by,
                granted_at=grant.granted_at,
            )
        )

    async def delete_administration_grant(self, identity_id: uuid.UUID) -> bool:
        result = await self._conn.execute(
            ADMINISTRATION_GRANTS.delete().where(ADMINISTRATION_GRANTS.c.identity_id == identity_id)
        )
        return result.rowcount == 1

    async def idm_standing(self, issuer: KeyId, serial: Serial) -> IdmStanding | None:
        """A certificate's status, its identity's and organisation's, its key's, and the
        identity's administration grant: one query, made on every use of an IdM's certificate
        or token, so a revocation or a withdrawal counts from the next request on."""
        query = (
            select(
                CERTIFICATES.c.der,
                CERTIFICATES.c.status,
                CERTIFICATES.c.not_before,
                CERTIFICATES.c.not_after,
                SUBSCRIBER_KEYS.c.compromised_at,
                IDENTITIES.c.id.label("identity_id"),
                IDENTITIES.c.type.label("identity_type"),
                IDENTITIES.c.status.label("identity_status"),
                IDENTITIES.c.cvr,
                ORGANISATIONS.c.status.label("organisation_status"),
                ADMINISTRATION_GRANTS.c.scopes,
            )
            .select_from(CERTIFICATES)
            .join(IDENTITIES, IDENTITIES.c.id == CERTIFICATES.c.identity_id)
            .outerjoin(ORGANISATIONS, ORGANISATIONS.c.cvr == IDENTITIES.c.cvr)
            .outerjoin(
                SUBSCRIBER_KEYS,
                SUBSCRIBER_KEYS.c.public_key_sha256 == CERTIFICATES.c.public_key_sha256,
            )
            .outerjoin(
                ADMINISTRATION_GRANTS, ADMINISTRATION_GRANTS.c.identity_id == IDENTITIES.c.id
            )
            .where(_is_certificate(issuer, serial))
        )
        row = (await self._conn.execute(query)).one_or_none()
        if row is None:
            return None
        return IdmStanding(
            der=row.der,
            status=row.status,
            not_before=row.not_before,
            not_after=row.not_after,
            key_compromised=row.compromised_at is not None,
            identity_id=row.identity_id,
            identity_type=row.identity_type,
            identity_status=row.identity_status,
            cvr=row.cvr,
            organisation_status=row.organisation_status,
            scopes=_scopes(row.scopes) if row.scopes is not None else None,
        )

    # -- audit ------------------------------------------------------------------------------

    async def append_audit(self, audit_event: AuditEvent) -> None:
        """Add an event to this transaction; it is chained when the transaction commits."""
        self.audit_events.append(audit_event)

    async def append_audits(self, audit_events: Sequence[AuditEvent]) -> None:
        self.audit_events.extend(audit_events)

    async def chain_pending_audit(self, seal: AuditSeal) -> int:
        """Append this transaction's events to the hash chain, each sealed, and seal the new
        head: one lock of the head (read FOR UPDATE, so concurrent writers on PostgreSQL queue
        behind it and each sees the hash the previous one left), then the inserts. A bulk
        import's thousands of events are hashed on a thread. Returns the first event's seq."""
        if not self.audit_events:
            return 0
        head = await self.audit_chain_head(for_update=True)
        if len(self.audit_events) > BULK_AUDIT:
            rows, new_head = await asyncio.to_thread(_chain, head, self.audit_events, seal)
        else:
            rows, new_head = _chain(head, self.audit_events, seal)
        await self._conn.execute(
            update(AUDIT_CHAIN)
            .where(AUDIT_CHAIN.c.id == 1)
            .values(seq=new_head.seq, hash=new_head.hash, mac=seal.head(new_head))
        )
        await self._insert_many(AUDIT_EVENTS, rows)
        return head.seq + 1

    async def anchor_audit_chain(self, seal: AuditSeal, head: ChainHead) -> None:
        """Begin sealing at the current head (see `Store.anchor_audit`)."""
        anchored = dataclasses.replace(
            head, anchor_seq=head.seq, anchor_mac=seal.anchor(head.seq, head.hash)
        )
        await self._conn.execute(
            update(AUDIT_CHAIN)
            .where(AUDIT_CHAIN.c.id == 1)
            .values(
                anchor_seq=anchored.anchor_seq,
                anchor_mac=anchored.anchor_mac,
                mac=seal.head(anchored),
            )
        )

    async def audit_hash_at(self, seq: int) -> str | None:
        """The hash of the event at `seq` (the genesis hash at 0)."""
        if seq == 0:
            return GENESIS_HASH
        result = await self._conn.execute(
            select(AUDIT_EVENTS.c.hash).where(AUDIT_EVENTS.c.seq == seq)
        )
        digest = result.scalar_one_or_none()
        return str(digest) if digest is not None else None

    async def audit_chain_head(self, *, for_update: bool = False) -> ChainHead:
        query = select(AUDIT_CHAIN).where(AUDIT_CHAIN.c.id == 1)
        if for_update:
            query = query.with_for_update()
        row = (await self._conn.execute(query)).one()
        return ChainHead(
            seq=int(row.seq),
            hash=str(row.hash),
            anchor_seq=row.anchor_seq,
            anchor_mac=row.anchor_mac,
            mac=row.mac,
        )

    async def audit_chain(self, batch: int = 1000) -> AsyncIterator[ChainedEvent]:
        """Every audit event with its chain position and hashes, oldest first, streamed."""
        result = await self._conn.stream(
            select(AUDIT_EVENTS).order_by(AUDIT_EVENTS.c.seq).execution_options(yield_per=batch)
        )
        async for rows in result.partitions(batch):
            for row in rows:
                yield ChainedEvent(
                    seq=row.seq,
                    prev_hash=row.prev_hash,
                    hash=row.hash,
                    event=_audit_event(row),
                    mac=row.mac,
                )

    async def list_audit(
        self,
        *,
        action: str | None = None,
        limit: int = 100,
        offset: int = 0,
        newest_first: bool = False,
        outcome: str | None = None,
        cvr: str | None = None,
    ) -> list[AuditEvent]:
        """`cvr`: events about that organisation's identities (by the events' identity_id)."""
        order = AUDIT_EVENTS.c.id.desc() if newest_first else AUDIT_EVENTS.c.id
        query = _page(
            AUDIT_EVENTS, (order,), limit, offset, of_cvr=cvr, action=action, outcome=outcome
        )
        return [_audit_event(row) for row in await self._conn.execute(query)]


def _order_in_state(state: OrderState, now: dt.datetime) -> ColumnElement[bool]:
    """The SQL form of `Order.state`: locked and expired are pending orders judged by time."""
    status = ORDERS.c.status
    if state is OrderState.LOCKED:
        return (status == str(OrderStatus.PENDING)) & ORDERS.c.locked_at.is_not(None)
    unlocked_pending = (status == str(OrderStatus.PENDING)) & ORDERS.c.locked_at.is_(None)
    if state is OrderState.EXPIRED:
        return unlocked_pending & (ORDERS.c.expires_at <= now)
    if state is OrderState.PENDING:
        return unlocked_pending & (ORDERS.c.expires_at > now)
    return status == str(OrderStatus(state.value))


def _page(
    table: Table,
    order_by: Sequence[Any],
    limit: int,
    offset: int,
    *,
    of_cvr: str | None = None,
    base: Select[Any] | None = None,
    **equal: object,
) -> Select[Any]:
    """SELECT rows of `table` whose columns equal the given values (None: any), one page;
    `of_cvr` keeps rows whose identity belongs to that organisation."""
    query = (base if base is not None else select(table)).order_by(*order_by)
    if of_cvr is not None:
        query = query.where(
            table.c.identity_id.in_(select(IDENTITIES.c.id).where(IDENTITIES.c.cvr == of_cvr))
        )
    for column, value in equal.items():
        if value is not None:
            query = query.where(
                table.c[column] == (str(value) if isinstance(value, StrEnum) else value)
            )
    return query.limit(limit).offset(offset)


def _api_token(row: Row[Any]) -> ApiToken:
    return ApiToken(
        id=row.id,
        name=row.name,
        scopes=_scopes(row.scopes),
        cvr=row.cvr,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
        certificate=(
            CertificateLink(row.certificate_issuer_key_id, row.certificate_serial, row.identity_id)
            if row.certificate_serial is not None
            else None
        ),
    )


def _scopes(text: str) -> frozenset[Scope]:
    return frozenset(Scope(name) for name in text.split(",") if name)


def _grant(row: Row[Any]) -> AdministrationGrant:
    return AdministrationGrant(
        identity_id=row.identity_id,
        scopes=_scopes(row.scopes),
        granted_by=row.granted_by,
        granted_at=row.granted_at,
    )


def _chain(
    head: ChainHead, events: Sequence[AuditEvent], seal: AuditSeal
) -> tuple[list[dict[str, Any]], ChainHead]:
    """The rows of `events` chained after `head`, each sealed, and the new head."""
    seq, previous = head.seq, head.hash
    rows = []
    for audit_event in events:
        seq += 1
        digest = chain_hash(previous, seq, audit_event)
        rows.append(_audit_row(audit_event, seq, previous, digest, seal.event(seq, digest)))
        previous = digest
    return rows, dataclasses.replace(head, seq=seq, hash=previous)


def _audit_row(
    event: AuditEvent, seq: int, prev_hash: str, digest: str, mac: str
) -> dict[str, Any]:
    return {
        "mac": mac,
        "seq": seq,
        "prev_hash": prev_hash,
        "hash": digest,
        "at": event.at,
        "action": event.action,
        "outcome": str(event.outcome),
        "actor": str(event.actor),
        "source": event.actor.source,
        "request_id": event.request_id,
        "identity_id": event.identity_id,
        "order_reference": event.order_reference,
        "serial": event.serial,
        "reason": event.reason,
        "details": json.dumps(dict(event.details), sort_keys=True),
    }


def _organisation(row: Row[Any]) -> Organisation:
    return Organisation(
        cvr=row.cvr,
        name=row.name,
        email_domains=tuple(domain for domain in row.email_domains.split(",") if domain),
        status=OrganisationStatus(row.status),
        created_at=row.created_at,
    )


def _identity(row: Row[Any]) -> Identity:
    return Identity(
        id=row.id,
        type=IdentityType(row.type),
        display_name=row.display_name,
        organisation_name=row.organisation_name,
        cvr=row.cvr,
        given_name=row.given_name,
        surname=row.surname,
        email=row.email,
        status=IdentityStatus(row.status),
        created_at=row.created_at,
        external_id=row.external_id,
    )


def _order(row: Row[Any]) -> Order:
    return Order(
        id=row.id,
        reference=row.reference,
        identity_id=row.identity_id,
        profile=row.profile,
        status=OrderStatus(row.status),
        created_at=row.created_at,
        expires_at=row.expires_at,
        failed_attempts=row.failed_attempts,
        locked_at=row.locked_at,
        claimed_serial=_serial_or_none(row.claimed_serial),
        claimed_at=row.claimed_at,
        consumed_at=row.consumed_at,
        cancelled_at=row.cancelled_at,
        certificate_serial=_serial_or_none(row.certificate_serial),
        ca_label=row.ca_label,
        require_approval=bool(row.require_approval),
    )


def _request(row: Row[Any]) -> EnrollmentRequest:
    return EnrollmentRequest(
        order_id=row.order_id,
        order_reference=row.order_reference,
        identity_id=row.identity_id,
        csr_der=bytes(row.csr_der),
        csr_sha256=row.csr_sha256,
        status=RequestStatus(row.status),
        created_at=row.created_at,
        decided_at=row.decided_at,
        decided_by=row.decided_by,
        reason=row.reason,
    )


def _is_certificate(issuer: KeyId, serial: Serial) -> ColumnElement[bool]:
    """The one certificate `issuer` issued with `serial`."""
    return (CERTIFICATES.c.issuer_key_id == issuer.hex) & (CERTIFICATES.c.serial == serial.hex)


def _is_ocsp_response(issuer_key_id: str, serial: Serial, hash_name: str) -> ColumnElement[bool]:
    return (
        (OCSP_RESPONSES.c.issuer_key_id == issuer_key_id)
        & (OCSP_RESPONSES.c.serial == serial.hex)
        & (OCSP_RESPONSES.c.hash_name == hash_name)
    )


def _ocsp_response(row: Row[Any]) -> StoredOcspResponse:
    return StoredOcspResponse(
        status=row.status,
        der=row.der,
        this_update=row.this_update,
        next_update=row.next_update,
        refresh_at=row.refresh_at,
    )


def _certificate(row: Row[Any]) -> CertificateRecord:
    return CertificateRecord(
        serial=Serial.from_hex(row.serial),
        issuer_key_id=KeyId(row.issuer_key_id),
        identity_id=row.identity_id,
        order_id=row.order_id,
        renewal_of=_serial_or_none(row.renewal_of),
        profile=row.profile,
        status=CertificateStatus(row.status),
        public_key_sha256=row.public_key_sha256,
        created_at=row.created_at,
        not_before=row.not_before,
        not_after=row.not_after,
        issued_at=row.issued_at,
        der=row.der,
        revoked_at=row.revoked_at,
        revocation_reason=(
            _reason(row.revocation_reason) if row.status == str(CertificateStatus.REVOKED) else None
        ),
        invalidity_date=row.invalidity_date,
    )


def _serial_or_none(value: str | None) -> Serial | None:
    return Serial.from_hex(value) if value else None


def _reason_column(reason: RevocationReason) -> str | None:
    """What the column keeps: NULL for unspecified, as the CRL and OCSP omit the reasonCode."""
    return None if reason is RevocationReason.UNSPECIFIED else reason.value


def _reason(value: str | None) -> RevocationReason:
    return RevocationReason(value) if value else RevocationReason.UNSPECIFIED


def _audit_event(row: Row[Any]) -> AuditEvent:
    kind, _, name = row.actor.partition(":")
    return AuditEvent.as_stored(
        action=row.action,
        outcome=Outcome(row.outcome),
        actor=Actor(kind, name, row.source),
        at=row.at,
        identity_id=row.identity_id,
        order_reference=row.order_reference,
        serial=row.serial,
        reason=row.reason,
        request_id=row.request_id,
        details=json.loads(row.details),
    )


__all__: Sequence[str] = ("Store", "StoreTx")
