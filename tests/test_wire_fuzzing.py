"""Wire-level fuzzing of the EST (HTTPS) and OCSP/CRL (HTTP) listeners with raw requests:
random and mutated bodies, headers, methods, paths, framing and Basic credentials.

Whatever arrives: no 5xx, no traceback in a response; and afterwards the very instance that was
fuzzed (one per module) issued nothing, left its pending order as it was, and still serves and
issues. A third of the EST requests are enrollments with that order's true credentials, so the
fuzzing reaches the CSR checks and issuance. 150 cases per listener in CI (derandomized),
thousands with EST_CA_FUZZ=long.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import ssl
from collections import Counter
from collections.abc import AsyncIterator

import hypothesis.strategies as st
import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given

from est_ca.audit import AuditEvent
from est_ca.ca.publication import OCSP_PATH
from est_ca.clock import SettableClock
from est_ca.registration.orders import Order, PlacedOrder
from est_ca.server import Server
from est_ca.service import Service
from tests.conftest import CaMaterial, make_settings
from tests.helpers import KeyPool, csr_base64, make_csr, new_order, new_user

# One fuzzed instance for the whole module: the last test checks what the fuzzing did to it.
pytestmark = pytest.mark.asyncio(loop_scope="module")

TOKEN = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12
)
EST_PATHS = [
    "/.well-known/est/cacerts",
    "/.well-known/est/simpleenroll",
    "/.well-known/est/simplereenroll",
    "/.well-known/est/csrattrs",
    "/.well-known/est/serverkeygen",
    "/.well-known/est/",
    "/",
    "/admin/v1/identities",
]
HTTP_PATHS = [
    OCSP_PATH,
    OCSP_PATH + "/",
    "/crl/issuing.crl",
    "/crl/root.crl",
    "/cacert/issuing.cer",
    "/.well-known/est/simpleenroll",
    "/",
]


def _valid_csr_base64() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fuzz")]))
        .sign(key, hashes.SHA256())
    )
    return base64.encodebytes(csr.public_bytes(serialization.Encoding.DER))


VALID_BODY = _valid_csr_base64()


@st.composite
def paths(draw: st.DrawFn, known: list[str]) -> bytes:
    base = draw(st.sampled_from(known))
    kind = draw(st.sampled_from(["as-is"] * 6 + ["suffix", "percent", "unicode", "long", "query"]))
    if kind == "suffix":
        base += "/" + draw(TOKEN)
    elif kind == "percent":
        base += "/%" + draw(st.sampled_from(["00", "2F", "ZZ", "", "%", "C3%A6"]))
    elif kind == "unicode":
        base += "/" + draw(
            st.text(min_size=1, max_size=10).filter(lambda t: "\r" not in t and "\n" not in t)
        )
    elif kind == "long":
        base += "/" + "a" * draw(st.integers(min_value=100, max_value=20_000))
    elif kind == "query":
        base += "?" + draw(TOKEN) + "=" + draw(TOKEN)
    return base.encode("utf-8", errors="surrogateescape").replace(b" ", b"%20")


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["empty", "random", "valid", "mutated", "huge", "base64-junk"]))
    if kind == "empty":
        return b""
    if kind == "random":
        return draw(st.binary(max_size=2000))
    if kind == "valid":
        return VALID_BODY
    if kind == "mutated":
        data = bytearray(VALID_BODY)
        for _ in range(draw(st.integers(min_value=1, max_value=8))):
            data[draw(st.integers(min_value=0, max_value=len(data) - 1))] = draw(
                st.integers(min_value=0, max_value=255)
            )
        return bytes(data)
    if kind == "huge":
        return b"A" * draw(st.integers(min_value=60_000, max_value=200_000))
    return base64.b64encode(draw(st.binary(max_size=600)))


@st.composite
def basic_headers(draw: st.DrawFn) -> bytes:
    kind = draw(
        st.sampled_from(
            [
                "none",
                "random",
                "no-colon",
                "bad-base64",
                "huge",
                "binary",
                "other-scheme",
                "plausible",
            ]
        )
    )
    if kind == "none":
        return b""
    if kind == "random":
        value = base64.b64encode(draw(st.binary(max_size=100)))
    elif kind == "no-colon":
        value = base64.b64encode(draw(TOKEN).encode())
    elif kind == "bad-base64":
        value = b"!!" + draw(TOKEN).encode() + b"=="
    elif kind == "huge":
        value = b"A" * draw(st.integers(min_value=1000, max_value=6_000))
    elif kind == "binary":
        value = base64.b64encode(b"\xff\xfe:" + draw(st.binary(max_size=30)))
    elif kind == "other-scheme":
        return b"Authorization: Bearer " + draw(TOKEN).encode() + b"\r\n"
    else:
        value = base64.b64encode(b"ABCDEFGHJKMN:ABCDE-FGHJK-MNPQR-STVWX")
    return b"Authorization: Basic " + value + b"\r\n"


PRINTABLE = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60)


@st.composite
def raw_requests(draw: st.DrawFn, known: list[str], well_formed: bool) -> bytes:
    """A raw HTTP/1.1 request. Well-formed ones reach the handlers (valid method tokens,
    printable headers, correct framing) with fuzzed meaning; the others fuzz the framing too."""
    methods = [b"POST", b"GET", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH", b"TRACE"]
    if not well_formed:
        methods += [b"FOO", b"G\x00T", b"get", b""]
    method = draw(st.sampled_from(methods))
    body = draw(bodies())
    content_types = [
        b"application/pkcs10",
        b"application/ocsp-request",
        b"text/plain",
        b"application/pkcs10; charset=utf-8",
        b"APPLICATION/PKCS10",
        b"multipart/x",
        b"application/json",
        b"",
    ]
    if not well_formed:
        content_types += [b"\xff\xfe", b"application/pkcs10\x00"]
    content_type = draw(st.sampled_from(content_types))
    framings = ["length", "chunked"]
    if not well_formed:
        framings += [
            "bad-chunks",
            "wrong-length",
            "absurd-length",
            "negative-length",
            "none",
            "both",
        ]
    framing = draw(st.sampled_from(framings))
    head = [method + b" " + draw(paths(known)) + b" HTTP/1.1", b"Host: localhost"]
    if content_type:
        head.append(b"Content-Type: " + content_type)
    if draw(st.booleans()):
        head.append(
            b"Content-Transfer-Encoding: "
            + draw(st.sampled_from([b"base64", b"binary", b"7bit", b"x-garbage"]))
        )
    if draw(st.booleans()):
        value = draw(PRINTABLE).encode() if well_formed else draw(st.binary(max_size=50))
        head.append(
            b"X-"
            + draw(TOKEN).encode()
            + b": "
            + value.replace(b"\r", b"").replace(b"\n", b"").strip()
        )
    auth = draw(basic_headers())
    if framing == "length":
        head.append(b"Content-Length: %d" % len(body))
        payload = body
    elif framing == "chunked":
        head.append(b"Transfer-Encoding: chunked")
        size = max(1, len(body) // 3)
        chunks = [body[i : i + size] for i in range(0, len(body), size)] if body else []
        payload = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    elif framing == "bad-chunks":
        head.append(b"Transfer-Encoding: chunked")
        payload = b"zz\r\n" + body[:50] + b"\r\n"
    elif framing == "wrong-length":
        head.append(b"Content-Length: %d" % (len(body) + draw(st.integers(-5, 5))))
        payload = body
    elif framing == "absurd-length":
        head.append(b"Content-Length: 99999999999999999999")
        payload = body[:100]
    elif framing == "negative-length":
        head.append(b"Content-Length: -1")
        payload = body[:100]
    elif framing == "both":
        head += [b"Content-Length: %d" % len(body), b"Transfer-Encoding: chunked"]
        payload = body
    else:
        payload = b""
    head.append(b"Connection: close")
    return b"\r\n".join(head) + b"\r\n" + auth + b"\r\n" + payload


@st.composite
def entitled_enrollments(draw: st.DrawFn, entitled: bytes) -> bytes:
    """simpleenroll with a pending order's true `reference:code` and a fuzzed body, which
    the raw requests above almost never make: whatever the body, nothing may be issued."""
    body = draw(bodies())
    head = [
        b"POST /.well-known/est/simpleenroll HTTP/1.1",
        b"Host: localhost",
        b"Content-Type: " + draw(st.sampled_from([b"application/pkcs10", b"text/plain"])),
        b"Authorization: Basic " + base64.b64encode(entitled),
    ]
    if draw(st.booleans()):
        head.append(b"Content-Transfer-Encoding: base64")
    if draw(st.booleans()):
        head.append(b"Content-Length: %d" % len(body))
        payload = body
    else:
        head.append(b"Transfer-Encoding: chunked")
        size = max(1, len(body) // 3)
        chunks = [body[i : i + size] for i in range(0, len(body), size)] if body else []
        payload = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    head.append(b"Connection: close")
    return b"\r\n".join(head) + b"\r\n\r\n" + payload


async def exchange(host: str, port: int, request: bytes, context: ssl.SSLContext | None) -> bytes:
    """Send one raw request; the server's whole answer (b'' when it just closed)."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=context), timeout=10
    )
    try:
        writer.write(request)
        await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass  # the server may stop reading a request it already answered
    try:
        return await asyncio.wait_for(reader.read(), timeout=30)
    except (ConnectionError, ssl.SSLError):
        return b""
    finally:
        writer.close()


