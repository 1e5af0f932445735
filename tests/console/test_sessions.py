"""Console sessions: secrets kept as HMACs only, idle and absolute ends, sign-out, codes once."""

from __future__ import annotations

import datetime as dt

from est_ca.admin.access import Principal, PrincipalKind, Scope
from est_ca.clock import SettableClock
from est_ca.console.i18n import negotiate, translator
from est_ca.console.sessions import IDLE, LIFETIME, SESSION_PURPOSE, Sessions
from est_ca.registration.codes import SecretHasher

PRINCIPAL = Principal(PrincipalKind.TOKEN, "ops", frozenset({Scope.ADMIN}), None, "127.0.0.1")


def _sessions() -> tuple[Sessions, SettableClock, SecretHasher]:
    clock = SettableClock()
    hasher = SecretHasher(b"k" * 32)
    return Sessions(hasher, clock), clock, hasher


def test_a_session_is_found_by_its_cookie_and_keeps_only_the_secrets_hmac() -> None:
    sessions, _, hasher = _sessions()
    cookie = sessions.open(PRINCIPAL)
    session_id, secret = cookie.split(".")
    found = sessions.find(cookie)
    assert found is not None
    assert found.principal == PRINCIPAL
    stored = sessions._sessions[session_id]
    assert stored.secret_hash == hasher.hash(secret, SESSION_PURPOSE)
    assert secret not in repr(stored)


def test_a_wrong_secret_or_a_malformed_cookie_finds_nothing() -> None:
    sessions, _, _ = _sessions()
    session_id, secret = sessions.open(PRINCIPAL).split(".")
    other = "A" if secret[0] != "A" else "B"
    assert sessions.find(f"{session_id}.{other}{secret[1:]}") is None
    assert sessions.find(session_id) is None
    assert sessions.find(None) is None


def test_a_session_idle_too_long_has_ended_and_use_keeps_one_alive() -> None:
    sessions, clock, _ = _sessions()
    kept, dropped = sessions.open(PRINCIPAL), sessions.open(PRINCIPAL)
    clock.advance(IDLE - dt.timedelta(seconds=1))
    assert sessions.find(kept) is not None
    clock.advance(dt.timedelta(seconds=2))
    assert sessions.find(kept) is not None
    assert sessions.find(dropped) is None


def test_a_session_ends_after_its_lifetime_however_busy() -> None:
    sessions, clock, _ = _sessions()
    cookie = sessions.open(PRINCIPAL)
    step = IDLE - dt.timedelta(minutes=1)
    elapsed = dt.timedelta()
    while elapsed + step <= LIFETIME:
        clock.advance(step)
        elapsed += step
        assert sessions.find(cookie) is not None
    clock.advance(step)
    assert sessions.find(cookie) is None


def test_sign_out_and_revocation_end_sessions_on_the_server() -> None:
    sessions, _, _ = _sessions()
    first, second = sessions.open(PRINCIPAL), sessions.open(PRINCIPAL)
    assert sessions.close(first)
    assert sessions.find(first) is None
    assert sessions.revoke(PRINCIPAL.name) == 1
    assert sessions.find(second) is None


def test_a_one_time_code_is_handed_out_once() -> None:
    sessions, _, _ = _sessions()
    session = sessions.find(sessions.open(PRINCIPAL))
    assert session is not None
    sessions.keep_handout(session, "REF", "CODE")
    assert sessions.take_handout(session, "REF") == "CODE"
    assert sessions.take_handout(session, "REF") is None


def test_the_csrf_token_is_the_sessions_own() -> None:
    sessions, _, _ = _sessions()
    one = sessions.find(sessions.open(PRINCIPAL))
    two = sessions.find(sessions.open(PRINCIPAL))
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
