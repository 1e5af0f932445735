"""Secrets never reach the logs or the audit trail; every enrollment and refusal is audited."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import structlog

from est_ca import logs
from est_ca.server import Server
from est_ca.service import Service
from tests.conftest import CaMaterial
from tests.helpers import KeyPool, credentials, csr_base64, curl, make_csr, new_order, new_user


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    logs.configure("json", "debug", stream=stream)
    yield stream
    structlog.reset_defaults()


async def test_a_one_time_code_appears_in_no_log_line_and_no_audit_row(
    server: Server,
    service: Service,
    ca_material: CaMaterial,
    keys: KeyPool,
    tmp_path: Path,
    log_output: io.StringIO,
) -> None:
    placed = await new_order(service, await new_user(service))
    reference, code = credentials(placed)
    body = tmp_path / "csr"
    body.write_bytes(csr_base64(make_csr(keys.rsa().key)))
    url = f"{server.https_url}/.well-known/est/simpleenroll"
    common = ("-H", "Content-Type: application/pkcs10", "--data-binary", f"@{body}")
    wrong_code = code[:-1] + ("X" if code[-1] != "X" else "Y")
    wrong = await curl(url, *common, "-u", f"{reference}:{wrong_code}", trust=ca_material.tls_cert)
    right = await curl(url, *common, "-u", f"{reference}:{code}", trust=ca_material.tls_cert)
    assert (wrong.status, right.status) == (401, 200)

    lines = [json.loads(line) for line in log_output.getvalue().splitlines()]
    async with service.store.read() as tx:
        audit = [repr(event) for event in await tx.list_audit()]
    recorded = log_output.getvalue() + "".join(audit)
    secret_forms = [
        code,
        code.replace("-", ""),
        wrong_code,
        base64.b64encode(f"{reference}:{code}".encode()).decode(),
    ]
    for form in secret_forms:
        assert form not in recorded
    # A group of digits alone may occur by chance (timestamps); one with a letter may not.
    for group in code.split("-"):
        if not group.isdigit():
            assert group not in recorded
    events = [
        (line.get("action"), line.get("outcome")) for line in lines if line["event"] == "audit"
    ]
    assert ("enroll.refused", "refused") in events
    assert ("certificate.issued", "success") in events
    requests = [line for line in lines if line["event"] == "request"]
    assert {line["status"] for line in requests} == {401, 200}
    assert all(line.get("request_id") for line in requests)


def test_a_secret_passed_to_a_logger_by_mistake_is_redacted(log_output: io.StringIO) -> None:
    structlog.get_logger("test").info("oops", password="hunter2", one_time_code="ABCDE")
    line = json.loads(log_output.getvalue())
    assert line["password"] == "[redacted]"
    assert line["one_time_code"] == "[redacted]"


async def test_a_malformed_request_is_not_repeated_in_the_answer_or_the_log(
    server: Server,
    ca_material: CaMaterial,
    log_output: io.StringIO,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """aiohttp quotes a bad header in its 400 and its log; ours must not (it may be a code)."""
    secret = "K7M2Q-9XZ4P-H3D8R-WT5NB"
    header = base64.b64encode(f"REFERENCE123:{secret}".encode()) + b"\x01"
    host, port = server.https_url.removeprefix("https://").rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(ca_material.tls_cert))
    reader, writer = await asyncio.open_connection(host, int(port), ssl=context)
    writer.write(
        b"POST /.well-known/est/simpleenroll HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Basic " + header + b"\r\nContent-Length: 0\r\n\r\n"
    )
    await writer.drain()
    answer = await reader.read()
    writer.close()
    assert answer.split(b" ", 2)[1] == b"400"
    assert answer.endswith(b"\r\n\r\nmalformed HTTP request\n")
    recorded = log_output.getvalue() + caplog.text
    assert "malformed request" in log_output.getvalue()
    assert header.decode(errors="replace")[:20] not in recorded
    assert secret not in recorded


async def test_successful_ocsp_and_crl_requests_log_no_line_and_their_failures_do(
    server: Server, service: Service, tmp_path: Path, log_output: io.StringIO
) -> None:
    """Relying parties' traffic (thousands a second) is counted in the metrics, not logged a
    line each; a failure of it is logged, and every other path still is."""
    garbage = tmp_path / "x"
    garbage.write_bytes(b"x")
    crl = await curl(service.publication.issuing_crl_url)
    ocsp_get = await curl(service.publication.ocsp_url + "/" + "A" * 8)  # malformedRequest: 200
    refused = await curl(service.publication.ocsp_url, "--data-binary", f"@{garbage}")
    missing = await curl(f"{server.http_url}/nothing-here")
    assert (crl.status, ocsp_get.status, refused.status, missing.status) == (200, 200, 415, 404)

    lines = [json.loads(line) for line in log_output.getvalue().splitlines()]
    logged = {(line["path"], line["status"]) for line in lines if line["event"] == "request"}
    ocsp_path = urlsplit(service.publication.ocsp_url).path
    assert logged == {(ocsp_path, 415), ("/nothing-here", 404)}
    exposition = service.metrics.exposition().decode()
    assert 'method="GET",status="200"' in exposition
    assert "est_ca_ocsp_responses_total" in exposition


def test_logging_survives_the_stderr_it_was_configured_with_being_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Code that embeds the service (a test's captured output, a tool) replaces stderr, and
    closes it later: a log line afterwards goes to the stderr of that moment, never raises."""
    replaced = io.StringIO()
    monkeypatch.setattr("sys.stderr", replaced)
    logs.configure("json", "info")
    replaced.close()
    later = io.StringIO()
    monkeypatch.setattr("sys.stderr", later)
    try:
        structlog.get_logger("est_ca.test").warning("still here")
    finally:
        structlog.reset_defaults()
    assert json.loads(later.getvalue())["event"] == "still here"
