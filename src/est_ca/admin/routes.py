"""The admin REST API (/admin/v1): authenticate, parse JSON, call `Administration`, render JSON.

Errors are RFC 9457 problem details (application/problem+json) that name the offending field.
Authentication is a Bearer token or a client certificate from the admin trust anchor, or an
organisation's system certificate issued by this CA (admin/idm.py); `Administration` decides
what the principal may do.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

from aiohttp import hdrs, web
from cryptography import x509
from yarl import URL

from est_ca.admin import openapi
from est_ca.admin.access import AdministrationGrant, Principal, Scope
from est_ca.admin.idm import TOKEN_LIFETIME, Idm, grantable_scopes
from est_ca.admin.service import Administration
from est_ca.admin.tokens import Tokens
from est_ca.admin.views import (
    certificate_view,
    identity_view,
    order_view,
    organisation_view,
    placed_order_view,
    request_view,
)
from est_ca.audit import Actor
from est_ca.audit_trail import AuditTrail
from est_ca.ca.certificates import CertificateStatus, KeyId, Serial
from est_ca.errors import (
    BadRequest,
    EstCaError,
    NotEntitled,
    NotFound,
    Unauthenticated,
    UnsupportedMediaType,
)
from est_ca.metrics import EXPOSITION_TYPE
from est_ca.registration import codes, importing
from est_ca.registration.approvals import RequestStatus
from est_ca.registration.identities import IdentityStatus, IdentityType, check_cvr
from est_ca.registration.importing import ImportFormat
from est_ca.registration.orders import OrderState
from est_ca.registration.organisations import OrganisationStatus
from est_ca.registration.registry import Registry
from est_ca.revocation.reasons import RevocationReason
from est_ca.web.inputs import peer_certificate, read_body
from est_ca.web.middleware import MAX_BODY_BYTES, METRICS

PREFIX = "/admin/v1"
PROBLEM = "application/problem+json"
BEARER_CHALLENGE = 'Bearer realm="est-ca admin"'
MAX_PAGE = 500
# Far beyond any table here, and within a 32-bit integer: no database overflows on it.
MAX_OFFSET = 1_000_000_000
ADMINISTRATION = web.AppKey("administration", Administration)
TOKENS = web.AppKey("tokens", Tokens)
IDM = web.AppKey("idm", Idm)
REGISTRY = web.AppKey("registry", Registry)
AUDIT_TRAIL = web.AppKey("audit_trail", AuditTrail)
CERTIFICATE_SCOPES = web.AppKey("certificate_scopes", frozenset)
IMPORT_MAX_BYTES = web.AppKey("import_max_bytes", int)
READINESS: web.AppKey[Callable[[], Mapping[str, bool]]] = web.AppKey("readiness")
PRINCIPAL = web.RequestKey("principal", Principal)
PUBLIC = frozenset({f"{PREFIX}/health", f"{PREFIX}/ready", f"{PREFIX}/openapi.json"})
# What browsers ask for on their own, without credentials: 404, not a failed sign-in counted
# against the address (a console user's browser would lock its own address out).
PUBLIC |= {"/favicon.ico", "/apple-touch-icon.png", "/apple-touch-icon-precomposed.png"}
# Authenticates by its own rule: the connection's system certificate, nothing else.
IDM_LOGIN = f"{PREFIX}/idm/login"


# -- errors -----------------------------------------------------------------------------------


def problem(
    status: int, detail: str, headers: dict[str, str], error: EstCaError | None
) -> web.Response:
    """RFC 9457: type, title, status, detail; `field` names the input at fault, and an import
    lists every row's errors."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if isinstance(error, BadRequest) and error.field:
        body["field"] = error.field
    if isinstance(error, importing.ImportRejected):
        body["errors"] = [
            {"line": e.line, "field": e.field, "detail": e.detail} for e in error.errors
        ]
    if status == 401:
        headers = headers | {hdrs.WWW_AUTHENTICATE: BEARER_CHALLENGE}
    return web.json_response(body, status=status, headers=headers, content_type=PROBLEM)


# -- authentication ---------------------------------------------------------------------------


@web.middleware
async def authenticate(
    request: web.Request, handler: Callable[[web.Request], Any]
) -> web.StreamResponse:
    if request.path in PUBLIC or request.path == IDM_LOGIN:
        public: web.StreamResponse = await handler(request)
        return public
    principal = request[PRINCIPAL] = await _principal(request)
    try:
        response: web.StreamResponse = await handler(request)
    except EstCaError as error:
        operation = f"{request.method} {request.path[:200]}"
        await request.app[ADMINISTRATION].refused(principal, operation, error)
        raise
    return response


