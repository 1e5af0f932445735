"""Reading an HTTP request, for every protocol layer (EST, the admin API, relying parties).

Each reader turns what the client sent wrong into the domain's error (415, 413, 408), so a
handler only says what it expects; none of them knows which protocol it serves.
"""

from __future__ import annotations

import asyncio
import ssl

from aiohttp import hdrs, web

from est_ca.errors import PayloadTooLarge, RequestTimedOut, UnsupportedMediaType

REQUEST_TIMEOUT = web.AppKey("request_timeout_seconds", float)


def require_content_type(request: web.Request, expected: str) -> None:
    if request.content_type.lower() != expected:
        sent = request.headers.get(hdrs.CONTENT_TYPE, "none")
        if not (sent.isascii() and sent.isprintable() and len(sent) <= 100):
            sent = "an unreadable content type"  # never echo bytes we cannot vouch for
        raise UnsupportedMediaType(f"the body must be {expected}; got {sent}")


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, chunked or not, refused early when it is announced or grows too large,
    and cut off when it trickles in slower than the request timeout allows."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the request body is larger than the {limit} bytes accepted")
    body = bytearray()
    seconds = request.app.get(REQUEST_TIMEOUT, 15.0)
    try:
        async with asyncio.timeout(seconds):
            async for chunk in request.content.iter_any():
                body += chunk
                if len(body) > limit:
                    raise PayloadTooLarge(
                        f"the request body is larger than the {limit} bytes accepted"
                    )
    except TimeoutError as exc:
        raise RequestTimedOut(f"the request body did not arrive within {seconds:g} s") from exc
    return bytes(body)


def peer_certificate(request: web.Request) -> bytes | None:
    """The client's TLS certificate (DER), already chain-verified by the handshake, if any."""
    if request.transport is None:
        return None
    ssl_object = request.transport.get_extra_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return None
    return ssl_object.getpeercert(binary_form=True)
