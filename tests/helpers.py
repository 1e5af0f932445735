"""Helpers the tests share: keys, CSRs, real subprocesses (curl, openssl), and fixtures' values."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

from est_ca.audit import Actor
from est_ca.ca.hierarchy import HierarchyFiles
from est_ca.registration.identities import Identity, IdentityType
from est_ca.registration.orders import PlacedOrder
from est_ca.registration.organisations import Organisation
from est_ca.server import Server
from est_ca.service import Service

ADMIN = Actor("admin", "test", "pytest")
# CI sets this: a missing real tool or service is then a failure, not a skip.
REQUIRE_SERVICES = os.environ.get("EST_CA_REQUIRE_SERVICES") == "1"
PROCESS_TIMEOUT = 120


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed; this test talks to the real {name}"
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)
    return path


@dataclasses.dataclass(frozen=True)
class KeyPair:
    key: CertificateIssuerPrivateKeyTypes
    path: Path

    @property
    def pem_path(self) -> str:
        return str(self.path)


class KeyPool:
    """Subscriber keys, generated once per test session (RSA keygen is the slow part of tests)."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._keys: dict[tuple[str, int], KeyPair] = {}

    def rsa(self, index: int = 0, bits: int = 3072) -> KeyPair:
        return self._get(("rsa", bits), index, lambda: rsa.generate_private_key(65537, bits))

    def ec(self, index: int = 0, curve: ec.EllipticCurve | None = None) -> KeyPair:
        chosen = curve or ec.SECP256R1()
        return self._get(("ec-" + chosen.name, 0), index, lambda: ec.generate_private_key(chosen))

    def _get(self, kind: tuple[str, int], index: int, make: object) -> KeyPair:
        slot = (f"{kind[0]}-{kind[1]}-{index}", index)
        if slot not in self._keys:
            key = make()  # type: ignore[operator]
            path = self._directory / f"{slot[0]}.key"
            path.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            self._keys[slot] = KeyPair(key=key, path=path)
        return self._keys[slot]


def make_csr(
    key: CertificateIssuerPrivateKeyTypes,
    *,
    subject: x509.Name | None = None,
    san: x509.SubjectAlternativeName | None = None,
    algorithm: hashes.HashAlgorithm | None = None,
) -> x509.CertificateSigningRequest:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        subject or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "whatever the client wants")])
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return builder.sign(key, algorithm or hashes.SHA256())  # type: ignore[arg-type]


def csr_der(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.DER)


def csr_base64(csr: x509.CertificateSigningRequest, *, line_breaks: bool = True) -> bytes:
    der = csr_der(csr)
    return base64.encodebytes(der) if line_breaks else base64.b64encode(der)


