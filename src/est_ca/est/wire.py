"""EST's encodings (RFC 7030 as clarified by RFC 8951), and nothing else.

Requests: the body is base64 of DER whatever Content-Transfer-Encoding says (RFC 8951 2.1);
whitespace and line breaks anywhere are ignored; anything else is a 400. Responses: base64 of
a certs-only CMS or of CSR attributes (in MIME lines or in one line, see `base64_for`), the
exact content types libest matches on, and Content-Transfer-Encoding: base64. Reading the
request (content type, size and time caps, the client certificate) is common to every
protocol: est_ca.web.inputs.
"""

from __future__ import annotations

import base64
import binascii
import email.policy
import secrets
from email.encoders import encode_base64
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart

from aiohttp import BasicAuth, hdrs, web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from est_ca.errors import BadRequest, CredentialsMissing, EstCaError, Unauthenticated
from est_ca.web.middleware import plain_text

PKCS10 = "application/pkcs10"
PKCS7_MIME = "application/pkcs7-mime"
CERTS_ONLY = "application/pkcs7-mime; smime-type=certs-only"
CSRATTRS = "application/csrattrs"
PKCS8 = "application/pkcs8"
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
    """DER of a degenerate SignedData holding the certificates."""
    return pkcs7.serialize_certificates(list(certificates), serialization.Encoding.DER)


def base64_for(request: web.Request, der: bytes) -> bytes:
    """base64 of `der` as this client can read it: MIME lines of 76 characters for a client
    that sends a User-Agent, one line without any line break for one that sends none.

    No single form is read by every EST client. OpenSSL's base64 BIO in its default mode
    (libest's client decodes cacerts and enrolled certificates with it, `openssl base64 -d`
    too) finds nothing in a body whose first line break comes after 1024 characters, and a
    chain or an RSA certificate is longer than that. strongSwan's pki 5.9.8 decodes every
    byte of the body, line breaks included, and sends no User-Agent; libest, GlobalSign's
    client, curl, and the Java and Python HTTP clients all send one.
    """
    if hdrs.USER_AGENT in request.headers:
        return base64.encodebytes(der)
    return base64.b64encode(der)


def base64_response(request: web.Request, der: bytes, content_type: str) -> web.Response:
    """200 with base64 of `der` (see `base64_for`): certs-only CMS, or CSR attributes."""
    return web.Response(
        status=200,
        body=base64_for(request, der),
        headers={
            hdrs.CONTENT_TYPE: content_type,
            "Content-Transfer-Encoding": "base64",
        },
    )


def server_key_response(private_key_pkcs8: bytes, certificate_der_cms: bytes) -> web.Response:
    """RFC 7030 4.4.2: multipart/mixed with the private key (application/pkcs8) and the
    certificate (certs-only CMS), each part base64 with Content-Transfer-Encoding (RFC 8951),
    as Python's email package writes MIME: it chooses the boundary (one that occurs in
    neither part) and the 76-column base64 lines, with CRLF line ends as HTTP has them."""
    # A token boundary needs no quoting (some clients take everything after "boundary="), and
    # cannot occur in base64 lines, which never begin with "--".
    message = MIMEMultipart("mixed", boundary=f"est-ca-{secrets.token_hex(16)}")
    key_part = MIMEApplication(private_key_pkcs8, "pkcs8", _encoder=encode_base64)
    certificate_part = MIMEApplication(certificate_der_cms, "pkcs7-mime", _encoder=encode_base64)
    # The exact form simpleenroll answers with, which clients match byte for byte.
    certificate_part.replace_header(hdrs.CONTENT_TYPE, CERTS_ONLY)
    for part in (key_part, certificate_part):
        del part["MIME-Version"]
        message.attach(part)
    rendered = message.as_bytes(policy=email.policy.HTTP)
    # The outer headers become the HTTP response's; only the boundary-delimited body is sent.
    _headers, _, body = rendered.partition(b"\r\n\r\n")
    return web.Response(
        status=200,
        body=body,
        headers={hdrs.CONTENT_TYPE: f"multipart/mixed; boundary={message.get_boundary()}"},
    )


def render_error(
    status: int, message: str, headers: dict[str, str], error: EstCaError | None
) -> web.Response:
    """EST errors are one short line of text, except the challenge to a request that sent no
    credentials: its body is empty. Clients that never send credentials unasked read only
    the status and WWW-Authenticate of that answer, and some Java ones close the unread body
    and fail before they retry."""
    if isinstance(error, CredentialsMissing):
        return web.Response(status=status, headers=headers)
    return plain_text(status, message, headers, error)
