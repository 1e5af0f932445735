"""Every request: an id to quote, one access-log line, and errors rendered as short text.

Routes marked `quiet` (OCSP and CRLs: relying parties' traffic, thousands a second) log no
line when they succeed: they are counted and timed in the metrics like every request, and
logged when they fail (status 400 or more). Every other route logs every request.
Nothing a client sent in a header (Authorization above all) reaches the log.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from aiohttp import web

from est_ca.errors import EstCaError
from est_ca.metrics import Metrics
from est_ca.web.errors import headers_for, status_for

_log = structlog.get_logger("est_ca.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# How an application writes an error: (status, message, headers, the domain error if any).
ErrorRenderer = Callable[[int, str, dict[str, str], EstCaError | None], web.Response]
REQUEST_ID_HEADER = "X-Request-Id"
MAX_BODY_BYTES = web.AppKey("max_body_bytes", int)
# Where requests are counted and timed (metrics.py), and the listener's name in them.
METRICS = web.AppKey("metrics", Metrics)
LISTENER = web.AppKey("listener", str)
# Exceptions from these packages are the database failing, not a bug of ours.
_DATABASE_PACKAGES = frozenset({"sqlalchemy", "asyncpg", "aiosqlite", "sqlite3"})
DATABASE_RETRY_AFTER = 5
RENDER_ERROR: web.AppKey[ErrorRenderer] = web.AppKey("render_error")
_QUIET = "_est_ca_quiet_access_log"
H = TypeVar("H", bound=Handler)


def quiet(handler: H) -> H:
    """Mark a hot route: no access-log line for its successes (the metrics count them)."""
    setattr(handler, _QUIET, True)
    return handler


def plain_text(
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
    error: EstCaError | None = None,
) -> web.Response:
    """Errors for EST and relying parties: one short line a person can act on. A message that
    quotes something odd a client sent is still sent (undecodable parts replaced)."""
    return web.Response(
        status=status,
        body=(message.rstrip("\n") + "\n").encode("utf-8", errors="replace"),
        content_type="text/plain",
        charset="utf-8",
        headers=headers,
    )


def _shown(path: str) -> str:
    """A path quoted back in an error: enough to recognise, never all of a huge one."""
    return path if len(path) <= 120 else path[:120] + "..."


def describe(exc: web.HTTPException, request: web.Request) -> str:
    """A sentence for the HTTP errors aiohttp raises itself (routing and body size)."""
    if exc.status == 404:
        return f"nothing is served at {_shown(request.path)}"
    if exc.status == 405:
        allowed = exc.headers.get("Allow", "")
        return f"{request.method} is not allowed on {_shown(request.path)}; allowed: {allowed}"
    if exc.status == 413:
        return f"the request body is larger than the {request.app[MAX_BODY_BYTES]} bytes accepted"
    return exc.reason


def _observe(request: web.Request, status: int, seconds: float) -> None:
    metrics = request.app.get(METRICS)
    if metrics is None:
        return
    listener = request.app.get(LISTENER, "-")
    route = request.match_info.route.resource
    endpoint = route.canonical if route is not None else "unmatched"
    metrics.requests.labels(listener, endpoint, request.method, str(status)).observe(seconds)
    if status in (429, 503):
        metrics.throttled.labels(listener, str(status)).inc()


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = secrets.token_hex(8)
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    render = request.app.get(RENDER_ERROR, plain_text)
    try:
        try:
            response = await handler(request)
        except EstCaError as exc:
            response = render(status_for(exc), exc.detail, headers_for(exc), exc)
        except web.HTTPException as exc:
            kept = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
            response = render(exc.status, describe(exc, request), kept, None)
        except Exception as exc:
            if type(exc).__module__.split(".")[0] in _DATABASE_PACKAGES:
                # The database is down or failing over: a temporary condition, not our bug.
                _log.error(
                    "database unavailable",
                    method=request.method,
                    path=request.path,
                    error=type(exc).__name__,
                )
                metrics = request.app.get(METRICS)
                if metrics is not None:
                    metrics.database_errors.inc()
                response = render(
                    503,
                    "the database is unavailable; try again shortly",
                    {"Retry-After": str(DATABASE_RETRY_AFTER)},
                    None,
                )
            else:
                _log.exception("unhandled error", method=request.method, path=request.path)
                response = render(500, f"internal error; quote request id {request_id}", {}, None)
        response.headers[REQUEST_ID_HEADER] = request_id
        elapsed = time.perf_counter() - started
        if response.status >= 400 or not getattr(request.match_info.handler, _QUIET, False):
            _log.info(
                "request",
                method=request.method,
                path=request.path,
                status=response.status,
                ms=round(elapsed * 1000, 1),
                peer=request.remote,
            )
        _observe(request, response.status, elapsed)
        return response
    finally:
        structlog.contextvars.unbind_contextvars("request_id")
