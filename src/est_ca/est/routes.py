"""EST handlers: parse the request, call the registration authority, render certs-only CMS.

Nothing here decides anything: who may enroll and what gets signed is registration/ and ca/.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from cryptography import x509

from est_ca.audit import Actor
from est_ca.ca import keygen
from est_ca.ca.csr_policy import check_channel_binding, parse_csr
from est_ca.ca.profiles import KeySpec
from est_ca.errors import CredentialsMissing, EstCaError, NotEntitled
from est_ca.est import wire
from est_ca.registration.enrollment import (
    RegistrationAuthority,
    certificate_actor,
    order_actor,
)
from est_ca.throttle import Admission
from est_ca.web import inputs, tls
from est_ca.workers import Workers

EST_PREFIX = "/.well-known/est"
AUTHORITY = web.AppKey("registration_authority", RegistrationAuthority)
# Per CA label: the certs-only CMS of its current CA and chain.
CA_CERTS_DER = web.AppKey("cacerts_der", dict[str, bytes])
MAX_CSR_BYTES = web.AppKey("max_csr_bytes", int)
# Per CA label: DER CsrAttrs (ca/csrattrs.py) for the profiles it issues; None: nothing to say.
CSR_ATTRS = web.AppKey("csrattrs_der", dict[str, bytes | None])
# Per CA label: the key serverkeygen generates there; None: no profile of the label allows it.
SERVER_KEYS = web.AppKey("server_keys", dict[str, KeySpec | None])
WORKERS = web.AppKey("workers", Workers)
# Key generations at once (an RSA key is CPU for a large part of a second): beyond this bound,
# 503 + Retry-After.
KEY_GENERATION = web.AppKey("key_generation", Admission)


def _label(request: web.Request) -> str:
    """The CA label of the path (RFC 7030 3.2.2), the default one's when unlabelled; an
    unknown label is 404 before anything else is read."""
    return request.app[AUTHORITY].labels.get(request.match_info.get("label")).name


async def cacerts(request: web.Request) -> web.Response:
    return wire.base64_response(
        request, request.app[CA_CERTS_DER][_label(request)], wire.PKCS7_MIME
    )


async def csrattrs(request: web.Request) -> web.Response:
    """No authentication (RFC 7030 4.5 lets the server choose): libest's client asks before it
    enrolls, and the answer only describes what every enrollment here must look like."""
    der = request.app[CSR_ATTRS][_label(request)]
    if der is None:
        return web.Response(status=204)
    return wire.base64_response(request, der, wire.CSRATTRS)


async def _csr(request: web.Request) -> bytes:
    """The request's DER CSR; under a label that requires channel binding, only one whose
    challengePassword is this TLS session's tls-unique (RFC 7030 3.5)."""
    inputs.require_content_type(request, wire.PKCS10)
    body = await inputs.read_body(request, request.app[MAX_CSR_BYTES])
    der = wire.decode_base64_body(body)
    label = request.app[AUTHORITY].labels.get(request.match_info.get("label"))
    if label.require_channel_binding:
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        check_channel_binding(parse_csr(der), tls.tls_unique(ssl_object))
    return der