def status_of(answer: bytes) -> int | None:
    if not answer.startswith(b"HTTP/1."):
        return None
    return int(answer.split(b" ", 2)[1])


@dataclasses.dataclass(frozen=True)
class Fuzzed:
    """The instance the fuzz tests attack, and what it held before them."""

    service: Service
    server: Server
    order: PlacedOrder
    orders_before: list[Order]
    audit_before: list[AuditEvent]
    statuses: dict[str, Counter[int | None]] = dataclasses.field(
        default_factory=lambda: {"est": Counter(), "http": Counter()}
    )

    @property
    def entitled(self) -> bytes:
        return f"{self.order.order.reference}:{self.order.one_time_code}".encode()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fuzzed(
    tmp_path_factory: pytest.TempPathFactory, ca_material: CaMaterial
) -> AsyncIterator[Fuzzed]:
    settings = make_settings(
        tmp_path_factory.mktemp("fuzzed"),
        ca_material,
        limits={"failures_per_source": 1_000_000, "request_timeout_seconds": 1},
    )
    service = await Service.open(settings, clock=SettableClock(), create=True)
    server = Server(service)
    try:
        order = await new_order(service, await new_user(service))
        await server.start("127.0.0.1", 0, service.settings.service.http_port)
        yield Fuzzed(
            service, server, order, await service.registry.list_orders(), await _all_audit(service)
        )
    finally:
        await server.stop()
        await service.close()