async def _principal(request: web.Request) -> Principal:
    tokens = request.app[TOKENS]
    anonymous = Actor("anonymous", "-", request.remote)
    header = request.headers.get(hdrs.AUTHORIZATION)
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            await tokens.refused(anonymous, "an Authorization header that is not a Bearer token")
            raise Unauthenticated("give a token as 'Authorization: Bearer <token>'")
        return await tokens.authenticate(token, request.remote)
    der = peer_certificate(request)
    if der is not None and tokens.is_ours(x509.load_der_x509_certificate(der)):
        # An organisation's IdM presenting its system certificate: checked on every request.
        return await request.app[IDM].authenticate_certificate(der, request.remote)
    if der is not None:  # the handshake verified it against the admin trust anchor
        scopes = request.app[CERTIFICATE_SCOPES]
        return await tokens.authenticate_certificate(der, scopes=scopes, source=request.remote)
    await tokens.refused(anonymous, "no credentials")
    raise Unauthenticated("authenticate with a Bearer token or an administrator certificate")


def _me(request: web.Request) -> Principal:
    return request[PRINCIPAL]


# -- cross-site requests ----------------------------------------------------------------------

JSON = "application/json"
IMPORT_TYPES = ("text/csv", "application/x-ndjson", "application/jsonl")
_BODY_TYPES = {
    f"{PREFIX}/identities/import": IMPORT_TYPES,
    f"{PREFIX}/organisations/import": IMPORT_TYPES,
}
_STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_SAME_SITE = frozenset({"same-origin", "none"})  # `none`: typed by the user, not sent by a page


@web.middleware
async def same_origin_json(
    request: web.Request, handler: Callable[[web.Request], Any]
) -> web.StreamResponse:
    """No other site's page changes anything with an administrator's credentials.

    A browser sends the administrator's client certificate with any request a page makes, and
    an HTML form may POST text/plain, form or multipart bodies to another site without asking;
    JSON it may not (that needs a CORS preflight, never granted here). So a state-changing
    request must carry JSON (or an import type), and one that says it comes from another origin
    (Origin, Sec-Fetch-Site) is refused before anything is read.
    """
    if request.method in _STATE_CHANGING and request.match_info.http_exception is None:
        site = request.headers.get("Sec-Fetch-Site")
        origin = request.headers.get(hdrs.ORIGIN)
        if (site is not None and site.lower() not in _SAME_SITE) or (
            origin is not None and not _is_own_origin(request, origin)
        ):
            raise NotEntitled(
                "a request from another origin cannot change anything here; call the admin "
                "API from its own origin or from a client that is not a web page"
            )
        resource = request.match_info.route.resource
        accepted = body_types(resource.canonical if resource else "")
        if request.content_type.lower() not in accepted:
            raise UnsupportedMediaType(
                f"a change here takes {' or '.join(accepted[:2])}, nothing else"
                + (" (send {} or nothing where it has no fields)" if JSON in accepted else "")
            )
    response: web.StreamResponse = await handler(request)
    return response


def body_types(path: str) -> tuple[str, ...]:
    """The media types a change at `path` (a route's template) takes; the first is preferred."""
    return _BODY_TYPES.get(path, (JSON,))


def _is_own_origin(request: web.Request, origin: str) -> bool:
    """Whether `origin` is this listener's scheme://host:port as the request reached it."""
    host = request.headers.get(hdrs.HOST)  # not request.host: its fallback asks the resolver
    if host is None:
        return False
    try:
        sent = URL(origin)
        own = URL(f"{request.scheme}://{host}")
        return (
            sent.is_absolute()
            and sent.raw_path in ("", "/")
            and not sent.raw_query_string
            and not sent.raw_fragment
            and sent.user is None
            and (sent.scheme, sent.host, sent.port) == (own.scheme, own.host, own.port)
        )
    except (ValueError, TypeError):  # not even a URL: certainly not ours
        return False


# -- parsing ----------------------------------------------------------------------------------


class _Oversized:
    """A JSON integer longer than any field takes: refused by name, never parsed."""


_OVERSIZED = _Oversized()
_MAX_INTEGER_DIGITS = 20  # Python's int() refuses over 4300 with a bare ValueError