async def run(
    *args: str | Path, input: bytes | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    """A real process, awaited without blocking the event loop that serves the test server."""
    process = await asyncio.create_subprocess_exec(
        *(str(a) for a in args),
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(input), PROCESS_TIMEOUT)
    assert process.returncode is not None
    return subprocess.CompletedProcess([str(a) for a in args], process.returncode, stdout, stderr)


@dataclasses.dataclass(frozen=True)
class CurlResult:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


async def curl(url: str, *options: str | Path, trust: Path | None = None) -> CurlResult:
    """curl with the response status and headers parsed; a failure to connect fails the test."""
    require_tool("curl")
    args: list[str | Path] = ["curl", "-sS", "-D", "-", "--max-time", "60"]
    if trust is not None:
        args += ["--cacert", trust]
    result = await run(*args, *options, url)
    assert result.returncode == 0, result.stderr.decode()
    return parse_curl_output(result.stdout)


async def post_ocsp(service: Service, tmp: Path, request: bytes) -> CurlResult:
    """An OCSP request POSTed by curl, as a relying party sends it."""
    body = tmp / "ocsp-request.der"
    body.write_bytes(request)
    return await curl(
        service.publication.ocsp_url,
        "-H",
        "Content-Type: application/ocsp-request",
        "--data-binary",
        f"@{body}",
    )


PKCS10 = ("-H", "Content-Type: application/pkcs10")


def est_url(server: Server, operation: str) -> str:
    return f"{server.https_url}/.well-known/est/{operation}"


async def curl_est(
    server: Server, operation: str, body: Path, *options: str | Path, trust: Path
) -> CurlResult:
    """POST the file `body` to an EST operation with curl; `options` carry the content type,
    credentials or client certificate, as a client sends them."""
    return await curl(
        est_url(server, operation), *options, "--data-binary", f"@{body}", trust=trust
    )


def parse_curl_output(output: bytes) -> CurlResult:
    head, _, body = output.partition(b"\r\n\r\n")
    while body.startswith(b"HTTP/"):  # after 100 Continue or an authentication retry
        head, _, body = body.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return CurlResult(status=status, headers=headers, body=body)


async def openssl(*args: str | Path, input: bytes | None = None) -> bytes:
    require_tool("openssl")
    result = await run("openssl", *args, input=input)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


async def pki(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    """strongSwan's `pki` (an EST client independent of ours); its output is for the message
    of a failing assertion, its exit code and written files for the test."""
    require_tool("pki")
    return await run("pki", *args)


async def print_certs(response_body: bytes) -> list[x509.Certificate]:
    """What `openssl pkcs7 -print_certs` makes of a base64 certs-only response."""
    pem = await openssl(
        "pkcs7", "-inform", "DER", "-print_certs", input=base64.b64decode(response_body)
    )
    return x509.load_pem_x509_certificates(pem)


def pem(certificates: Sequence[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


TEST_DOMAINS = ("example.dk",)


async def organisation(
    service: Service, cvr: str, name: str, domains: Sequence[str] = TEST_DOMAINS
) -> Organisation:
    """The organisation of `cvr`, registered now with `name` if it is not yet."""
    async with service.store.read() as tx:
        registered = await tx.get_organisation(cvr)
    if registered is not None:
        return registered
    return await service.registry.create_organisation(
        ADMIN, cvr=cvr, name=name, email_domains=domains
    )


async def new_user(
    service: Service,
    *,
    given_name: str = "Lars",
    surname: str = "Larsen",
    email: str = "lars@example.dk",
    cvr: str = "96908409",
    organisation_name: str = "Testorganisation nr. 96908409",
) -> Identity:
    await organisation(service, cvr, organisation_name)
    return await service.registry.create_identity(
        ADMIN,
        type=IdentityType.USER,
        organisation_name=organisation_name,
        cvr=cvr,
        given_name=given_name,
        surname=surname,
        email=email,
    )


async def danish_identity(
    service: Service, identity_type: IdentityType, *, organisation_email: bool = False
) -> Identity:
    """An identity of the type with Danish letters in every name that allows them."""
    if identity_type is IdentityType.USER:
        return await new_user(
            service,
            given_name="Søren",
            surname="Ærø Ålborg",
            email="soren@example.dk",
            cvr="99999999",
            organisation_name="ÆØÅ ApS",
        )
    email = (
        "post@example.dk"
        if organisation_email and identity_type is IdentityType.ORGANISATION
        else None
    )
    await organisation(service, "99999999", "ÆØÅ ApS")
    return await service.registry.create_identity(
        ADMIN,
        type=identity_type,
        organisation_name="ÆØÅ ApS",
        cvr="99999999",
        display_name=f"ÆØÅ {identity_type.value}",
        email=email,
    )


async def new_system(service: Service, name: str = "billing.service") -> Identity:
    await organisation(service, "34051178", "Digitaliseringsstyrelsen")
    return await service.registry.create_identity(
        ADMIN,
        type=IdentityType.SYSTEM,
        organisation_name="Digitaliseringsstyrelsen",
        cvr="34051178",
        display_name=name,
    )


async def new_order(service: Service, identity: Identity, **options: object) -> PlacedOrder:
    return await service.registry.place_order(ADMIN, identity.id, **options)  # type: ignore[arg-type]


def credentials(placed: PlacedOrder) -> tuple[str, str]:
    return placed.order.reference, placed.one_time_code


def authority_entry(
    name: str,
    hierarchy: HierarchyFiles,
    passphrase: Path,
    *,
    default: bool,
    label: str = "",
    profiles: Sequence[str] = (),
    retired: bool = False,
) -> str:
    """One `[[authorities]]` table of an operator's configuration file."""
    return (
        "[[authorities]]\n"
        f'name = "{name}"\n'
        f'certificate = "{hierarchy.issuing_cert}"\n'
        f'chain = "{hierarchy.issuing_chain}"\n'
        f'key = {{ kind = "file", path = "{hierarchy.issuing_key}", '
        f'passphrase_file = "{passphrase}" }}\n'
        f"default = {'true' if default else 'false'}\n"
        + (f'label = "{label}"\n' if label else "")
        + (f"profiles = {list(profiles)!r}\n".replace("'", '"') if profiles else "")
        + ("retired = true\n" if retired else "")
    )
