"""The service's TLS: a server context that asks for (but does not require) client certificates.

Client certificates are verified against our own CA chain during the handshake, with one
deliberate exception: OpenSSL is told not to check validity times. An expired client
certificate therefore reaches the application, which refuses it with a 403 that says why,
instead of a handshake failure the client cannot explain. Revocation, expiry and "is this
certificate in our database" are the registration authority's checks, made per request.
"""

from __future__ import annotations

import ssl
from pathlib import Path

TLS_UNIQUE_VERSION = "TLSv1.2"
# X509_V_FLAG_NO_CHECK_TIME from OpenSSL's x509_vfy.h; Python's ssl module has no name for it.
X509_V_FLAG_NO_CHECK_TIME = 0x200000


def server_context(
    cert_file: Path,
    key_file: Path,
    client_ca_pem: bytes | None,
    *,
    check_time: bool = False,
    partial_chain: bool = False,
) -> ssl.SSLContext:
    """`check_time`: also refuse expired client certificates in the handshake (administrators);
    EST leaves that to the service so the client learns why (see the module's docstring).
    `partial_chain`: every certificate of `client_ca_pem` is a trust anchor, not only roots
    (the admin listener trusts our issuing CAs, never the root above them and its other CAs)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # TLS 1.2 stays on: libest's client speaks nothing newer.
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    context.options |= ssl.OP_NO_RENEGOTIATION
    if client_ca_pem is not None:
        context.verify_mode = ssl.CERT_OPTIONAL
        context.load_verify_locations(cadata=client_ca_pem.decode("ascii"))
        if not check_time:
            context.verify_flags = context.verify_flags | X509_V_FLAG_NO_CHECK_TIME
        if partial_chain:
            context.verify_flags = context.verify_flags | ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


def tls_unique(ssl_object: object) -> bytes | None:
    """The connection's tls-unique channel binding (RFC 5929) on TLS 1.2; None otherwise.

    CPython answers 'tls-unique' on TLS 1.3 too (the first Finished message), but RFC 9266
    leaves it undefined there, and the tls-exporter binding that replaces it needs
    SSL_export_keying_material, which the ssl module does not expose: no binding under 1.3.
    Under 1.2, OpenSSL negotiates the extended master secret (RFC 7627) with clients that
    offer it, which is what keeps tls-unique safe from the triple-handshake attack; the ssl
    module cannot tell whether a session used it."""
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return None
    if ssl_object.version() != TLS_UNIQUE_VERSION:
        return None
    return ssl_object.get_channel_binding("tls-unique")