async def _enroll(
    request: web.Request,
    csr_for: Callable[[bytes], Awaitable[bytes]] | None = None,
) -> x509.Certificate:
    """simpleenroll and serverkeygen: an order's Basic credentials or a TLS client certificate
    entitled to enroll, then the registration authority's one enrollment path. `csr_for`
    turns the client's CSR into the one enrolled (serverkeygen: a CSR for a generated key),
    called by the authority only once the caller has authenticated; both are enrollments to
    the audit trail and the metrics."""
    authority = request.app[AUTHORITY]
    label = _label(request)
    actor = Actor("anonymous", "-", request.remote)
    try:
        await authority.check_source(request.remote)
        credentials = wire.basic_credentials(request)
        client_certificate = inputs.peer_certificate(request)
        if credentials is not None:
            actor = order_actor(credentials[0], request.remote)
        elif client_certificate is not None:
            actor = certificate_actor(client_certificate, request.remote)
        else:
            raise CredentialsMissing(
                "authenticate with Basic credentials (order reference and one-time code) "
                "or a TLS client certificate issued by this CA"
            )
        if credentials is not None and not request.secure:
            raise NotEntitled("Basic credentials are only accepted over HTTPS")
        csr = await _csr(request)
    except EstCaError as exc:
        # Refused before the authority saw it; it audits everything else itself.
        await authority.refuse("enroll", actor, exc)
        raise
    if credentials is not None:
        reference, code = credentials
        return await authority.enroll_with_order(
            reference, code, csr, source=request.remote, label=label, csr_for=csr_for
        )
    assert client_certificate is not None
    return await authority.enroll_with_certificate(
        client_certificate, csr, source=request.remote, label=label, csr_for=csr_for
    )


async def simpleenroll(request: web.Request) -> web.Response:
    certificate = await _enroll(request)
    return wire.base64_response(request, wire.certs_only([certificate]), wire.CERTS_ONLY)


async def serverkeygen(request: web.Request) -> web.Response:
    """RFC 7030 4.4: the service generates the key pair (see ca/keygen.py) and answers with the
    private key and the certificate. Refused where no profile of the label allows it, and an
    order whose own profile does not by the CSR policy, before the order is claimed.
    The key is made only after the order's code or the client certificate has authenticated:
    a guessed code must not cost the service a key generation."""
    spec = request.app[SERVER_KEYS][_label(request)]
    generated: list[keygen.ServerGeneratedRequest] = []

    async def generate(csr_der: bytes) -> bytes:
        if spec is None:
            raise NotEntitled(
                "no certificate profile issued here allows server key generation; generate "
                "the key yourself and use simpleenroll"
            )
        async with request.app[KEY_GENERATION].slot():
            made = await request.app[WORKERS].run(
                keygen.request_with_generated_key, parse_csr(csr_der), spec
            )
        generated.append(made)
        return made.csr_der

    certificate = await _enroll(request, generate)
    (made,) = generated
    return wire.server_key_response(made.pkcs8_der(), wire.certs_only([certificate]))


async def simplereenroll(request: web.Request) -> web.Response:
    authority = request.app[AUTHORITY]
    label = _label(request)
    client_certificate = inputs.peer_certificate(request)
    try:
        await authority.check_source(request.remote)
        if client_certificate is None:
            raise NotEntitled(
                "simplereenroll needs the current certificate as the TLS client certificate"
            )
        csr = await _csr(request)
    except EstCaError as exc:
        actor = (
            certificate_actor(client_certificate, request.remote)
            if client_certificate
            else Actor("anonymous", "-", request.remote)
        )
        await authority.refuse("reenroll", actor, exc)
        raise
    certificate = await authority.reenroll(
        client_certificate, csr, source=request.remote, label=label
    )
    return wire.base64_response(request, wire.certs_only([certificate]), wire.CERTS_ONLY)


def add_routes(app: web.Application) -> None:
    """Each operation unlabelled (the default CA) and under a CA label: RFC 7030 3.2.2's
    /.well-known/est/<label>/, and /<label>/.well-known/est/ for clients that can only put a
    path before the well-known one (strongSwan's pki 5.9.8 asks <url>/.well-known/est/<op>)."""
    for prefix in (EST_PREFIX, EST_PREFIX + "/{label}", "/{label}" + EST_PREFIX):
        app.router.add_get(f"{prefix}/cacerts", cacerts)
        app.router.add_get(f"{prefix}/csrattrs", csrattrs)
        app.router.add_post(f"{prefix}/simpleenroll", simpleenroll)
        app.router.add_post(f"{prefix}/simplereenroll", simplereenroll)
        app.router.add_post(f"{prefix}/serverkeygen", serverkeygen)