def _json_integer(text: str) -> int | _Oversized:
    return int(text) if len(text.lstrip("-")) <= _MAX_INTEGER_DIGITS else _OVERSIZED


async def _json_object(request: web.Request, *, may_be_empty: bool = False) -> dict[str, Any]:
    """The body as a JSON object; an empty body is `{}` where `may_be_empty` (operations
    without fields). Nesting too deep for the parser is refused by name, not a crash."""
    body = await read_body(request, request.app[MAX_BODY_BYTES])
    if may_be_empty and not body.strip():
        return {}
    try:
        value = json.loads(body, parse_int=_json_integer)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}", field="body") from exc
    except RecursionError as exc:
        raise BadRequest("the body is nested too deeply", field="body") from exc
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object", field="body")
    return value


def _fields(body: Mapping[str, Any], spec: Mapping[str, tuple[type, bool]]) -> dict[str, Any]:
    """Known fields only, each of its type (`bool` is not an int here); required ones present."""
    unknown = sorted(set(body) - set(spec))
    if unknown:
        name = unknown[0][:100]
        raise BadRequest(f"unknown field {name!r}", field=name)
    values: dict[str, Any] = {}
    for name, (kind, required) in spec.items():
        value = body.get(name)
        if value is None:
            if required:
                raise BadRequest(f"{name} is required", field=name)
            values[name] = None
            continue
        if value is _OVERSIZED:
            raise BadRequest(f"{name} has more than {_MAX_INTEGER_DIGITS} digits", field=name)
        if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
            raise BadRequest(f"{name} must be {_JSON_NAMES[kind]}", field=name)
        values[name] = value
    return values


_JSON_NAMES = {str: "a string", int: "an integer", bool: "a boolean"}


def _enum(kind: type[Any], value: str | None, field: str) -> Any:
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError as exc:
        allowed = ", ".join(member.value for member in kind)
        raise BadRequest(f"{field} must be one of {allowed}", field=field) from exc


def _uuid(value: str | None, field: str) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise BadRequest(f"{field} must be a UUID", field=field) from exc


