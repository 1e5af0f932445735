"""GET /.well-known/est/csrattrs with curl over real TLS, the body read by `openssl asn1parse`."""

from __future__ import annotations

import base64
from pathlib import Path

from est_ca.config import shipped_config_dir
from est_ca.server import Server
from est_ca.service import Service
from tests.conftest import CaMaterial, OpenService
from tests.helpers import CurlResult, curl, est_url, openssl


async def asn1parse(body: bytes) -> str:
    der = base64.b64decode(body)
    return (await openssl("asn1parse", "-inform", "DER", input=der)).decode()


async def test_csrattrs_names_the_key_types_sizes_and_signature_every_profile_accepts(
    server: Server, ca_material: CaMaterial
) -> None:
    response = await curl(est_url(server, "csrattrs"), trust=ca_material.tls_cert)
    assert response.status == 200
    assert response.headers["content-type"] == "application/csrattrs"
    assert response.headers["content-transfer-encoding"] == "base64"
    assert int(response.headers["content-length"]) == len(response.body)
    parsed = await asn1parse(response.body)
    assert ":rsaEncryption" in parsed
    assert ":3072" not in parsed  # sizes are INTEGERs, shown in hex by asn1parse
    assert "INTEGER           :0C00" in parsed  # 3072
    assert "INTEGER           :1000" in parsed  # 4096
    assert ":sha256WithRSAEncryption" in parsed
    assert "ecdsa-with" not in parsed  # the shipped profiles accept no EC keys


def p256_only_profiles(directory: Path) -> Path:
    """Every shipped profile accepting P-256 keys and nothing else."""
    directory.mkdir()
    for name in ("user", "organisation", "system"):
        text = (shipped_config_dir() / "profiles" / f"{name}.toml").read_text()
        text = text.replace("rsa_sizes = [3072, 4096]", "rsa_sizes = []")
        text = text.replace("ec_curves = []", 'ec_curves = ["P-256"]')
        (directory / f"{name}.toml").write_text(text)
    return directory


async def served_csrattrs(service: Service, ca_material: CaMaterial) -> CurlResult:
    server = Server(service)
    await server.start("127.0.0.1", 0, service.settings.service.http_port)
    try:
        return await curl(est_url(server, "csrattrs"), trust=ca_material.tls_cert)
    finally:
        await server.stop()


async def test_one_acceptable_curve_is_named_in_the_list_and_in_an_rfc9908_template(
    open_service: OpenService, ca_material: CaMaterial, tmp_path: Path
) -> None:
    service = await open_service(
        profiles={"extra_dirs": [str(p256_only_profiles(tmp_path / "profiles"))]}
    )
    response = await served_csrattrs(service, ca_material)
    assert response.status == 200
    parsed = await asn1parse(response.body)
    assert ":id-ecPublicKey" in parsed
    assert ":ecdsa-with-SHA256" in parsed
    assert ":rsaEncryption" not in parsed
    assert ":1.2.840.113549.1.9.16.2.61" in parsed  # id-aa-certificationRequestInfoTemplate
    assert parsed.count(":prime256v1") == 2  # the list's value, the template's key parameter


def disjoint_profiles(directory: Path) -> Path:
    """The system profile accepting only P-256 keys, with SHA-384: nothing common to all."""
    text = (shipped_config_dir() / "profiles" / "system.toml").read_text()
    text = text.replace("rsa_sizes = [3072, 4096]", "rsa_sizes = []")
    text = text.replace("ec_curves = []", 'ec_curves = ["P-256"]')
    text = text.replace('hash = "sha256"', 'hash = "sha384"')
    directory.mkdir()
    (directory / "system.toml").write_text(text)
    return directory


async def test_csrattrs_answers_204_when_the_profiles_share_nothing_to_say(
    open_service: OpenService, ca_material: CaMaterial, tmp_path: Path
) -> None:
    service = await open_service(
        profiles={"extra_dirs": [str(disjoint_profiles(tmp_path / "profiles"))]}
    )
    response = await served_csrattrs(service, ca_material)
    assert response.status == 204
    assert response.body == b""
