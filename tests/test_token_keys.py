"""An issuing CA whose key lives on a PKCS#11 token (real SoftHSM2), listed in `[[authorities]]`
with kind "pkcs11": enrollment over real TLS with curl, the CRL and OCSP, RSA-PSS and ECDSA,
the PIN kept out of every log line, audit event and error body, and the service riding out
the token going away and coming back (issue 13, item 2)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import io
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import structlog
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp

from est_ca import logs
from est_ca.ca.authority import key_identifier
from est_ca.ca.hierarchy import build_issuing
from est_ca.ca.pkcs11_signer import Pkcs11Signer, TokenKeyType, generate_token_key, read_pin
from est_ca.ca.signing import KeyFileSigner
from est_ca.clock import SettableClock
from est_ca.config import load_settings, shipped_config_dir
from est_ca.server import Server
from est_ca.service import Service
from tests.conftest import (
    TOKEN_PIN,
    CaMaterial,
    SoftHsm,
    authorities_overrides,
    with_test_organisations,
)
from tests.est.test_real_clients import openssl_csr_base64
from tests.helpers import (
    PKCS10,
    KeyPool,
    credentials,
    curl,
    curl_est,
    new_order,
    new_system,
    openssl,
    pem,
    post_ocsp,
    print_certs,
    run,
)
from tests.revocation.helpers import ocsp_request

PASSPHRASE = b"test passphrase"


@dataclasses.dataclass(frozen=True)
class TokenCa:
    """The issuing CA on the token: its certificate and chain files and its profile."""

    label: str
    certificate: Path
    chain: Path
    profile: str
    key_type: TokenKeyType


def _ec_profile(directory: Path) -> Path:
    """The shipped system profile, signed with ECDSA: what an EC CA key can issue."""
    directory.mkdir(exist_ok=True)
    text = (shipped_config_dir() / "profiles" / "system.toml").read_text()
    text = text.replace('name = "system"', 'name = "system-ec"')
    text = text.replace('algorithm = "rsassa-pss"\nhash = "sha256"\nsalt_length = 32', "")
    (directory / "system-ec.toml").write_text(
        text + 'algorithm = "ecdsa"\nhash = "sha256"\nsalt_length = 0\n'
    )
    return directory


@pytest.fixture(params=["rsa3072", "ec-p256"])
def token_ca(
    request: pytest.FixtureRequest, softhsm: SoftHsm, ca_material: CaMaterial, tmp_path: Path
) -> TokenCa:
    """A key generated on the token and a CA certificate for it, signed by the test root."""
    key_type: TokenKeyType = request.param
    label = f"issuing-{key_type}-{uuid.uuid4().hex[:8]}"
    pin = read_pin(pin_file=str(softhsm.pin_file), environ={})
    public_key = generate_token_key(
        module=softhsm.module, token=softhsm.token, label=label, pin=pin, key_type=key_type
    )
    root = x509.load_pem_x509_certificate(ca_material.hierarchy.root_cert.read_bytes())
    certificate = build_issuing(
        public_key,
        root,
        KeyFileSigner.load(ca_material.hierarchy.root_key, PASSPHRASE),
        dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1),
        ca_material.publication,
        number=7,
    )
    certificate_file = tmp_path / "token-ca.pem"
    certificate_file.write_bytes(pem([certificate]))
    chain = tmp_path / "token-chain.pem"
    chain.write_bytes(ca_material.hierarchy.root_cert.read_bytes())
    profile = "system" if key_type.startswith("rsa") else "system-ec"
    return TokenCa(label, certificate_file, chain, profile, key_type)


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    logs.configure("json", "debug", stream=stream)
    yield stream
    structlog.reset_defaults()


async def _open(
    tmp_path: Path,
    ca_material: CaMaterial,
    softhsm: SoftHsm,
    token_ca: TokenCa,
    clock: SettableClock,
    *,
    responder_token: bool = False,
    beside: Service | None = None,
) -> Service:
    """The service of a token CA; `beside` another on the same database and secrets (a second
    instance of a cluster, with its own data directory)."""
    config = tmp_path / "cas.toml"
    config.write_text(
        "[[authorities]]\n"
        'name = "token"\n'
        f'certificate = "{token_ca.certificate}"\n'
        f'chain = "{token_ca.chain}"\n'
        + softhsm.key_table(token_ca.label)
        + f'profiles = ["{token_ca.profile}"]\n'
        + "default = true\n"
        + (
            f'responder_token = {{ module = "{softhsm.module}", token = "{softhsm.token}", '
            f'pin_file = "{softhsm.pin_file}" }}\n'
            if responder_token
            else ""
        )
    )
    overrides = authorities_overrides(tmp_path, ca_material)
    overrides["profiles"] = {"extra_dirs": [str(_ec_profile(tmp_path / "profiles"))]}
    if beside is not None:
        overrides["data_dir"] = str(tmp_path / "data-beside")
        overrides["database"] = {"url": beside.settings.database_url}
        overrides["secrets"] = {
            "hmac_key_file": str(beside.files.hmac_key),
            "audit_key_file": str(beside.files.audit_key),
            "responder_wrap_key_file": str(beside.files.responder_wrap_key),
        }
    settings = load_settings(config, {}, overrides)
    opened = await Service.open(settings, clock=clock, create=True)
    return await with_test_organisations(opened)


@pytest.fixture
async def service(
    tmp_path: Path,
    ca_material: CaMaterial,
    softhsm: SoftHsm,
    token_ca: TokenCa,
    clock: SettableClock,
    log_output: io.StringIO,
) -> AsyncIterator[Service]:
    opened = await _open(tmp_path, ca_material, softhsm, token_ca, clock)
    yield opened
    await opened.close()


async def _enroll(
    server: Server,
    service: Service,
    ca_material: CaMaterial,
    token_ca: TokenCa,
    csr: Path,
    order: tuple[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """simpleenroll with curl, for a new system identity's order (or the order given)."""
    if order is None:
        identity = await new_system(service)
        order = credentials(await new_order(service, identity, profile=token_ca.profile))
    reference, code = order
    response = await curl_est(
        server,
        "simpleenroll",
        csr,
        "-u",
        f"{reference}:{code}",
        *PKCS10,
        trust=ca_material.tls_cert,
    )
    return response.status, response.headers, response.body


