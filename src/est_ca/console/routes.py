"""The web console (/console/ on the admin listener): HTML pages over `Administration`.

It parses forms, calls the same domain services with the same `Principal` the admin API would
build for the same credentials, and renders Jinja2 templates (autoescaped). Nothing here
decides who may do what: `Administration` does, so a CVR-confined administrator sees only its
organisation here too, and another organisation's object is 404 as in the API.

Every response carries a strict Content-Security-Policy (no inline script or style), no
caching, no referrer; every form carries a CSRF token bound to the session (the sign-in forms
one bound to a pre-session cookie), and a POST without the right one is 403.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from aiohttp import web
from aiohttp.typedefs import Middleware
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from est_ca.admin.access import ApiToken, Principal, Scope
from est_ca.admin.service import Administration
from est_ca.admin.tokens import Tokens
from est_ca.audit import AuditEvent, Outcome
from est_ca.audit_trail import AuditTrail
from est_ca.ca.certificates import CertificateRecord, CertificateStatus, KeyId, Serial
from est_ca.clock import Clock
from est_ca.console.i18n import LANGUAGES, negotiate, translator
from est_ca.console.sessions import Session, Sessions
from est_ca.errors import (
    BadRequest,
    EstCaError,
    NotEntitled,
    NotFound,
    PayloadTooLarge,
    Unauthenticated,
)
from est_ca.keyfiles import load_key
from est_ca.registration import codes
from est_ca.registration.codes import SecretHasher
from est_ca.registration.identities import Identity, IdentityType, check_cvr
from est_ca.registration.importing import ImportFormat, ImportRejected
from est_ca.registration.orders import OrderState
from est_ca.registration.organisations import OrganisationStatus
from est_ca.registration.registry import Registry
from est_ca.revocation.reasons import RevocationReason
from est_ca.service import Service
from est_ca.store.store import Store
from est_ca.web.errors import status_for
from est_ca.web.inputs import peer_certificate

PREFIX = "/console"
SESSION_COOKIE = "est_ca_console"
LANGUAGE_COOKIE = "est_ca_language"
# Before sign-in: what the sign-in forms' CSRF token is bound to.
SIGN_IN_COOKIE = "est_ca_sign_in"
COOKIE_PATH = PREFIX + "/"
# connect-src 'self': the import form's upload progress (console.js sends it by XHR).
CSP = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
# Pages list at most this many rows (search filters within them).
PAGE = 500
EXPIRING_WITHIN = dt.timedelta(days=30)
# How many identities a search looks through.
SEARCH_SCAN = 20_000
_PUBLIC = ("/sign-in", "/static/", "/language/")
_SAME_SITE = frozenset({"same-origin", "none"})
_HERE = Path(__file__).parent
_STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}


@dataclasses.dataclass(frozen=True)
class Console:
    """What the console's handlers use: the admin services and its own sessions."""

    administration: Administration
    tokens: Tokens
    registry: Registry
    audit: AuditTrail
    sessions: Sessions
    store: Store
    clock: Clock
    certificate_scopes: frozenset[Scope]
    import_max_bytes: int
    # Keys the sign-in forms' CSRF token (derived from hmac.key: alike on every instance).
    form_key: bytes
    templates: jinja2.Environment
    static: Mapping[str, tuple[bytes, str]]


@dataclasses.dataclass
class Context:
    language: str
    session: Session | None


CONSOLE = web.AppKey("console", Console)
CONTEXT = web.RequestKey("console_context", Context)


# -- mounting ---------------------------------------------------------------------------------


