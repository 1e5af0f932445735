"""The aiohttp applications: EST over HTTPS, and plain HTTP for relying parties."""

from __future__ import annotations

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from est_ca import console
from est_ca.admin import routes as admin_routes
from est_ca.admin.access import Scope
from est_ca.ca import publication
from est_ca.ca.csrattrs import csr_attributes
from est_ca.ca.keygen import key_for_label
from est_ca.errors import NotEntitled
from est_ca.est import routes as est_routes
from est_ca.est import wire
from est_ca.relying_party import routes as relying_party
from est_ca.service import Service
from est_ca.throttle import Admission
from est_ca.web import inputs
from est_ca.web.middleware import (
    LISTENER,
    MAX_BODY_BYTES,
    METRICS,
    RENDER_ERROR,
    Handler,
    request_context,
)

# aiohttp's own cap for request.read(); our readers enforce the configured one first.
_AIOHTTP_BODY_CAP = 1024 * 1024


def est_app(service: Service) -> web.Application:
    if service.authority is None or service.ca is None:
        raise ValueError("the EST application needs the service opened with its CA")
    app = web.Application(middlewares=[request_context], client_max_size=_AIOHTTP_BODY_CAP)
    _measured(app, service, "est")
    app[MAX_BODY_BYTES] = service.settings.service.max_body_bytes
    app[inputs.REQUEST_TIMEOUT] = float(service.settings.limits.request_timeout_seconds)
    app[est_routes.MAX_CSR_BYTES] = service.settings.service.max_body_bytes
    app[est_routes.AUTHORITY] = service.authority
    authority = service.authority
    app[est_routes.CA_CERTS_DER] = {
        name: wire.certs_only(authority.labelled(name).ca.certificates)
        for name in authority.labels.names
    }
    # Each label says what every profile it issues accepts.
    app[est_routes.CSR_ATTRS] = {
        label.name: csr_attributes(
            (p for p in service.profiles.profiles.values() if label.allows(p.name)),
            challenge_password=label.require_channel_binding,
        )
        for label in authority.labels.labels
    }
    app[est_routes.SERVER_KEYS] = {
        label.name: key_for_label(
            (p for p in service.profiles.profiles.values() if label.allows(p.name)), label.name
        )
        for label in authority.labels.labels
    }
    app[est_routes.WORKERS] = service.workers
    app[est_routes.KEY_GENERATION] = Admission(service.workers.threads)
    app[RENDER_ERROR] = wire.render_error
    est_routes.add_routes(app)
    return app


def _measured(app: web.Application, service: Service, listener: str) -> None:
    app[METRICS] = service.metrics
    app[LISTENER] = listener


async def _est_needs_https(request: web.Request) -> web.Response:
    raise NotEntitled(
        "EST is served over HTTPS only; nothing sent here is read. If you sent a one-time "
        "code over plain HTTP, treat it as exposed and ask for a new order."
    )


def _certificate_handler(certificate: x509.Certificate) -> Handler:
    """A CA certificate as caIssuers serves it: DER, application/pkix-cert (RFC 5280 4.2.2.1)."""
    body = certificate.public_bytes(serialization.Encoding.DER)

    async def handler(request: web.Request) -> web.Response:
        return web.Response(
            body=body,
            headers={"Content-Type": "application/pkix-cert", "Cache-Control": "max-age=86400"},
        )

    return handler


def admin_app(service: Service) -> web.Application:
    """The admin REST API: problem+json errors, tokens or administrator certificates."""
    app = web.Application(
        middlewares=[
            request_context,
            *console.api_only(admin_routes.authenticate, admin_routes.same_origin_json),
        ],
        client_max_size=_AIOHTTP_BODY_CAP,
    )
    app[RENDER_ERROR] = admin_routes.problem
    _measured(app, service, "admin")
    app[MAX_BODY_BYTES] = service.settings.service.max_body_bytes
    app[inputs.REQUEST_TIMEOUT] = float(service.settings.limits.request_timeout_seconds)
    app[admin_routes.IMPORT_MAX_BYTES] = service.settings.admin.import_max_bytes
    app[admin_routes.ADMINISTRATION] = service.administration
    app[admin_routes.TOKENS] = service.tokens
    app[admin_routes.IDM] = service.idm
    app[admin_routes.REGISTRY] = service.registry
    app[admin_routes.AUDIT_TRAIL] = service.audit
    app[admin_routes.CERTIFICATE_SCOPES] = Scope.parse_many(
        ",".join(service.settings.admin.client_certificate_scopes)
    )
    app[admin_routes.READINESS] = service.readiness
    admin_routes.add_routes(app)
    console.mount(app, service)
    return app


def plain_http_app(service: Service) -> web.Application:
    """Plain HTTP for relying parties: CA certificates, CRLs and OCSP; never EST (it needs TLS)."""
    if service.ca is None or service.publishing is None:
        raise ValueError("the relying-party application needs the service opened with its CA")
    app = web.Application(middlewares=[request_context], client_max_size=_AIOHTTP_BODY_CAP)
    app[MAX_BODY_BYTES] = service.settings.service.max_body_bytes
    app[inputs.REQUEST_TIMEOUT] = float(service.settings.limits.request_timeout_seconds)
    _measured(app, service, "http")
    app[relying_party.PUBLISHING] = service.publishing
    app[relying_party.CLOCK] = service.clock
    app[relying_party.MAX_AGE] = service.settings.revocation.http_max_age_seconds
    relying_party.add_routes(app, [issuer.crl_path for issuer in service.publishing.issuers])
    app.router.add_route("*", est_routes.EST_PREFIX + "/{tail:.*}", _est_needs_https)
    served = {issuer.name: issuer.ca.certificate for issuer in service.publishing.issuers}
    served.setdefault(publication.ROOT, service.ca.root)
    for name, certificate in served.items():
        app.router.add_get(publication.cert_path(name), _certificate_handler(certificate))
    return app