async def _csr(keys: KeyPool, tmp_path: Path, index: int = 0) -> Path:
    """A CSR for key `index`: each identity enrolls a key of its own."""
    body = tmp_path / f"csr-{index}.b64"
    body.write_bytes(await openssl_csr_base64(keys.rsa(index).path))
    return body


async def test_curl_enrolls_under_a_token_key_and_openssl_verifies_the_certificate(
    server: Server,
    service: Service,
    ca_material: CaMaterial,
    token_ca: TokenCa,
    keys: KeyPool,
    tmp_path: Path,
) -> None:
    status, _, body = await _enroll(
        server, service, ca_material, token_ca, await _csr(keys, tmp_path)
    )
    assert status == 200, body
    [certificate] = await print_certs(body)
    expected = "ecdsa-with-SHA256" if token_ca.key_type.startswith("ec") else "rsassaPss"
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(pem([certificate]))
    text = (await openssl("x509", "-in", leaf, "-noout", "-text")).decode()
    assert f"Signature Algorithm: {expected}" in text
    verified = await openssl(
        "verify",
        "-CAfile",
        ca_material.hierarchy.root_cert,
        "-untrusted",
        token_ca.certificate,
        leaf,
    )
    assert verified.decode().endswith(": OK\n")


async def test_the_crl_is_signed_by_the_token_key(
    server: Server, service: Service, ca_material: CaMaterial, token_ca: TokenCa, tmp_path: Path
) -> None:
    fetched = await curl(f"{service.publication.base_url}/crl/token.crl")
    assert fetched.status == 200
    crl = tmp_path / "token.crl"
    crl.write_bytes(fetched.body)
    trust = tmp_path / "trust.pem"
    trust.write_bytes(token_ca.certificate.read_bytes())
    result = await run(
        "openssl", "crl", "-inform", "DER", "-in", crl, "-CAfile", trust, "-noout"
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    assert b"verify OK" in result.stdout + result.stderr


async def test_ocsp_answers_for_a_token_issued_certificate_verify_with_openssl(
    server: Server,
    service: Service,
    ca_material: CaMaterial,
    token_ca: TokenCa,
    keys: KeyPool,
    tmp_path: Path,
) -> None:
    """The delegated responder's certificate was signed by the token key."""
    status, _, body = await _enroll(
        server, service, ca_material, token_ca, await _csr(keys, tmp_path)
    )
    assert status == 200, body
    [certificate] = await print_certs(body)
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(pem([certificate]))
    result = await run(
        "openssl", "ocsp", "-issuer", token_ca.certificate, "-cert", leaf,
        "-url", service.publication.ocsp_url, "-CAfile", ca_material.hierarchy.root_cert,
    )  # fmt: skip
    output = (result.stdout + result.stderr).decode()
    assert result.returncode == 0, output
    assert "Response verify OK" in output
    assert ": good" in output


async def test_the_token_key_is_sensitive_and_never_extractable(
    service: Service, softhsm: SoftHsm, token_ca: TokenCa
) -> None:
    import pkcs11

    lib = pkcs11.lib(softhsm.module)
    with lib.get_token(token_label=softhsm.token).open() as session:
        key = session.get_key(object_class=pkcs11.ObjectClass.PRIVATE_KEY, label=token_ca.label)
        assert key[pkcs11.Attribute.EXTRACTABLE] is False
        assert key[pkcs11.Attribute.SENSITIVE] is True
        assert key[pkcs11.Attribute.NEVER_EXTRACTABLE] is True
    assert service.ca is not None
    assert isinstance(service.ca.signer, Pkcs11Signer)
    expected = (
        rsa.RSAPublicKey if token_ca.key_type.startswith("rsa") else ec.EllipticCurvePublicKey
    )
    assert isinstance(service.ca.signer.public_key, expected)
    assert service.ca.signer.public_key == service.ca.certificate.public_key()


async def test_without_the_token_enrollment_is_503_and_readiness_false_until_it_is_back(
    server: Server,
    service: Service,
    ca_material: CaMaterial,
    softhsm: SoftHsm,
    token_ca: TokenCa,
    keys: KeyPool,
    tmp_path: Path,
    log_output: io.StringIO,
) -> None:
    csr = await _csr(keys, tmp_path)
    assert service.readiness()["signing_keys"] is True
    away = softhsm.tokens.with_name("tokens-away")
    shutil.move(softhsm.tokens, away)
    try:
        order = credentials(
            await new_order(service, await new_system(service), profile=token_ca.profile)
        )
        status, headers, body = await _enroll(server, service, ca_material, token_ca, csr, order)
        assert status == 503, body
        assert int(headers["retry-after"]) >= 1
        assert service.readiness()["signing_keys"] is False
        await service.maintain()  # the probe finds the token still away
        assert service.readiness()["signing_keys"] is False
    finally:
        shutil.move(away, softhsm.tokens)

    async def recovered() -> bool:
        await service.maintain()
        return service.readiness()["signing_keys"]

    for _ in range(30):
        if await recovered():
            break
        await asyncio.sleep(0.2)
    assert service.readiness()["signing_keys"] is True
    # The client retries with the same order, as Retry-After tells it to: the 503 kept it.
    status, _, body = await _enroll(server, service, ca_material, token_ca, csr, order)
    assert status == 200, body
    _assert_no_pin(log_output.getvalue(), body)


async def test_the_pin_appears_in_no_log_line_audit_event_or_error_body(
    server: Server,
    service: Service,
    ca_material: CaMaterial,
    softhsm: SoftHsm,
    token_ca: TokenCa,
    keys: KeyPool,
    tmp_path: Path,
    log_output: io.StringIO,
) -> None:
    csr = await _csr(keys, tmp_path)
    ok = await _enroll(server, service, ca_material, token_ca, csr)
    assert ok[0] == 200
    away = softhsm.tokens.with_name("tokens-away")
    shutil.move(softhsm.tokens, away)
    try:
        refused = await _enroll(
            server, service, ca_material, token_ca, await _csr(keys, tmp_path, 1)
        )
    finally:
        shutil.move(away, softhsm.tokens)
    assert refused[0] == 503
    audit = await service.audit.events(limit=1000)
    assert audit
    _assert_no_pin(
        log_output.getvalue(),
        refused[2],
        "\n".join(repr(event) for event in audit),
        repr(service.ca.signer if service.ca else None),
        await asyncio.to_thread(Path("/proc/self/cmdline").read_bytes),
    )


def _assert_no_pin(*texts: str | bytes) -> None:
    for text in texts:
        shown = text.decode(errors="replace") if isinstance(text, bytes) else text
        assert TOKEN_PIN not in shown


async def _ocsp(service: Service, ca_material: CaMaterial, token_ca: TokenCa, leaf: Path) -> str:
    result = await run(
        "openssl", "ocsp", "-issuer", token_ca.certificate, "-cert", leaf,
        "-url", service.publication.ocsp_url, "-CAfile", ca_material.hierarchy.root_cert,
    )  # fmt: skip
    output = (result.stdout + result.stderr).decode()
    assert result.returncode == 0, output
    return output


async def test_ocsp_responder_keys_made_on_the_token_sign_answers_openssl_verifies(
    ca_material: CaMaterial,
    softhsm: SoftHsm,
    token_ca: TokenCa,
    clock: SettableClock,
    keys: KeyPool,
    tmp_path: Path,
) -> None:
    """With `responder_token`, the responder's key is made on the token (never in the database:
    its row names the label) and its certificate, signed by the token CA key, names it."""
    service = await _open(tmp_path, ca_material, softhsm, token_ca, clock, responder_token=True)
    server = Server(service)
    try:
        await server.start("127.0.0.1", 0, service.settings.service.http_port)
        status, _, body = await _enroll(
            server, service, ca_material, token_ca, await _csr(keys, tmp_path)
        )
        assert status == 200, body
        [certificate] = await print_certs(body)
        leaf = tmp_path / "leaf.pem"
        leaf.write_bytes(pem([certificate]))
        output = await _ocsp(service, ca_material, token_ca, leaf)
        assert "Response verify OK" in output
        assert ": good" in output
        issuer = x509.load_pem_x509_certificate(token_ca.certificate.read_bytes())
        answer = await post_ocsp(service, tmp_path, ocsp_request(certificate, issuer))
        [responder] = ocsp.load_der_ocsp_response(answer.body).certificates
        on_token = Pkcs11Signer(
            module=softhsm.module,
            token=softhsm.token,
            label=f"ocsp-token-{responder.serial_number:x}",
            pin=read_pin(pin_file=str(softhsm.pin_file), environ={}),
            pool_size=1,
        )
        assert on_token.public_key == responder.public_key()
        async with service.store.read() as tx:
            recorded = await tx.newest_ocsp_responder(key_identifier(issuer).hex(), on_token=True)
        assert recorded is not None
        assert recorded.key_label == f"ocsp-token-{responder.serial_number:x}"
        assert recorded.wrapped_key is None  # the key never leaves the token
    finally:
        await server.stop()
        await service.close()


async def test_a_second_instance_signs_with_the_responder_key_the_first_made_on_the_token(
    ca_material: CaMaterial,
    softhsm: SoftHsm,
    token_ca: TokenCa,
    clock: SettableClock,
    keys: KeyPool,
    tmp_path: Path,
) -> None:
    """One responder per CA for the cluster: the second instance finds its label in the
    database and signs with that key on the shared token; no second key is made."""
    first = await _open(tmp_path, ca_material, softhsm, token_ca, clock, responder_token=True)
    second = await _open(
        tmp_path, ca_material, softhsm, token_ca, clock, responder_token=True, beside=first
    )
    try:
        for service in (first, second):
            assert service.publishing is not None
            await service.publishing.start()
        assert first.publishing is not None
        assert second.publishing is not None
        [made] = [k.current for k in first.publishing._keepers]
        [adopted] = [k.current for k in second.publishing._keepers]
        assert adopted.serial == made.serial
        assert adopted.signer.public_key == made.signer.public_key
        issuer = x509.load_pem_x509_certificate(token_ca.certificate.read_bytes())
        async with second.store.read() as tx:
            assert await tx.count_ocsp_responders(key_identifier(issuer).hex()) == 1
    finally:
        for service in (second, first):
            if service.publishing is not None:
                await service.publishing.stop()
            await service.close()
