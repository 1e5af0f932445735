"""Console sessions in the store: secrets kept as HMACs only, idle and absolute ends, sign-out,
codes once and sealed; another instance on the same database finds the same session."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest

from est_ca.admin.access import Principal, PrincipalKind, Scope
from est_ca.audit import AuditSeal
from est_ca.clock import SettableClock
from est_ca.console.i18n import negotiate, translator
from est_ca.console.sessions import IDLE, LIFETIME, SESSION_PURPOSE, Sessions
from est_ca.registration.codes import SecretHasher, new_key
from est_ca.store.store import Store

PRINCIPAL = Principal(
    PrincipalKind.TOKEN, "ops", frozenset({Scope.READ, Scope.ORDER}), "99999999", "127.0.0.1"
)
HASHER = SecretHasher(b"k" * 32)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = Store(database_url, seal=AuditSeal(new_key()))
    await opened.migrate()
    yield opened
    await opened.close()


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock()


@pytest.fixture
def sessions(store: Store, clock: SettableClock) -> Sessions:
    return Sessions(store, HASHER, clock)


async def test_a_session_is_found_by_its_cookie_and_the_store_keeps_only_the_secrets_hmac(
    sessions: Sessions, store: Store
) -> None:
    cookie = await sessions.open(PRINCIPAL)
    session_id, secret = cookie.split(".")
    found = await sessions.find(cookie)
    assert found is not None
    assert found.principal == PRINCIPAL
    async with store.read() as tx:
        row = await tx.get_console_session(session_id)
    assert row is not None
    assert row["secret_hash"] == HASHER.hash(secret, SESSION_PURPOSE)
    assert secret not in repr(row)
    assert found.csrf not in repr(row)


async def test_another_instance_on_the_same_database_finds_the_session(
    sessions: Sessions, store: Store, clock: SettableClock
) -> None:
    """What a restart, or a second instance behind the same name, sees: no sticky sessions."""
    cookie = await sessions.open(PRINCIPAL)
    one = await sessions.find(cookie)
    other = await Sessions(store, HASHER, clock).find(cookie)
    assert other is not None
    assert one is not None
    assert other.principal == PRINCIPAL
    assert other.csrf == one.csrf


async def test_a_wrong_secret_or_a_malformed_cookie_finds_nothing(sessions: Sessions) -> None:
    session_id, secret = (await sessions.open(PRINCIPAL)).split(".")
    other = "A" if secret[0] != "A" else "B"
    assert await sessions.find(f"{session_id}.{other}{secret[1:]}") is None
    assert await sessions.find(session_id) is None
    assert await sessions.find(None) is None


async def test_a_session_idle_too_long_has_ended_and_use_keeps_one_alive(
    sessions: Sessions, clock: SettableClock
) -> None:
    kept, dropped = await sessions.open(PRINCIPAL), await sessions.open(PRINCIPAL)
    clock.advance(IDLE - dt.timedelta(seconds=1))
    assert await sessions.find(kept) is not None
    clock.advance(dt.timedelta(seconds=2))
    assert await sessions.find(kept) is not None
    assert await sessions.find(dropped) is None


async def test_a_session_ends_after_its_lifetime_however_busy(
    sessions: Sessions, clock: SettableClock
) -> None:
    cookie = await sessions.open(PRINCIPAL)
    step = IDLE - dt.timedelta(minutes=1)
    elapsed = dt.timedelta()
    while elapsed + step <= LIFETIME:
        clock.advance(step)
        elapsed += step
        assert await sessions.find(cookie) is not None
    clock.advance(step)
    assert await sessions.find(cookie) is None


async def test_sign_out_and_revocation_end_sessions_on_the_server(sessions: Sessions) -> None:
    first, second = await sessions.open(PRINCIPAL), await sessions.open(PRINCIPAL)
    assert await sessions.close(first)
    assert await sessions.find(first) is None
    assert await sessions.revoke(PRINCIPAL.name) == 1
    assert await sessions.find(second) is None


async def test_a_one_time_code_is_handed_out_once_and_kept_sealed(
    sessions: Sessions, store: Store
) -> None:
    session = await sessions.find(await sessions.open(PRINCIPAL))
    assert session is not None
    await sessions.keep_handout(session, "REF", "CODE-7f3a9c")
    async with store.read() as tx:
        row = await tx.get_console_session(session.id)
    assert row is not None
    assert "CODE-7f3a9c" not in row["handouts"]
    assert await sessions.take_handout(session, "REF") == "CODE-7f3a9c"
    assert await sessions.take_handout(session, "REF") is None


async def test_the_csrf_token_is_the_sessions_own(sessions: Sessions) -> None:
    one = await sessions.find(await sessions.open(PRINCIPAL))
    two = await sessions.find(await sessions.open(PRINCIPAL))
    assert one is not None
    assert two is not None
    assert one.csrf_matches(one.csrf)
    assert not one.csrf_matches(two.csrf)
    assert not one.csrf_matches(None)
    assert not one.csrf_matches("")


def test_the_language_is_the_switch_then_accept_language_then_english() -> None:
    assert negotiate("da", "en") == "da"
    assert negotiate(None, "de-DE,da;q=0.8,en;q=0.5") == "da"
    assert negotiate(None, "en-GB,da;q=0.9") == "en"
    assert negotiate("xx", "fr") == "en"
    assert negotiate(None, None) == "en"
    assert translator("da")("sign_in") == "Log ind"
    assert translator("da")("no-such-key") == "no-such-key"