def is_console(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def api_only(*middlewares: Middleware) -> list[Middleware]:
    """The admin API's middlewares, skipped for the console (it authenticates by session and
    refuses cross-site forms by CSRF token itself)."""
    return [_outside_console(middleware) for middleware in middlewares]


def _outside_console(middleware: Middleware) -> Middleware:
    @web.middleware
    async def wrapped(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if is_console(request.path):
            return await handler(request)
        return await middleware(request, handler)

    return wrapped


def mount(app: web.Application, service: Service) -> None:
    """Add the console under /console/ to the admin application of `service`."""
    administration = service.administration
    tokens = service.tokens
    registry = service.registry
    clock = service.clock
    # Session ids are kept as HMACs under the key that keeps codes and tokens (own label).
    key = load_key(service.files.hmac_key)
    sessions = Sessions(service.store, SecretHasher(key), clock)
    certificate_scopes = Scope.parse_many(
        ",".join(service.settings.admin.client_certificate_scopes)
    )
    # A form with an import file is the largest body the console takes.
    console = web.Application(
        middlewares=[guard], client_max_size=service.settings.admin.import_max_bytes + 65536
    )
    console[CONSOLE] = Console(
        administration=administration,
        tokens=tokens,
        registry=registry,
        audit=service.audit,
        sessions=sessions,
        store=service.store,
        clock=clock,
        certificate_scopes=certificate_scopes,
        import_max_bytes=service.settings.admin.import_max_bytes,
        # Every instance's alike: a sign-in form from one may be posted to another.
        form_key=hmac.new(key, b"est-ca console sign-in form", hashlib.sha256).digest(),
        templates=jinja2.Environment(
            loader=jinja2.FileSystemLoader(_HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        ),
        static={
            path.name: (path.read_bytes(), _STATIC_TYPES[path.suffix])
            for path in (_HERE / "static").iterdir()
            if path.suffix in _STATIC_TYPES
        },
    )
    _add_routes(console)
    app.add_subapp(PREFIX, console)
    app.router.add_get(PREFIX, _to_console)


async def _to_console(request: web.Request) -> web.Response:
    return _redirect(COOKIE_PATH)


# -- every request ----------------------------------------------------------------------------


@web.middleware
async def guard(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Language, session, CSRF and the security headers; domain errors as an HTML page."""
    console = request.app[CONSOLE]
    context = request[CONTEXT] = Context(
        negotiate(request.cookies.get(LANGUAGE_COOKIE), request.headers.get("Accept-Language")),
        await _session(request, console),
    )
    try:
        response = await _guarded(request, handler, console, context)
    except EstCaError as error:
        if context.session is not None:
            operation = f"{request.method} {request.path[:200]}"
            await console.administration.refused(context.session.principal, operation, error)
        response = _error_page(request, status_for(error), error.detail)
    except web.HTTPException as exc:
        if exc.status >= 400:
            response = _error_page(request, exc.status, exc.reason)
        else:
            raise
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


async def _guarded(
    request: web.Request,
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    console: Console,
    context: Context,
) -> web.StreamResponse:
    public = any(request.path.startswith(PREFIX + p) for p in _PUBLIC)
    if request.method == "POST":
        site = request.headers.get("Sec-Fetch-Site")
        if site is not None and site.lower() not in _SAME_SITE:
            raise NotEntitled("a form from another site cannot change anything here")
        form = await request.post()
        presented = form.get("csrf")
        presented = presented if isinstance(presented, str) else None
        if public:
            expected = _sign_in_token(console, request.cookies.get(SIGN_IN_COOKIE))
            valid = (
                presented is not None
                and expected is not None
                and hmac.compare_digest(presented.encode("utf-8", "replace"), expected.encode())
            )
        else:
            valid = context.session is not None and context.session.csrf_matches(presented)
        if not valid:
            raise NotEntitled(translator(context.language)("forbidden_form"))
    if not public and context.session is None:
        return _redirect(f"{PREFIX}/sign-in")
    return await handler(request)


async def _session(request: web.Request, console: Console) -> Session | None:
    session = await console.sessions.find(request.cookies.get(SESSION_COOKIE))
    if session is not None and session.certificate_sha256 is not None:
        # A certificate's session is good only on a connection presenting that certificate.
        der = peer_certificate(request)
        if der is None or not hmac.compare_digest(
            hashlib.sha256(der).hexdigest(), session.certificate_sha256
        ):
            return None
        if session.principal.scopes != console.certificate_scopes:
            # The scopes configured for certificates now: sessions outlive a restart, and an
            # operator who narrowed them (and restarted) means the sessions signed in before.
            principal = dataclasses.replace(session.principal, scopes=console.certificate_scopes)
            session = dataclasses.replace(session, principal=principal)
    if session is not None and session.token_id is not None:
        # A token revoked (by the CLI, the API, another instance) or expired ends its sessions
        # at once: one read of its row per request. An IdM's token also ends with its system
        # certificate or its administration grant, and a narrowed grant narrows the session.
        scopes = await console.tokens.scopes_now(session.token_id)
        if scopes is None:
            await console.sessions.end(session.id)
            return None
        if scopes != session.principal.scopes:
            principal = dataclasses.replace(session.principal, scopes=scopes)
            session = dataclasses.replace(session, principal=principal)
    if session is not None and session.principal.source != request.remote:
        # The audit trail names the address each request comes from, not the sign-in's: a
        # session cookie used elsewhere (a stolen one) shows where it was used.
        principal = dataclasses.replace(session.principal, source=request.remote)
        session = dataclasses.replace(session, principal=principal)
    return session


def _sign_in_token(console: Console, cookie: str | None) -> str | None:
    if not cookie:
        return None
    return hmac.new(console.form_key, cookie.encode(), hashlib.sha256).hexdigest()


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _render(
    request: web.Request, template: str, *, status: int = 200, **values: Any
) -> web.Response:
    console = request.app[CONSOLE]
    context = request[CONTEXT]
    session = context.session
    html = console.templates.get_template(template).render(
        t=translator(context.language),
        lang=context.language,
        languages=LANGUAGES,
        here=quote(request.path_qs, safe="/?=&"),
        prefix=PREFIX,
        principal=session.principal if session else None,
        csrf=session.csrf if session else "",
        **values,
    )
    return web.Response(text=html, content_type="text/html", charset="utf-8", status=status)


def _error_page(request: web.Request, status: int, detail: str) -> web.Response:
    return _render(request, "error.html", status=status, status_code=status, detail=detail)


def _me(request: web.Request) -> Principal:
    session = request[CONTEXT].session
    assert session is not None  # the guard redirected otherwise
    return session.principal


def _cookie(response: web.StreamResponse, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(
        name,
        value,
        path=COOKIE_PATH,
        secure=True,
        httponly=True,
        samesite="Strict",
        max_age=max_age,
    )


# -- sign-in ----------------------------------------------------------------------------------


async def sign_in_page(request: web.Request, *, error: str = "", status: int = 200) -> web.Response:
    console = request.app[CONSOLE]
    cookie = request.cookies.get(SIGN_IN_COOKIE) or secrets.token_urlsafe(32)
    der = peer_certificate(request)
    certificate_name = None
    if der is not None:
        certificate = x509.load_der_x509_certificate(der)
        certificate_name = certificate.subject.rfc4514_string()
    response = _render(
        request,
        "sign_in.html",
        status=status,
        form_csrf=_sign_in_token(console, cookie),
        error=error,
        signed_out="signed_out" in request.query,
        certificate_name=certificate_name,
    )
    _cookie(response, SIGN_IN_COOKIE, cookie, None)
    return response


async def sign_in(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    form = await request.post()
    token = form.get("token")
    if not isinstance(token, str) or not token.strip():
        return await sign_in_page(request, error="bad_token", status=401)
    try:
        principal = await console.tokens.authenticate(token, request.remote)
    except Unauthenticated:
        return await sign_in_page(request, error="bad_token", status=401)
    # The token authenticated, so it is `estca_<id hex>_<secret>`: its id, for the checks.
    token_id = uuid.UUID(token.strip().split("_")[1])
    return await _signed_in(request, await console.sessions.open(principal, token_id=token_id))


async def sign_in_with_certificate(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    der = peer_certificate(request)
    if der is None:  # the handshake verified any certificate against the admin trust anchor
        raise Unauthenticated("this connection presented no administrator certificate")
    principal = await console.tokens.authenticate_certificate(
        der, scopes=console.certificate_scopes, source=request.remote
    )
    sha256 = hashlib.sha256(der).hexdigest()
    return await _signed_in(
        request, await console.sessions.open(principal, certificate_sha256=sha256)
    )


async def _signed_in(request: web.Request, cookie: str) -> web.Response:
    """A new session (never one the browser brought along) replaces any earlier one."""
    await request.app[CONSOLE].sessions.close(request.cookies.get(SESSION_COOKIE))
    response = _redirect(COOKIE_PATH)
    _cookie(response, SESSION_COOKIE, cookie, None)  # a session cookie: gone with the browser
    response.del_cookie(SIGN_IN_COOKIE, path=COOKIE_PATH)
    return response


async def sign_out(request: web.Request) -> web.Response:
    await request.app[CONSOLE].sessions.close(request.cookies.get(SESSION_COOKIE))
    response = _redirect(f"{PREFIX}/sign-in?signed_out")
    response.del_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    return response


async def language(request: web.Request) -> web.Response:
    """The language switch: a link (no state but a preference), back to where it was used."""
    chosen = request.match_info["language"]
    if chosen not in LANGUAGES:
        raise NotFound(f"no language {chosen!r}")
    back = request.query.get("next", COOKIE_PATH)
    if not back.startswith(COOKIE_PATH) or "//" in back or "\\" in back or not back.isprintable():
        back = COOKIE_PATH
    response = _redirect(back)
    _cookie(response, LANGUAGE_COOKIE, chosen, 365 * 24 * 3600)
    return response


async def static(request: web.Request) -> web.Response:
    found = request.app[CONSOLE].static.get(request.match_info["name"])
    if found is None:
        raise NotFound("no such file")
    body, content_type = found
    return web.Response(
        body=body, headers={"Content-Type": content_type, "Cache-Control": "no-cache"}
    )


# -- overview ---------------------------------------------------------------------------------


async def overview(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    me = _me(request)
    now = console.clock.now()
    administration = console.administration
    identities = await administration.identities(
        me, type=None, cvr=None, status=None, limit=PAGE, offset=0
    )
    valid = await administration.certificates(
        me,
        identity_id=None,
        status=CertificateStatus.ISSUED,
        expires_after=now,
        expires_before=None,
        limit=PAGE,
        offset=0,
    )
    pending = await administration.orders(
        me, identity_id=None, state=OrderState.PENDING, limit=PAGE, offset=0
    )
    # The store's renewal window (issued, still valid, notAfter within 30 days), not a filter
    # over the first page of valid ones, which may not hold them all.
    window = await administration.certificates(
        me,
        identity_id=None,
        status=None,
        expires_after=None,
        expires_before=None,
        expiring_within=EXPIRING_WITHIN,
        limit=PAGE,
        offset=0,
    )
    expiring = sorted(window, key=lambda r: r.not_after or now)
    return _render(
        request,
        "overview.html",
        counts=[
            ("count_identities", _count(identities)),
            ("count_issued", _count(valid)),
            ("count_pending", _count(pending)),
        ],
        expiring=[_row(r) for r in expiring],
        recent=_audit_rows(await console.audit.events(limit=10, newest_first=True))
        if me.cvr is None and Scope.ADMIN in me.scopes
        else None,
    )


def _count(items: list[Any]) -> str:
    return f"{PAGE}+" if len(items) >= PAGE else str(len(items))


# -- identities -------------------------------------------------------------------------------


async def identities(request: web.Request) -> web.Response:
    """The identities, or those whose name or email contains the search text: the domain has
    no text search yet, so the console scans pages of them (up to SEARCH_SCAN)."""
    console = request.app[CONSOLE]
    me = _me(request)
    query = request.query.get("q", "").strip()[:200]
    cvr = _cvr_query(request)
    folded = query.casefold()
    found: list[Identity] = []
    offset = 0
    while offset < (SEARCH_SCAN if query else PAGE) and len(found) < PAGE:
        batch = await console.administration.identities(
            me, type=None, cvr=cvr, status=None, limit=PAGE, offset=offset
        )
        found += [
            i
            for i in batch
            if folded in i.display_name.casefold() or folded in (i.email or "").casefold()
        ]
        if len(batch) < PAGE:
            break
        offset += PAGE
    return _render(request, "identities.html", identities=found[:PAGE], query=query, cvr=cvr or "")


def _cvr_query(request: web.Request) -> str | None:
    text = request.query.get("cvr", "").strip()
    return check_cvr(text[:20]) if text else None


_IDENTITY_FORM = ("type", "cvr", "given_name", "surname", "display_name", "email")


async def new_identity(request: web.Request) -> web.Response:
    me = _me(request)
    return _identity_form(request, dict.fromkeys(_IDENTITY_FORM, "") | {"cvr": me.cvr or ""})


def _identity_form(
    request: web.Request, values: Mapping[str, str], error: str = "", status: int = 200
) -> web.Response:
    return _render(
        request,
        "identity_new.html",
        status=status,
        values=values,
        error=error,
        types=[t.value for t in IdentityType],
        confined=_me(request).cvr,
    )


async def create_identity(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    me = _me(request)
    form = await request.post()
    values = {name: str(form.get(name, "")).strip()[:300] for name in _IDENTITY_FORM}
    if me.cvr is not None:
        values["cvr"] = me.cvr
    try:
        kind = IdentityType(values["type"])
    except ValueError:
        return _identity_form(request, values, "type: user, organisation or system", 400)
    try:
        identity = await console.administration.create_identity(
            me,
            type=kind,
            cvr=values["cvr"],
            display_name=values["display_name"] or None,
            given_name=values["given_name"] or None,
            surname=values["surname"] or None,
            email=values["email"] or None,
        )
    except BadRequest as error:
        return _identity_form(request, values, error.detail, 400)
    return _redirect(f"{PREFIX}/identities/{identity.id}")


def _identity_id(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["identity_id"])
    except ValueError as exc:
        raise NotFound("no such identity") from exc


async def identity(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    me = _me(request)
    found = await console.administration.identity(me, _identity_id(request))
    certificates = await console.administration.certificates(
        me,
        identity_id=found.id,
        status=None,
        expires_after=None,
        expires_before=None,
        limit=PAGE,
        offset=0,
    )
    orders = await console.administration.orders(
        me, identity_id=found.id, state=None, limit=PAGE, offset=0
    )
    return _render(
        request,
        "identity.html",
        identity=found,
        certificates=[_row(r) for r in certificates if r.status is not CertificateStatus.RESERVED],
        orders=[(o, console.registry.order_state(o).value) for o in orders],
    )


async def place_order(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    session = request[CONTEXT].session
    assert session is not None
    form = await request.post()
    profile = str(form.get("profile", "")).strip()[:100] or None
    placed = await console.administration.place_order(
        session.principal, _identity_id(request), profile=profile
    )
    await console.sessions.keep_handout(session, placed.order.reference, placed.one_time_code)
    return _redirect(f"{PREFIX}/orders/{quote(placed.order.reference)}")


async def order(request: web.Request) -> web.Response:
    """An order; right after it was placed, once, with its one-time code and a hand-out."""
    console = request.app[CONSOLE]
    session = request[CONTEXT].session
    assert session is not None
    found = await console.administration.order(session.principal, _reference(request))
    owner = await console.administration.identity(session.principal, found.identity_id)
    return _render(
        request,
        "order.html",
        order=found,
        state=console.registry.order_state(found).value,
        identity=owner,
        code=await console.sessions.take_handout(session, found.reference),
    )


async def disable_page(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    me = _me(request)
    me.require(Scope.REVOKE)
    found = await console.administration.identity(me, _identity_id(request))
    return _render(
        request,
        "identity_disable.html",
        identity=found,
        reasons=[r.value for r in RevocationReason],
        default=RevocationReason.CESSATION_OF_OPERATION.value,
    )


async def disable(request: web.Request) -> web.Response:
    """Disable an identity: its open orders are cancelled, its live certificates revoked."""
    console = request.app[CONSOLE]
    form = await request.post()
    reason = RevocationReason.parse(str(form.get("reason", "cessationOfOperation")))
    identity_id = _identity_id(request)
    await console.administration.disable_identity(_me(request), identity_id, reason)
    return _redirect(f"{PREFIX}/identities/{identity_id}")


async def order_action(request: web.Request) -> web.Response:
    """Cancel or unlock an order (an unlock lets a locked order's holder try its code again)."""
    console = request.app[CONSOLE]
    reference = _reference(request)
    if request.match_info["action"] == "cancel":
        changed = await console.administration.cancel_order(_me(request), reference)
    else:
        changed = await console.administration.unlock_order(_me(request), reference)
    return _redirect(f"{PREFIX}/orders/{quote(changed.reference)}")


_EDITABLE = ("display_name", "given_name", "surname", "email")


async def edit_identity_page(request: web.Request) -> web.Response:
    """The fields the API's PATCH changes; the organisation's name is the organisation's."""
    console = request.app[CONSOLE]
    me = _me(request)
    me.require(Scope.ORDER)
    found = await console.administration.identity(me, _identity_id(request))
    values = {name: getattr(found, name) or "" for name in _EDITABLE}
    return _render(request, "identity_edit.html", identity=found, values=values, errors={})


async def edit_identity(request: web.Request) -> web.Response:
    """Only the fields changed are sent: the domain validates them and audits the change as
    for the API (`identity.updated`); a refusal is shown next to its field and audited."""
    console = request.app[CONSOLE]
    me = _me(request)
    current = await console.administration.identity(me, _identity_id(request))
    form = await request.post()
    values = {name: str(form.get(name, "")).strip()[:300] for name in _EDITABLE}
    changed = {
        name: value for name, value in values.items() if value != (getattr(current, name) or "")
    }
    try:
        await console.administration.update_identity(me, current.id, **changed)
    except BadRequest as error:
        await console.administration.refused(me, f"{request.method} {request.path[:200]}", error)
        field = error.field if error.field in _EDITABLE else ""
        return _render(
            request,
            "identity_edit.html",
            status=400,
            identity=current,
            values=values,
            errors={field: error.detail},
        )
    return _redirect(f"{PREFIX}/identities/{current.id}")


def _reference(request: web.Request) -> str:
    """An order reference as a person may type it; nothing a database could choke on."""
    text = request.match_info["reference"]
    normalised = codes.normalise(text)
    if not 1 <= len(normalised) <= 64 or not set(normalised) <= set(codes.ALPHABET):
        raise NotFound("no such order")
    return text


# -- certificates -----------------------------------------------------------------------------


def _row(record: CertificateRecord) -> dict[str, Any]:
    return {
        "serial": record.serial.hex,
        "status": record.status.value,
        "profile": record.profile,
        "identity_id": str(record.identity_id),
        "not_after": _when(record.not_after),
        "url": f"{PREFIX}/certificates/{record.serial.hex}?issuer={record.issuer_key_id.hex}",
    }


def _when(moment: dt.datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "-"


# What a person filters by: good and expired are issued certificates judged by notAfter now.
_STATUS_FILTERS = ("good", "expired", "revoked", "issued", "reserved", "abandoned")


async def certificates(request: web.Request) -> web.Response:
    """Filtered by status, by the type of identity and by expiry within N days, all through
    the API's query (`Administration.certificates`), so confinement is the API's."""
    console = request.app[CONSOLE]
    now = console.clock.now()
    text = request.query.get("status", "")
    kind = request.query.get("type", "")
    days = request.query.get("expiring", "").strip()
    if text and text not in _STATUS_FILTERS:
        raise BadRequest("status must be one of " + ", ".join(_STATUS_FILTERS), field="status")
    try:
        identity_type = IdentityType(kind) if kind else None
    except ValueError as exc:
        raise BadRequest("type must be user, organisation or system", field="type") from exc
    if days and not (days.isdigit() and 1 <= int(days) <= 3650):
        raise BadRequest("expiring is a number of days, 1 to 3650", field="expiring")
    if text in ("good", "expired"):
        status: CertificateStatus | None = CertificateStatus.ISSUED
    else:
        status = CertificateStatus(text) if text else None
    records = await console.administration.certificates(
        _me(request),
        identity_id=None,
        status=status,
        expires_after=now if text == "good" else None,
        expires_before=now if text == "expired" else None,
        expiring_within=dt.timedelta(days=int(days)) if days else None,
        identity_type=identity_type,
        limit=PAGE,
        offset=0,
    )
    return _render(
        request,
        "certificates.html",
        certificates=[_row(r) for r in records],
        selected=text,
        statuses=_STATUS_FILTERS,
        kind=kind,
        types=[t.value for t in IdentityType],
        expiring=days,
    )


async def _certificate(request: web.Request) -> CertificateRecord:
    issuer = request.query.get("issuer")
    return await request.app[CONSOLE].administration.certificate(
        _me(request),
        Serial.from_hex(request.match_info["serial"]),
        KeyId.parse(issuer) if issuer else None,
    )


def _decoded(record: CertificateRecord) -> dict[str, str]:
    """The fields a person checks, decoded from the certificate itself."""
    if record.der is None:
        return {}
    certificate = x509.load_der_x509_certificate(record.der)
    key = certificate.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        key_text = f"RSA {key.key_size}"
    elif isinstance(key, ec.EllipticCurvePublicKey):
        key_text = f"EC {key.curve.name}"
    elif isinstance(key, ed25519.Ed25519PublicKey):
        key_text = "Ed25519"
    else:
        key_text = type(key).__name__
    return {
        "subject": certificate.subject.rfc4514_string(),
        "issuer": certificate.issuer.rfc4514_string(),
        "not_before": _when(certificate.not_valid_before_utc),
        "not_after": _when(certificate.not_valid_after_utc),
        "key": key_text,
    }


async def certificate(request: web.Request) -> web.Response:
    record = await _certificate(request)
    return _render(
        request,
        "certificate.html",
        record=_row(record),
        decoded=_decoded(record),
        revoked_at=_when(record.revoked_at) if record.revoked_at else "",
        reason=record.revocation_reason.value if record.revocation_reason else "",
        issuer_key_id=record.issuer_key_id.hex,
        has_pem=record.der is not None,
        may_revoke=record.status is CertificateStatus.ISSUED,
    )


async def certificate_pem(request: web.Request) -> web.Response:
    record = await _certificate(request)
    if record.der is None:
        raise NotFound("this certificate was never issued")
    pem = x509.load_der_x509_certificate(record.der).public_bytes(serialization.Encoding.PEM)
    return web.Response(
        body=pem,
        headers={
            "Content-Type": "application/x-pem-file",
            "Content-Disposition": f'attachment; filename="{record.serial.hex}.pem"',
        },
    )


async def revoke_page(request: web.Request) -> web.Response:
    record = await _certificate(request)
    return _render(
        request,
        "revoke.html",
        record=_row(record),
        decoded=_decoded(record),
        issuer_key_id=record.issuer_key_id.hex,
        reasons=[r.value for r in RevocationReason],
    )


async def revoke(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    form = await request.post()
    reason = RevocationReason.parse(str(form.get("reason", "unspecified")))
    record = await _certificate(request)
    revoked = await console.administration.revoke_certificate(
        _me(request), record.serial, reason, None, record.issuer_key_id
    )
    return _redirect(_row(revoked)["url"])


# -- import -----------------------------------------------------------------------------------


async def import_page(request: web.Request) -> web.Response:
    _me(request).require(Scope.ORDER)
    return _render(request, "import.html", errors=[], error="")


async def import_file(request: web.Request) -> web.Response:
    """CSV or JSON lines, all rows or none; every row's error with its line number. Codes of
    the orders it places are kept for the next page only, like a single order's."""
    console = request.app[CONSOLE]
    session = request[CONTEXT].session
    assert session is not None
    session.principal.require(Scope.ORDER)
    form = await request.post()
    upload = form.get("file")
    if not isinstance(upload, web.FileField):
        return _render(request, "import.html", status=400, errors=[], error="choose_file")
    data = upload.file.read(console.import_max_bytes + 1)
    if len(data) > console.import_max_bytes:
        raise PayloadTooLarge(f"the file is larger than the {console.import_max_bytes} bytes taken")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadRequest("the file must be UTF-8 text") from exc
    name = (upload.filename or "").lower()
    kind: ImportFormat = "jsonl" if name.endswith((".jsonl", ".ndjson", ".json")) else "csv"
    try:
        result = await console.administration.import_file(
            session.principal, text, kind, place_orders=form.get("place_orders") == "yes"
        )
    except ImportRejected as rejected:
        operation = f"{request.method} {request.path[:200]}"
        await console.administration.refused(session.principal, operation, rejected)
        return _render(request, "import.html", status=400, errors=rejected.errors, error="")
    handout = secrets.token_hex(8)
    await console.sessions.keep_handout(
        session,
        f"import:{handout}",
        json.dumps(
            {
                "created": [[str(i.id), i.display_name] for i in result.created],
                "existing": [[str(i.id), i.display_name] for i in result.existing],
                "orders": [[p.order.reference, p.one_time_code] for p in result.orders],
            }
        ),
    )
    return _redirect(f"{PREFIX}/import/{handout}")


async def import_result(request: web.Request) -> web.Response:
    session = request[CONTEXT].session
    assert session is not None
    kept = await request.app[CONSOLE].sessions.take_handout(
        session, f"import:{request.match_info['handout'][:32]}"
    )
    result = json.loads(kept) if kept else None
    return _render(request, "import_result.html", result=result)


# -- audit trail ------------------------------------------------------------------------------

AUDIT_PAGE = 100
_ACTION = re.compile(r"[a-z0-9_.]{1,64}")


def _audit_rows(events: list[AuditEvent]) -> list[dict[str, str]]:
    return [
        {
            "at": _when(event.at),
            "action": event.action,
            "outcome": event.outcome.value,
            "actor": str(event.actor),
            "source": event.actor.source or "",
            "subject": event.serial
            or event.order_reference
            or (str(event.identity_id) if event.identity_id else ""),
            "reason": event.reason or "",
        }
        for event in events
    ]


async def audit(request: web.Request) -> web.Response:
    """The newest events (the trail spans every organisation: the CA's own administrators
    only); `?verify` walks the whole chain, hashes and seals, and says whether it holds."""
    _me(request).require_unconfined()
    console = request.app[CONSOLE]
    action = request.query.get("action", "").strip()
    if action and not _ACTION.fullmatch(action):
        raise BadRequest("an action is like certificate.issued", field="action")
    outcome = request.query.get("outcome", "")
    if outcome and outcome not in {o.value for o in Outcome}:
        raise BadRequest("outcome is success, refused or failed", field="outcome")
    cvr = _cvr_query(request)
    events = await console.audit.events(
        action=action or None,
        outcome=outcome or None,
        cvr=cvr,
        limit=AUDIT_PAGE,
        newest_first=True,
    )
    report = await console.audit.verify() if "verify" in request.query else None
    return _render(
        request,
        "audit.html",
        events=_audit_rows(events),
        action=action,
        outcome=outcome,
        outcomes=[o.value for o in Outcome],
        cvr=cvr or "",
        report=report,
    )


# -- organisations ----------------------------------------------------------------------------


def _organisation_reader(request: web.Request) -> Principal:
    """The register of organisations is the CA's own administrators' to read: a confined
    administrator finds no such page (404), as it finds no other organisation in the API."""
    me = _me(request)
    if me.cvr is not None:
        raise NotFound("no such page")
    me.require(Scope.READ)
    return me


async def organisations(request: web.Request) -> web.Response:
    me = _organisation_reader(request)
    text = request.query.get("status", "")
    try:
        status = OrganisationStatus(text) if text else None
    except ValueError as exc:
        raise BadRequest("status is active or disabled", field="status") from exc
    listed = await request.app[CONSOLE].administration.organisations(
        me, status=status, limit=PAGE, offset=0
    )
    return _render(
        request,
        "organisations.html",
        organisations=listed,
        selected=text,
        statuses=[s.value for s in OrganisationStatus],
    )


async def organisation(request: web.Request) -> web.Response:
    me = _organisation_reader(request)
    administration = request.app[CONSOLE].administration
    cvr = request.match_info["cvr"][:20]
    found = await administration.organisation(me, cvr)
    count = await administration.identity_count(me, found.cvr)
    return _render(request, "organisation.html", organisation=found, identity_count=count)


# -- tokens -----------------------------------------------------------------------------------


def _token_manager(request: web.Request) -> Principal:
    """Tokens are the CA's own administrators' to make and revoke (unconfined, admin scope)."""
    me = _me(request)
    me.require_unconfined()
    return me


_SCOPES = [scope.value for scope in Scope]


async def tokens(request: web.Request) -> web.Response:
    _token_manager(request)
    everything = request.query.get("all") == "1"
    listed = await request.app[CONSOLE].tokens.list(expired_idm=everything)
    return _render(
        request,
        "tokens.html",
        tokens=[_token_row(t) for t in reversed(listed)],
        everything=everything,
        scopes=_SCOPES,
        error="",
        values={"name": "", "cvr": "", "valid_days": "30", "scopes": ["read"]},
    )


def _token_row(token: ApiToken) -> dict[str, str]:
    return {
        "name": token.name,
        "scopes": ", ".join(sorted(token.scopes)),
        "cvr": token.cvr or "",
        "expires": _when(token.expires_at),
        "revoked": _when(token.revoked_at) if token.revoked_at else "",
        "last_used": _when(token.last_used_at),
    }


async def create_token(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    me = _token_manager(request)
    session = request[CONTEXT].session
    assert session is not None
    form = await request.post()
    name = str(form.get("name", "")).strip()[:100]
    cvr = str(form.get("cvr", "")).strip()[:20]
    valid_days = str(form.get("valid_days", "30")).strip()[:6]
    chosen = [str(v) for v in form.getall("scopes", [])]
    values = {"name": name, "cvr": cvr, "valid_days": valid_days, "scopes": chosen}
    try:
        token, secret = await console.tokens.create(
            me.actor,
            name=name,
            scopes=Scope.parse_many(",".join(chosen)),
            cvr=cvr or None,
            valid_days=int(valid_days) if valid_days.isdigit() else 0,
        )
    except BadRequest as error:
        listed = await console.tokens.list()
        return _render(
            request,
            "tokens.html",
            status=400,
            tokens=[_token_row(t) for t in reversed(listed)],
            everything=False,
            scopes=_SCOPES,
            error=error.detail,
            values=values,
        )
    await console.sessions.keep_handout(session, f"token:{token.name}", secret)
    return _redirect(f"{PREFIX}/tokens/{quote(token.name)}")


async def _named_token(request: web.Request) -> ApiToken:
    name = request.match_info["name"]
    for token in await request.app[CONSOLE].tokens.list(expired_idm=True):
        if token.name == name:
            return token
    raise NotFound(f"no token named {name[:100]!r}")


async def token(request: web.Request) -> web.Response:
    """A token; right after it was made, once, with its secret."""
    _token_manager(request)
    session = request[CONTEXT].session
    assert session is not None
    found = await _named_token(request)
    secret = await request.app[CONSOLE].sessions.take_handout(session, f"token:{found.name}")
    return _render(request, "token.html", token=_token_row(found), secret=secret)


async def revoke_token_page(request: web.Request) -> web.Response:
    _token_manager(request)
    return _render(request, "token_revoke.html", token=_token_row(await _named_token(request)))


async def revoke_token(request: web.Request) -> web.Response:
    """Revoke a token and end its console sessions in this process at once."""
    console = request.app[CONSOLE]
    me = _token_manager(request)
    found = await _named_token(request)
    await console.tokens.revoke(me.actor, found.name)
    await console.sessions.revoke(found.name)
    return _redirect(f"{PREFIX}/tokens")


def _add_routes(app: web.Application) -> None:
    routes = app.router
    routes.add_get("/", overview)
    routes.add_get("/sign-in", sign_in_page)
    routes.add_post("/sign-in", sign_in)
    routes.add_post("/sign-in/certificate", sign_in_with_certificate)
    routes.add_post("/sign-out", sign_out)
    routes.add_get("/language/{language}", language)
    routes.add_get("/static/{name}", static)
    routes.add_get("/identities", identities)
    routes.add_get("/identities/new", new_identity)
    routes.add_post("/identities", create_identity)
    routes.add_get("/identities/{identity_id}", identity)
    routes.add_post("/identities/{identity_id}/orders", place_order)
    routes.add_get("/identities/{identity_id}/edit", edit_identity_page)
    routes.add_post("/identities/{identity_id}/edit", edit_identity)
    routes.add_get("/identities/{identity_id}/disable", disable_page)
    routes.add_post("/identities/{identity_id}/disable", disable)
    routes.add_get("/orders/{reference}", order)
    routes.add_post("/orders/{reference}/{action:cancel|unlock}", order_action)
    routes.add_get("/certificates", certificates)
    routes.add_get("/certificates/{serial}", certificate)
    routes.add_get("/certificates/{serial}/pem", certificate_pem)
    routes.add_get("/certificates/{serial}/revoke", revoke_page)
    routes.add_post("/certificates/{serial}/revoke", revoke)
    routes.add_get("/import", import_page)
    routes.add_post("/import", import_file)
    routes.add_get("/import/{handout}", import_result)
    routes.add_get("/audit", audit)
    routes.add_get("/organisations", organisations)
    routes.add_get("/organisations/{cvr}", organisation)
    routes.add_get("/tokens", tokens)
    routes.add_post("/tokens", create_token)
    routes.add_get("/tokens/{name}", token)
    routes.add_get("/tokens/{name}/revoke", revoke_token_page)
    routes.add_post("/tokens/{name}/revoke", revoke_token)