def _address(url: str) -> tuple[str, int]:
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    return host, int(port)


async def _check_still_serving(server: Server, ca: CaMaterial) -> None:
    host, port = _address(server.https_url)
    context = ssl.create_default_context(cafile=str(ca.tls_cert))
    answer = await exchange(
        host,
        port,
        b"GET /.well-known/est/cacerts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        context,
    )
    assert status_of(answer) == 200
    host, port = _address(server.http_url)
    answer = await exchange(
        host, port, b"GET /crl/issuing.crl HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", None
    )
    assert status_of(answer) == 200


async def _enroll(fuzzed: Fuzzed, ca: CaMaterial, body: bytes) -> bytes:
    """A plain simpleenroll with the fuzzed instance's pending order."""
    host, port = _address(fuzzed.server.https_url)
    context = ssl.create_default_context(cafile=str(ca.tls_cert))
    head = [
        b"POST /.well-known/est/simpleenroll HTTP/1.1",
        b"Host: x",
        b"Content-Type: application/pkcs10",
        b"Authorization: Basic " + base64.b64encode(fuzzed.entitled),
        b"Content-Length: %d" % len(body),
        b"Connection: close",
    ]
    return await exchange(host, port, b"\r\n".join(head) + b"\r\n\r\n" + body, context)


async def _all_audit(service: Service) -> list[AuditEvent]:
    events: list[AuditEvent] = []
    async with service.store.read() as tx:
        while page := await tx.list_audit(limit=1000, offset=len(events)):
            events += page
    return events


def _assert_clean(answer: bytes, request: bytes) -> None:
    status = status_of(answer)
    assert status is None or status < 500, (status, request[:300], answer[:300])
    assert b"Traceback" not in answer
    assert b'File "' not in answer


@given(data=st.data())
async def test_est_answers_anything_without_a_5xx(
    fuzzed: Fuzzed, ca_material: CaMaterial, data: st.DataObject
) -> None:
    request = data.draw(
        st.one_of(
            raw_requests(EST_PATHS, True),
            raw_requests(EST_PATHS, False),
            entitled_enrollments(fuzzed.entitled),
        ),
        label="request",
    )
    host, port = _address(fuzzed.server.https_url)
    context = ssl.create_default_context(cafile=str(ca_material.tls_cert))
    answer = await exchange(host, port, request, context)
    _assert_clean(answer, request)
    fuzzed.statuses["est"][status_of(answer)] += 1


@given(request=st.one_of(raw_requests(HTTP_PATHS, True), raw_requests(HTTP_PATHS, False)))
async def test_ocsp_and_crl_answer_anything_without_a_5xx(fuzzed: Fuzzed, request: bytes) -> None:
    host, port = _address(fuzzed.server.http_url)
    answer = await exchange(host, port, request, None)
    _assert_clean(answer, request)
    fuzzed.statuses["http"][status_of(answer)] += 1


# Refusals are recorded; nothing else the fuzzing may cause is.
REFUSAL_ACTIONS = {"enroll.refused", "reenroll.refused"}


async def test_after_the_fuzzing_the_service_issued_nothing_changed_no_order_and_still_serves(
    fuzzed: Fuzzed, ca_material: CaMaterial, keys: KeyPool
) -> None:
    """Runs after the two above (same module, file order) on the instance they fuzzed."""
    statuses = fuzzed.statuses
    assert statuses["est"].total() > 0, "run the whole module: this instance was not fuzzed"
    assert statuses["http"].total() > 0, "run the whole module: this instance was not fuzzed"
    print(f"wire fuzzing statuses: {dict(statuses['est'])} (EST), {dict(statuses['http'])} (HTTP)")
    service = fuzzed.service
    assert await service.registry.list_certificates() == []  # nothing issued, nor reserved
    assert await service.registry.list_orders() == fuzzed.orders_before
    audit = await _all_audit(service)
    assert audit[: len(fuzzed.audit_before)] == fuzzed.audit_before
    assert {event.action for event in audit[len(fuzzed.audit_before) :]} <= REFUSAL_ACTIONS

    await _check_still_serving(fuzzed.server, ca_material)
    answer = await _enroll(fuzzed, ca_material, csr_base64(make_csr(keys.rsa().key)))
    assert status_of(answer) == 200, answer[:300]
    [record] = await service.registry.list_certificates()
    assert record.order_id == fuzzed.order.order.id
