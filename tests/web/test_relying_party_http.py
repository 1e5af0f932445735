"""The plain-HTTP listener serves what certificates point relying parties to."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from est_ca.server import Server
from est_ca.service import Service
from tests.helpers import curl


async def test_the_ca_issuers_urls_serve_the_ca_certificates_as_der(
    server: Server, service: Service
) -> None:
    assert service.ca is not None
    for url, certificate in (
        (service.publication.issuing_cert_url, service.ca.certificate),
        (service.publication.root_cert_url, service.ca.root),
    ):
        response = await curl(url)
        assert response.status == 200
        assert response.headers["content-type"] == "application/pkix-cert"
        assert x509.load_der_x509_certificate(response.body) == certificate
        assert response.body == certificate.public_bytes(serialization.Encoding.DER)


async def test_the_urls_in_issued_certificates_are_where_the_listener_is(
    server: Server, service: Service
) -> None:
    assert server.http_url == service.publication.base_url
