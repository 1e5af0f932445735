"""CRL, OCSP and caIssuers over plain HTTP: parse, ask the revocation side, render.

OCSP protocol errors are OCSP responses (malformedRequest, HTTP 200), as clients expect;
HTTP errors are kept for what is not an OCSP request at all (wrong content type, too large).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
from email.utils import format_datetime, parsedate_to_datetime
from urllib.parse import unquote

from aiohttp import hdrs, web

from est_ca.ca.publication import OCSP_PATH
from est_ca.clock import Clock
from est_ca.errors import Unavailable
from est_ca.revocation.ocsp import OcspAnswer, malformed_response
from est_ca.revocation.publishing import RevocationPublishing
from est_ca.web.inputs import read_body, require_content_type
from est_ca.web.middleware import MAX_BODY_BYTES, METRICS, quiet

OCSP_REQUEST = "application/ocsp-request"
OCSP_RESPONSE = "application/ocsp-response"
PUBLISHING = web.AppKey("revocation_publishing", RevocationPublishing)
CLOCK = web.AppKey("clock", Clock)
MAX_AGE = web.AppKey("http_max_age_seconds", int)


@functools.lru_cache(maxsize=4096)
def _http_date(moment: dt.datetime) -> str:
    """(Cached: a pre-produced answer's dates are formatted on every request for it.)"""
    return format_datetime(moment.astimezone(dt.UTC), usegmt=True)


def _not_modified(request: web.Request, etag: str, last_modified: dt.datetime) -> bool:
    if request.headers.get(hdrs.IF_NONE_MATCH) == etag:
        return True
    since = request.headers.get(hdrs.IF_MODIFIED_SINCE)
    if since and hdrs.IF_NONE_MATCH not in request.headers:
        try:
            return parsedate_to_datetime(since) >= last_modified
        except (TypeError, ValueError):
            return False
    return False


def _caching_headers(
    request: web.Request,
    etag: str,
    last_modified: dt.datetime,
    expires: dt.datetime,
    stale_after: dt.datetime,
) -> dict[str, str]:
    """Cache until the earliest of: the configured max-age, a refresh, or nextUpdate."""
    now = request.app[CLOCK].now()
    max_age = max(
        0, min(request.app[MAX_AGE], int((min(expires, stale_after) - now).total_seconds()))
    )
    return {
        hdrs.CACHE_CONTROL: f"max-age={max_age}, public, no-transform, must-revalidate",
        hdrs.ETAG: etag,
        hdrs.LAST_MODIFIED: _http_date(last_modified),
        hdrs.EXPIRES: _http_date(expires),
    }


@quiet
async def crl(request: web.Request) -> web.StreamResponse:
    publishing = request.app[PUBLISHING]
    issuer = publishing.issuer_by_path(request.path)
    current = publishing.crls.current(issuer.key_id) if issuer else None
    if issuer is None or current is None:
        raise Unavailable("the CRL is being prepared; try again in a moment")
    headers = _caching_headers(
        request,
        current.etag,
        current.this_update,
        current.next_update,
        current.this_update + issuer.crl_refresh,
    )
    if _not_modified(request, current.etag, current.this_update):
        return web.Response(status=304, headers=headers)
    return web.Response(
        body=current.der, headers={hdrs.CONTENT_TYPE: "application/pkix-crl", **headers}
    )


def _render(request: web.Request, answer: OcspAnswer) -> web.Response:
    metrics = request.app.get(METRICS)
    if metrics is not None:
        metrics.count_ocsp(answer.statuses)
    headers: dict[str, str] = {hdrs.CONTENT_TYPE: OCSP_RESPONSE}
    if (
        answer.cacheable
        and answer.this_update
        and answer.next_update
        and answer.refresh_at
        and request.method == "GET"
    ):
        headers |= _caching_headers(
            request, answer.etag, answer.this_update, answer.next_update, answer.refresh_at
        )
        if _not_modified(request, answer.etag, answer.this_update):
            return web.Response(status=304, headers=headers)
    else:
        headers[hdrs.CACHE_CONTROL] = "no-store"
    return web.Response(body=answer.der, headers=headers)


@quiet
async def ocsp_post(request: web.Request) -> web.Response:
    require_content_type(request, OCSP_REQUEST)
    body = await read_body(request, request.app[MAX_BODY_BYTES])
    return _render(request, await request.app[PUBLISHING].responder.answer(body))


def _decode_get_path(encoded: str) -> bytes | None:
    """The request from a GET path: URL-escaped base64, standard or URL-safe alphabet."""
    text = unquote(encoded).strip()
    if "-" in text or "_" in text:
        text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


@quiet
async def ocsp_get(request: web.Request) -> web.Response:
    decoded = _decode_get_path(request.match_info["encoded"])
    if decoded is None:
        return web.Response(
            body=malformed_response(),
            headers={hdrs.CONTENT_TYPE: OCSP_RESPONSE, hdrs.CACHE_CONTROL: "no-store"},
        )
    return _render(request, await request.app[PUBLISHING].responder.answer(decoded))


def add_routes(app: web.Application, crl_paths: list[str]) -> None:
    for path in crl_paths:
        app.router.add_get(path, crl)
    app.router.add_post(OCSP_PATH, ocsp_post)
    app.router.add_get(OCSP_PATH + "/{encoded:.+}", ocsp_get)
