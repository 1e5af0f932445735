"""EST's encodings (RFC 7030 as clarified by RFC 8951), and nothing else.

Requests: the body is base64 of DER whatever Content-Transfer-Encoding says (RFC 8951 2.1);
whitespace and line breaks anywhere are ignored; anything else is a 400. Responses: base64 of
a certs-only CMS with MIME line breaks, the exact content types libest matches on, and
Content-Transfer-Encoding: base64. Reading the request (content type, size and time caps, the
client certificate) is common to every protocol: est_ca.web.inputs.
"""

from __future__ import annotations

import base64
import binascii

from aiohttp import BasicAuth, hdrs, web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from est_ca.errors import BadRequest, Unauthenticated

PKCS10 = "application/pkcs10"
PKCS7_MIME = "application/pkcs7-mime"
CERTS_ONLY = "application/pkcs7-mime; smime-type=certs-only"
_WHITESPACE = b" \t\r\n\v\f"


def decode_base64_body(body: bytes) -> bytes:
    compact = body.translate(None, _WHITESPACE)
    if not compact:
        raise BadRequest("the body is empty; send the base64-encoded DER PKCS#10 request")
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        hint = " (send base64 DER, not PEM)" if compact.startswith(b"-----") else ""
        raise BadRequest(f"the body is not valid base64{hint}") from exc


def basic_credentials(request: web.Request) -> tuple[str, str] | None:
    """(user, password) from an Authorization: Basic header; None when there is no header."""
    header = request.headers.get(hdrs.AUTHORIZATION)
    if header is None:
        return None
    try:
        credentials = BasicAuth.decode(header, encoding="utf-8")
    except ValueError as exc:
        raise Unauthenticated(
            "the Authorization header must be Basic with base64 of order-reference:one-time-code"
        ) from exc
    if not credentials.login or not credentials.password:
        raise Unauthenticated("Basic credentials need both the order reference and the code")
    return credentials.login, credentials.password


def certs_only(certificates: list[x509.Certificate] | tuple[x509.Certificate, ...]) -> bytes:
    """base64 (MIME lines) of a degenerate SignedData holding the certificates."""
    der = pkcs7.serialize_certificates(list(certificates), serialization.Encoding.DER)
    return base64.encodebytes(der)


def certs_only_response(body: bytes, content_type: str) -> web.Response:
    return web.Response(
        status=200,
        body=body,
        headers={
            hdrs.CONTENT_TYPE: content_type,
            "Content-Transfer-Encoding": "base64",
        },
    )