def _time(value: str | None, field: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise BadRequest(f"{field} must be an ISO 8601 time", field=field) from exc
    if moment.tzinfo is None:
        raise BadRequest(f"{field} needs a time zone (e.g. Z)", field=field)
    try:
        return moment.astimezone(dt.UTC).replace(microsecond=0)
    except OverflowError as exc:  # 0001-01-01T00:00+14:00 is in year 0 in UTC
        raise BadRequest(f"{field} is out of range in UTC", field=field) from exc


_COUNT = re.compile(r"-?[0-9]{1,12}")


def _count(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    """A query parameter that counts rows: ASCII digits, within bounds both databases take."""
    text = request.query.get(name)
    if text is None:
        return default
    value = int(text) if _COUNT.fullmatch(text) else None
    if value is None or not low <= value <= high:
        raise BadRequest(f"{name} must be an integer from {low} to {high}", field=name)
    return value


def _page(request: web.Request) -> tuple[int, int]:
    return _count(request, "limit", 100, 1, MAX_PAGE), _count(request, "offset", 0, 0, MAX_OFFSET)


def _paged(items: list[dict[str, Any]], limit: int, offset: int) -> web.Response:
    return web.json_response(
        {
            "items": items,
            "limit": limit,
            "offset": offset,
            "next_offset": offset + limit if len(items) == limit else None,
        }
    )


def _query_known(request: web.Request, names: set[str]) -> None:
    unknown = sorted(set(request.query) - names - {"limit", "offset"})
    if unknown:
        raise BadRequest(f"unknown query parameter {unknown[0]!r}", field=unknown[0])


def _reference(request: web.Request) -> str:
    """An order reference as a person may type it (case, dashes, I/L/O are forgiven), and
    nothing a database could choke on (PostgreSQL refuses NUL in text)."""
    text = request.match_info["reference"]
    normalised = codes.normalise(text)
    if not 1 <= len(normalised) <= 64 or not set(normalised) <= set(codes.ALPHABET):
        raise BadRequest("reference is the letters and digits of an order", field="reference")
    return text


def _cvr(value: str | None) -> str | None:
    return None if value is None else check_cvr(value)


def _serial(request: web.Request) -> Serial:
    return Serial.from_hex(request.match_info["serial"])


def _issuer(request: web.Request) -> KeyId | None:
    """`?issuer=<key id>`: which CA's certificate, needed only when several have the serial."""
    text = request.query.get("issuer")
    return None if text is None else KeyId.parse(text)


async def _import_file(request: web.Request) -> tuple[str, ImportFormat]:
    """An import's text and format (its content type is one of IMPORT_TYPES: same_origin_json
    checked), read with the import's own size cap."""
    body = await read_body(request, request.app[IMPORT_MAX_BYTES])
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadRequest("the file must be UTF-8 text") from exc
    return text, "csv" if request.content_type.lower() == "text/csv" else "jsonl"


# -- organisations ----------------------------------------------------------------------------


def _domain_list(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BadRequest("email_domains must be a list of domain names", field="email_domains")
    return value


async def create_organisation(request: web.Request) -> web.Response:
    body = await _json_object(request)
    domains = _domain_list(body.pop("email_domains", None)) or []
    values = _fields(body, {"cvr": (str, True), "name": (str, True)})
    organisation = await request.app[ADMINISTRATION].create_organisation(
        _me(request), cvr=values["cvr"], name=values["name"], email_domains=domains
    )
    return web.json_response(organisation_view(organisation), status=201)


async def list_organisations(request: web.Request) -> web.Response:
    _query_known(request, {"status"})
    limit, offset = _page(request)
    organisations = await request.app[ADMINISTRATION].organisations(
        _me(request),
        status=_enum(OrganisationStatus, request.query.get("status"), "status"),
        limit=limit,
        offset=offset,
    )
    return _paged([organisation_view(o) for o in organisations], limit, offset)


async def read_organisation(request: web.Request) -> web.Response:
    organisation = await request.app[ADMINISTRATION].organisation(
        _me(request), request.match_info["cvr"]
    )
    return web.json_response(organisation_view(organisation))


async def update_organisation(request: web.Request) -> web.Response:
    body = await _json_object(request)
    domains = _domain_list(body.pop("email_domains", None))
    values = _fields(body, {"name": (str, False), "status": (str, False)})
    organisation = await request.app[ADMINISTRATION].update_organisation(
        _me(request),
        request.match_info["cvr"],
        name=values["name"],
        email_domains=domains,
        status=_enum(OrganisationStatus, values["status"], "status"),
    )
    return web.json_response(organisation_view(organisation))


async def import_organisations(request: web.Request) -> web.Response:
    """text/csv or application/x-ndjson: cvr, name, email_domains, status."""
    _query_known(request, set())
    text, kind = await _import_file(request)
    created, existing = await request.app[ADMINISTRATION].import_organisations(
        _me(request), text, kind
    )
    return web.json_response(
        {
            "created": [organisation_view(o) for o in created],
            "existing": [organisation_view(o) for o in existing],
        },
        status=201 if created else 200,
    )


# -- identities -------------------------------------------------------------------------------

_IDENTITY_FIELDS = {
    "type": (str, True),
    "organisation_name": (str, False),
    "cvr": (str, True),
    "display_name": (str, False),
    "given_name": (str, False),
    "surname": (str, False),
    "email": (str, False),
}
_UPDATE_FIELDS = dict.fromkeys(("display_name", "given_name", "surname", "email"), (str, False))


async def create_identity(request: web.Request) -> web.Response:
    values = _fields(await _json_object(request), _IDENTITY_FIELDS)
    values["type"] = _enum(IdentityType, values["type"], "type")
    identity = await request.app[ADMINISTRATION].create_identity(_me(request), **values)
    return web.json_response(identity_view(identity), status=201)


async def list_identities(request: web.Request) -> web.Response:
    _query_known(request, {"type", "cvr", "status"})
    limit, offset = _page(request)
    identities = await request.app[ADMINISTRATION].identities(
        _me(request),
        type=_enum(IdentityType, request.query.get("type"), "type"),
        cvr=_cvr(request.query.get("cvr")),
        status=_enum(IdentityStatus, request.query.get("status"), "status"),
        limit=limit,
        offset=offset,
    )
    return _paged([identity_view(i) for i in identities], limit, offset)


def _identity_id(request: web.Request) -> uuid.UUID:
    identity_id = _uuid(request.match_info["identity_id"], "identity_id")
    assert identity_id is not None
    return identity_id


async def read_identity(request: web.Request) -> web.Response:
    identity = await request.app[ADMINISTRATION].identity(_me(request), _identity_id(request))
    return web.json_response(identity_view(identity))


def _grant_view(grant: AdministrationGrant) -> dict[str, Any]:
    return {
        "identity_id": str(grant.identity_id),
        "scopes": sorted(grant.scopes),
        "granted_by": grant.granted_by,
        "granted_at": grant.granted_at.isoformat(),
    }


async def read_administration(request: web.Request) -> web.Response:
    """The identity's administration right; 404 when it has none."""
    identity_id = _identity_id(request)
    grant = await request.app[IDM].grant_of(_me(request), identity_id)
    if grant is None:
        raise NotFound(f"the identity {identity_id} has no administration right")
    return web.json_response(_grant_view(grant))


async def grant_administration(request: web.Request) -> web.Response:
    """An unconfined administrator lets a system identity (an organisation's IdM)
    administer its organisation's identities with these scopes."""
    body = await _json_object(request)
    scopes = body.pop("scopes", None)
    _fields(body, {})
    if not isinstance(scopes, list) or not all(isinstance(name, str) for name in scopes):
        raise BadRequest("scopes must be a list of read, order, revoke", field="scopes")
    grant = await request.app[IDM].grant(
        _me(request), _identity_id(request), grantable_scopes(scopes)
    )
    return web.json_response(_grant_view(grant))


async def withdraw_administration(request: web.Request) -> web.Response:
    _fields(await _json_object(request, may_be_empty=True), {})
    await request.app[IDM].withdraw(_me(request), _identity_id(request))
    return web.Response(status=204)


async def idm_login(request: web.Request) -> web.Response:
    """An organisation's IdM logs in with its system certificate (mTLS) for a bearer token
    valid for an hour, confined to its organisation and granted scopes. Refusals are 403."""
    _fields(await _json_object(request, may_be_empty=True), {})
    token, secret = await request.app[IDM].login(peer_certificate(request), request.remote)
    return web.json_response(
        {
            "token": secret,
            "token_type": "Bearer",
            "expires_in": int(TOKEN_LIFETIME.total_seconds()),
            "expires_at": token.expires_at.isoformat(),
            "cvr": token.cvr,
            "scopes": sorted(token.scopes),
        },
        status=201,
        headers={"Cache-Control": "no-store"},
    )


async def update_identity(request: web.Request) -> web.Response:
    body = await _json_object(request)
    if "organisation_name" in body:
        raise BadRequest(
            "an identity takes its organisation's registered name; an administrator of the CA "
            "changes it with PATCH /admin/v1/organisations/{cvr}",
            field="organisation_name",
        )
    values = _fields(body, _UPDATE_FIELDS)
    identity = await request.app[ADMINISTRATION].update_identity(
        _me(request), _identity_id(request), **values
    )
    return web.json_response(identity_view(identity))


async def disable_identity(request: web.Request) -> web.Response:
    values = _fields(await _json_object(request), {"reason": (str, False)})
    reason = (
        RevocationReason.parse(values["reason"])
        if values["reason"]
        else RevocationReason.CESSATION_OF_OPERATION
    )
    identity, revoked = await request.app[ADMINISTRATION].disable_identity(
        _me(request), _identity_id(request), reason
    )
    return web.json_response(
        identity_view(identity) | {"revoked": [record.serial.hex for record in revoked]}
    )


async def import_identities(request: web.Request) -> web.Response:
    """text/csv or application/x-ndjson; ?place_orders=true orders a certificate for each new
    identity and returns the one-time codes, once."""
    _query_known(request, {"place_orders"})
    place_orders = request.query.get("place_orders", "false")
    if place_orders not in ("true", "false"):
        raise BadRequest("place_orders is true or false", field="place_orders")
    text, kind = await _import_file(request)
    result = await request.app[ADMINISTRATION].import_file(
        _me(request), text, kind, place_orders=place_orders == "true"
    )
    registry = request.app[REGISTRY]
    return web.json_response(
        {
            "created": [identity_view(i) for i in result.created],
            "existing": [identity_view(i) for i in result.existing],
            "orders": [
                placed_order_view(placed, registry.order_state(placed.order))
                for placed in result.orders
            ],
        },
        status=201 if result.created else 200,
    )


# -- orders -----------------------------------------------------------------------------------


async def create_order(request: web.Request) -> web.Response:
    values = _fields(
        await _json_object(request),
        {
            "identity_id": (str, True),
            "profile": (str, False),
            "validity_days": (int, False),
            "ca_label": (str, False),
            "require_approval": (bool, False),
        },
    )
    identity_id = _uuid(values["identity_id"], "identity_id")
    assert identity_id is not None
    placed = await request.app[ADMINISTRATION].place_order(
        _me(request),
        identity_id,
        profile=values["profile"],
        validity_days=values["validity_days"],
        ca_label=values["ca_label"],
        require_approval=bool(values["require_approval"]),
    )
    registry = request.app[REGISTRY]
    return web.json_response(
        placed_order_view(placed, registry.order_state(placed.order)), status=201
    )


async def list_orders(request: web.Request) -> web.Response:
    _query_known(request, {"identity_id", "status"})
    limit, offset = _page(request)
    orders = await request.app[ADMINISTRATION].orders(
        _me(request),
        identity_id=_uuid(request.query.get("identity_id"), "identity_id"),
        state=_enum(OrderState, request.query.get("status"), "status"),
        limit=limit,
        offset=offset,
    )
    registry = request.app[REGISTRY]
    return _paged([order_view(o, registry.order_state(o)) for o in orders], limit, offset)


async def read_order(request: web.Request) -> web.Response:
    order = await request.app[ADMINISTRATION].order(_me(request), _reference(request))
    return web.json_response(order_view(order, request.app[REGISTRY].order_state(order)))


async def cancel_order(request: web.Request) -> web.Response:
    _fields(await _json_object(request, may_be_empty=True), {})
    order = await request.app[ADMINISTRATION].cancel_order(_me(request), _reference(request))
    return web.json_response(order_view(order, request.app[REGISTRY].order_state(order)))


async def unlock_order(request: web.Request) -> web.Response:
    _fields(await _json_object(request, may_be_empty=True), {})
    order = await request.app[ADMINISTRATION].unlock_order(_me(request), _reference(request))
    return web.json_response(order_view(order, request.app[REGISTRY].order_state(order)))


# -- enrollment requests awaiting approval ---------------------------------------------------


async def list_requests(request: web.Request) -> web.Response:
    _query_known(request, {"status"})
    limit, offset = _page(request)
    found = await request.app[ADMINISTRATION].requests(
        _me(request),
        status=_enum(RequestStatus, request.query.get("status"), "status"),
        limit=limit,
        offset=offset,
    )
    return _paged([request_view(r) for r in found], limit, offset)


async def read_request(request: web.Request) -> web.Response:
    found = await request.app[ADMINISTRATION].request(_me(request), _reference(request))
    return web.json_response(request_view(found))


async def approve_request(request: web.Request) -> web.Response:
    _fields(await _json_object(request, may_be_empty=True), {})
    found = await request.app[ADMINISTRATION].approve_request(_me(request), _reference(request))
    return web.json_response(request_view(found))


async def reject_request(request: web.Request) -> web.Response:
    values = _fields(await _json_object(request, may_be_empty=True), {"reason": (str, False)})
    found = await request.app[ADMINISTRATION].reject_request(
        _me(request), _reference(request), values["reason"]
    )
    return web.json_response(request_view(found))


# -- certificates -----------------------------------------------------------------------------


async def list_certificates(request: web.Request) -> web.Response:
    _query_known(
        request,
        {"identity_id", "status", "expires_after", "expires_before", "expiring_within_days"},
    )
    limit, offset = _page(request)
    within = (
        _count(request, "expiring_within_days", 0, 1, 3650)
        if "expiring_within_days" in request.query
        else None
    )
    records = await request.app[ADMINISTRATION].certificates(
        _me(request),
        identity_id=_uuid(request.query.get("identity_id"), "identity_id"),
        status=_enum(CertificateStatus, request.query.get("status"), "status"),
        expires_after=_time(request.query.get("expires_after"), "expires_after"),
        expires_before=_time(request.query.get("expires_before"), "expires_before"),
        expiring_within=dt.timedelta(days=within) if within is not None else None,
        limit=limit,
        offset=offset,
    )
    return _paged([certificate_view(r) for r in records], limit, offset)


async def read_certificate(request: web.Request) -> web.Response:
    record = await request.app[ADMINISTRATION].certificate(
        _me(request), _serial(request), _issuer(request)
    )
    return web.json_response(certificate_view(record, with_pem=True))


async def revoke_certificate(request: web.Request) -> web.Response:
    values = _fields(
        await _json_object(request), {"reason": (str, False), "invalidity_date": (str, False)}
    )
    reason = (
        RevocationReason.parse(values["reason"])
        if values["reason"]
        else RevocationReason.UNSPECIFIED
    )
    record = await request.app[ADMINISTRATION].revoke_certificate(
        _me(request),
        _serial(request),
        reason,
        _time(values["invalidity_date"], "invalidity_date"),
        _issuer(request),
    )
    return web.json_response(certificate_view(record))


# -- the CA and the service -------------------------------------------------------------------


async def regenerate_crls(request: web.Request) -> web.Response:
    _fields(await _json_object(request, may_be_empty=True), {})
    published = await request.app[ADMINISTRATION].regenerate_crls(_me(request))
    return web.json_response(
        {
            "crls": [
                {
                    "ca": name,
                    "number": crl.number,
                    "this_update": crl.this_update.isoformat(),
                    "next_update": crl.next_update.isoformat(),
                }
                for name, crl in published
            ]
        }
    )


async def health(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    """Readiness: the database answers and CRLs and OCSP are published."""
    checks = dict(request.app[READINESS]())
    checks["database"] = await request.app[AUDIT_TRAIL].readable()
    ok = all(checks.values())
    return web.json_response(
        {"status": "ready" if ok else "not ready", "checks": checks}, status=200 if ok else 503
    )


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition, to an unconfined principal with the read scope (never the public
    port): the counters are CA-wide, so an organisation's token does not read them."""
    _me(request).require_unconfined(Scope.READ)
    return web.Response(
        body=request.app[METRICS].exposition(), headers={"Content-Type": EXPOSITION_TYPE}
    )


async def openapi_document(request: web.Request) -> web.Response:
    return web.json_response(openapi.document())


def add_routes(app: web.Application) -> None:
    routes = app.router
    routes.add_get(f"{PREFIX}/health", health)
    routes.add_get(f"{PREFIX}/ready", ready)
    routes.add_get(f"{PREFIX}/openapi.json", openapi_document)
    routes.add_get(f"{PREFIX}/metrics", metrics)
    routes.add_get(f"{PREFIX}/organisations", list_organisations)
    routes.add_post(f"{PREFIX}/organisations", create_organisation)
    routes.add_post(f"{PREFIX}/organisations/import", import_organisations)
    routes.add_get(f"{PREFIX}/organisations/{{cvr}}", read_organisation)
    routes.add_patch(f"{PREFIX}/organisations/{{cvr}}", update_organisation)
    routes.add_get(f"{PREFIX}/identities", list_identities)
    routes.add_post(f"{PREFIX}/identities", create_identity)
    routes.add_post(f"{PREFIX}/identities/import", import_identities)
    routes.add_get(f"{PREFIX}/identities/{{identity_id}}", read_identity)
    routes.add_patch(f"{PREFIX}/identities/{{identity_id}}", update_identity)
    routes.add_post(f"{PREFIX}/identities/{{identity_id}}/disable", disable_identity)
    routes.add_get(f"{PREFIX}/identities/{{identity_id}}/administration", read_administration)
    routes.add_put(f"{PREFIX}/identities/{{identity_id}}/administration", grant_administration)
    routes.add_delete(
        f"{PREFIX}/identities/{{identity_id}}/administration", withdraw_administration
    )
    routes.add_post(IDM_LOGIN, idm_login)
    routes.add_get(f"{PREFIX}/orders", list_orders)
    routes.add_post(f"{PREFIX}/orders", create_order)
    routes.add_get(f"{PREFIX}/orders/{{reference}}", read_order)
    routes.add_post(f"{PREFIX}/orders/{{reference}}/cancel", cancel_order)
    routes.add_post(f"{PREFIX}/orders/{{reference}}/unlock", unlock_order)
    routes.add_get(f"{PREFIX}/requests", list_requests)
    routes.add_get(f"{PREFIX}/requests/{{reference}}", read_request)
    routes.add_post(f"{PREFIX}/requests/{{reference}}/approve", approve_request)
    routes.add_post(f"{PREFIX}/requests/{{reference}}/reject", reject_request)
    routes.add_get(f"{PREFIX}/certificates", list_certificates)
    routes.add_get(f"{PREFIX}/certificates/{{serial}}", read_certificate)
    routes.add_post(f"{PREFIX}/certificates/{{serial}}/revoke", revoke_certificate)
    routes.add_post(f"{PREFIX}/crl/regenerate", regenerate_crls)
