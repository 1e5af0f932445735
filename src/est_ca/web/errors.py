"""The one place where domain errors become HTTP status codes.

Protocol layers render the result their own way (EST: short plain text); what status an error
means is decided here only. Anything that is not an `EstCaError` is a bug: the client gets a
500 with the request id to quote, and the details go to the log, never to the client.
"""

from __future__ import annotations

from est_ca import errors

STATUS_BY_ERROR: tuple[tuple[type[errors.EstCaError], int], ...] = (
    (errors.ApprovalPending, 202),
    (errors.BadRequest, 400),
    (errors.Unauthenticated, 401),
    (errors.NotEntitled, 403),
    (errors.NotFound, 404),
    (errors.RequestTimedOut, 408),
    (errors.Conflict, 409),
    (errors.PayloadTooLarge, 413),
    (errors.UnsupportedMediaType, 415),
    (errors.RateLimited, 429),
    (errors.Unavailable, 503),
    (errors.IssuanceFailed, 500),
)

BASIC_CHALLENGE = 'Basic realm="est-ca", charset="UTF-8"'


def status_for(error: errors.EstCaError) -> int:
    for kind, status in STATUS_BY_ERROR:
        if isinstance(error, kind):
            return status
    return 500


def headers_for(error: errors.EstCaError) -> dict[str, str]:
    """Headers the status obliges: a challenge with 401, Retry-After with 202, 429 and 503."""
    if isinstance(error, errors.Unauthenticated):
        return {"WWW-Authenticate": BASIC_CHALLENGE}
    if isinstance(error, errors.RateLimited | errors.Unavailable | errors.ApprovalPending):
        return {"Retry-After": str(error.retry_after_seconds)}
    return {}
