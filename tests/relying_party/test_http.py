"""CRL and OCSP over plain HTTP: content types, caching headers, GET and POST, errors."""

from __future__ import annotations

import base64
import datetime as dt
import os
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.x509 import ocsp

from est_ca.server import Server
from est_ca.service import Service
from tests.helpers import KeyPool, curl, post_ocsp
from tests.revocation.helpers import cert_id, issue, ocsp_request, random_nonce, several_request


def max_age(headers: dict[str, str]) -> int:
    directives = dict(
        part.strip().partition("=")[::2] for part in headers["cache-control"].split(",")
    )
    return int(directives["max-age"])


@pytest.mark.parametrize("name", ["issuing", "root"])
async def test_each_crl_is_served_as_der_with_caching_that_ends_by_next_update(
    server: Server, service: Service, name: str
) -> None:
    url = getattr(service.publication, f"{name}_crl_url")
    response = await curl(url)
    assert response.status == 200
    assert response.headers["content-type"] == "application/pkix-crl"
    crl = x509.load_der_x509_crl(response.body)
    assert crl.next_update_utc is not None
    expires = parsedate_to_datetime(response.headers["expires"])
    assert expires == crl.next_update_utc
    assert parsedate_to_datetime(response.headers["last-modified"]) == crl.last_update_utc
    age = max_age(response.headers)
    assert 0 < age <= service.settings.revocation.http_max_age_seconds
    assert service.clock.now() + dt.timedelta(seconds=age) <= crl.next_update_utc
    assert response.headers["etag"].startswith('"')


async def test_a_crl_that_has_not_changed_is_304(server: Server, service: Service) -> None:
    first = await curl(service.publication.issuing_crl_url)
    again = await curl(
        service.publication.issuing_crl_url, "-H", f"If-None-Match: {first.headers['etag']}"
    )
    assert again.status == 304
    assert again.body == b""


async def test_ocsp_over_post_answers_application_ocsp_response(
    server: Server, service: Service, keys: KeyPool, tmp_path: Path
) -> None:
    assert service.ca is not None
    certificate = await issue(service, keys)
    response = await post_ocsp(
        service, tmp_path, ocsp_request(certificate, service.ca.certificate, nonce=random_nonce())
    )
    assert response.status == 200
    assert response.headers["content-type"] == "application/ocsp-response"
    assert response.headers["cache-control"] == "no-store"  # a nonce: never cached
    assert ocsp.load_der_ocsp_response(response.body).certificate_status is (
        ocsp.OCSPCertStatus.GOOD
    )


@pytest.mark.parametrize("alphabet", ["standard-escaped", "standard-raw", "url-safe"])
async def test_ocsp_over_get_accepts_escaped_raw_and_url_safe_base64(
    server: Server, service: Service, keys: KeyPool, alphabet: str
) -> None:
    assert service.ca is not None
    certificate = await issue(service, keys)
    request = ocsp_request(certificate, service.ca.certificate)
    encoded = base64.b64encode(request).decode()
    if alphabet == "standard-escaped":
        path = quote(encoded, safe="")
    elif alphabet == "standard-raw":
        path = encoded
    else:
        path = base64.urlsafe_b64encode(request).decode().rstrip("=")
    response = await curl(f"{service.publication.ocsp_url}/{path}", "--path-as-is")
    assert response.status == 200
    parsed = ocsp.load_der_ocsp_response(response.body)
    assert parsed.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert parsed.serial_number == certificate.serial_number
    assert parsed.next_update_utc is not None
    assert parsedate_to_datetime(response.headers["expires"]) == parsed.next_update_utc
    assert parsedate_to_datetime(response.headers["last-modified"]) == parsed.this_update_utc
    assert 0 < max_age(response.headers) <= service.settings.revocation.http_max_age_seconds
    assert "public" in response.headers["cache-control"]
    again = await curl(
        f"{service.publication.ocsp_url}/{path}",
        "--path-as-is",
        "-H",
        f"If-None-Match: {response.headers['etag']}",
    )
    assert again.status == 304


async def test_ocsp_for_several_certificates_is_never_cached_while_one_still_is(
    server: Server, service: Service, keys: KeyPool
) -> None:
    """A pre-produced response answers one CertID; an answer to several is made for the asker."""
    assert service.ca is not None
    first = cert_id(await issue(service, keys, 0), service.ca.certificate)
    second = cert_id(await issue(service, keys, 1), service.ca.certificate)
    for ids, cached in (([first, second], False), ([first], True)):
        path = quote(base64.b64encode(several_request(ids)).decode(), safe="")
        response = await curl(f"{service.publication.ocsp_url}/{path}")
        assert response.status == 200
        parsed = ocsp.load_der_ocsp_response(response.body)
        assert len(list(parsed.responses)) == len(ids)
        assert ("public" in response.headers["cache-control"]) is cached
        if not cached:
            assert response.headers["cache-control"] == "no-store"
            assert "etag" not in response.headers


async def test_ocsp_get_with_garbage_is_a_malformed_request(
    server: Server, service: Service
) -> None:
    response = await curl(f"{service.publication.ocsp_url}/%%%not-base64!!")
    assert response.status == 200
    parsed = ocsp.load_der_ocsp_response(response.body)
    assert parsed.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


async def test_ocsp_post_of_another_content_type_is_415(
    server: Server, service: Service, tmp_path: Path
) -> None:
    body = tmp_path / "x"
    body.write_bytes(b"x")
    response = await curl(service.publication.ocsp_url, "--data-binary", f"@{body}")
    assert response.status == 415


async def test_an_ocsp_post_with_an_unreadable_content_type_is_415(
    server: Server, service: Service, tmp_path: Path
) -> None:
    body = tmp_path / "x"
    body.write_bytes(b"x")
    raw = os.fsdecode(b"Content-Type: \xff\xfe")  # curl sends these two bytes as they are
    response = await curl(service.publication.ocsp_url, "-H", raw, "--data-binary", f"@{body}")
    assert response.status == 415
    assert "application/ocsp-request" in response.text
    assert b"\xff" not in response.body


async def test_an_oversize_ocsp_post_is_413(
    server: Server, service: Service, tmp_path: Path
) -> None:
    response = await post_ocsp(
        service, tmp_path, b"\x30" * (service.settings.service.max_body_bytes + 1)
    )
    assert response.status == 413


async def test_garbage_posted_to_ocsp_is_a_malformed_request_never_a_500(
    server: Server, service: Service, tmp_path: Path
) -> None:
    for garbage in (b"", b"\x00", b"\x30\x80\x00\x00", bytes(range(256)) * 10):
        response = await post_ocsp(service, tmp_path, garbage)
        assert response.status == 200
        parsed = ocsp.load_der_ocsp_response(response.body)
        assert parsed.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST
