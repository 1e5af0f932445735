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

# X509_V_FLAG_NO_CHECK_TIME from OpenSSL's x509_vfy.h; Python's ssl module has no name for it.
X509_V_FLAG_NO_CHECK_TIME = 0x200000


def server_context(
    cert_file: Path, key_file: Path, client_ca_pem: bytes | None, *, check_time: bool = False
) -> ssl.SSLContext:
    """`check_time`: also refuse expired client certificates in the handshake (administrators);
    EST leaves that to the service so the client learns why (see the module's docstring)."""
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
    return context
