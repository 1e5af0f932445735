"""The files a start creates and relies on: the database is its owner's alone, and a data
directory or secret file other users can read (or the group can change) stops the start."""

from __future__ import annotations

import dataclasses
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import SignatureAlgorithmOID

from est_ca.ca.hierarchy import HierarchyFiles
from est_ca.config import Settings, load_settings
from est_ca.errors import ConfigurationError
from est_ca.service import Service
from tests.conftest import CaMaterial, make_settings
from tests.helpers import new_user, run
from tests.test_cli import run_est_ca
from tests.test_quickstart import commands_in, serving


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def set_mode(path: Path, new_mode: int) -> None:
    path.chmod(new_mode)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The common umask (files 0644 unless created otherwise), whatever the test runner's."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.fixture
def material(tmp_path: Path, ca_material: CaMaterial) -> CaMaterial:
    """A private copy of the session's CA and TLS files, whose modes a test may change."""
    directory = tmp_path / "material"
    directory.mkdir(mode=0o700)
    hierarchy = HierarchyFiles.in_directory(directory / "demo")
    hierarchy.root_cert.parent.mkdir(mode=0o700)
    for source, target in zip(
        dataclasses.astuple(ca_material.hierarchy), dataclasses.astuple(hierarchy), strict=True
    ):
        shutil.copyfile(source, target)
    copy = dataclasses.replace(
        ca_material,
        hierarchy=hierarchy,
        passphrase=directory / "passphrase",
        tls_cert=directory / "tls.pem",
        tls_key=directory / "tls.key",
    )
    shutil.copyfile(ca_material.passphrase, copy.passphrase)
    shutil.copyfile(ca_material.tls_cert, copy.tls_cert)
    shutil.copyfile(ca_material.tls_key, copy.tls_key)
    for secret in (hierarchy.root_key, hierarchy.issuing_key, copy.passphrase, copy.tls_key):
        secret.chmod(0o600)
    return copy


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data directory that exists before the first start, as an operator prepares one."""
    directory = tmp_path / "data"
    directory.mkdir(mode=0o700)
    return directory


async def test_a_database_created_in_an_existing_data_directory_is_its_owners_alone(
    data_dir: Path, material: CaMaterial
) -> None:
    service = await Service.open(make_settings(data_dir, material), create=True)
    try:
        await new_user(service)  # a write: the WAL file exists until the last connection ends
        database = data_dir / "est-ca.db"
        assert oct(mode(database)) == oct(0o600)
        assert oct(mode(data_dir / "est-ca.db-wal")) == oct(0o600)
        assert oct(mode(data_dir / "est-ca.db-shm")) == oct(0o600)
    finally:
        await service.close()


async def test_a_start_on_a_data_directory_without_a_responder_wrapping_key_makes_one(
    data_dir: Path, material: CaMaterial
) -> None:
    """As a data directory of an earlier version has none: the start makes it, 0600, as it
    would the HMAC key, and leaves it alone afterwards."""
    settings = make_settings(data_dir, material)
    key = data_dir / "secrets" / "responder-wrap.key"
    service = await Service.open(settings, create=True)
    await service.close()
    assert oct(mode(key)) == oct(0o600)
    made = key.read_bytes()
    key.unlink()
    service = await Service.open(settings, create=True)  # the key is gone: made anew
    await service.close()
    remade = key.read_bytes()
    assert remade != made
    again = await Service.open(settings, create=True)
    await again.close()
    assert key.read_bytes() == remade


@pytest.mark.parametrize("directory_mode", [0o755, 0o701, 0o770], ids=oct)
async def test_start_is_refused_on_a_data_directory_other_users_can_enter_or_change(
    data_dir: Path, material: CaMaterial, directory_mode: int
) -> None:
    set_mode(data_dir, directory_mode)
    with pytest.raises(ConfigurationError) as refused:
        await Service.open(make_settings(data_dir, material), create=True)
    assert f"chmod 700 {data_dir}" in str(refused.value)


SECRETS: dict[str, Callable[[Settings, CaMaterial], Path]] = {
    "ca key": lambda _, m: m.hierarchy.issuing_key,
    "root key": lambda _, m: m.hierarchy.root_key,
    "key passphrase": lambda _, m: m.passphrase,
    "tls key": lambda _, m: m.tls_key,
    "ocsp responder key left by an earlier version": lambda s, _: (
        s.data_dir / "ocsp" / "issuing-responder.key"
    ),
    "responder wrapping key": lambda s, _: s.data_dir / "secrets" / "responder-wrap.key",
}


@pytest.mark.parametrize("file_mode", [0o644, 0o604, 0o620], ids=oct)
@pytest.mark.parametrize("secret", sorted(SECRETS))
async def test_start_is_refused_on_a_secret_file_other_users_can_read_or_its_group_change(
    data_dir: Path, material: CaMaterial, secret: str, file_mode: int
) -> None:
    settings = make_settings(data_dir, material)
    path = SECRETS[secret](settings, material)
    if not path.exists():
        path.parent.mkdir(mode=0o700, exist_ok=True)
        path.write_bytes(b"a responder key left by an earlier start\n")
    set_mode(path, file_mode)
    with pytest.raises(ConfigurationError) as refused:
        await Service.open(settings, create=True)
    assert f"chmod 600 {path}" in str(refused.value)


async def test_a_group_may_read_the_keys_and_enter_the_data_directory(
    data_dir: Path, material: CaMaterial
) -> None:
    # root:est-ca 0640 keys and a 0750 directory are a deployment that keeps others out.
    settings = make_settings(data_dir, material)
    set_mode(data_dir, 0o750)
    for secret in SECRETS.values():
        path = secret(settings, material)
        if path.exists():
            set_mode(path, 0o640)
    service = await Service.open(settings, create=True)
    await service.close()


async def test_a_service_opened_with_one_listed_authority_signs_with_it(
    tmp_path: Path, ca_material: CaMaterial
) -> None:
    hierarchy = ca_material.hierarchy
    config = tmp_path / "cas.toml"
    config.write_text(
        "[[authorities]]\n"
        'name = "issuing"\n'
        f'certificate = "{hierarchy.issuing_cert}"\n'
        f'chain = "{hierarchy.issuing_chain}"\n'
        f'key = {{ kind = "file", path = "{hierarchy.issuing_key}", '
        f'passphrase_file = "{ca_material.passphrase}" }}\n'
        "default = true\n"
    )
    base = make_settings(tmp_path / "data", ca_material)
    overrides = {
        "data_dir": str(base.data_dir),
        "service": {"port": 0, "http_port": ca_material.http_port, "demo": False},
        "admin": {"port": 0},
        "tls": {"cert_file": str(ca_material.tls_cert), "key_file": str(ca_material.tls_key)},
    }
    settings = load_settings(config, {}, overrides)
    service = await Service.open(settings, create=True)
    try:
        assert service.ca is not None
        assert service.ca.certificate.public_bytes(Encoding.PEM) == (
            hierarchy.issuing_cert.read_bytes()
        )
        assert not (base.data_dir / "ca").exists()  # no demo hierarchy was generated
    finally:
        await service.close()


@pytest.mark.parametrize(
    ("ca_key", "curve", "digest", "oid"),
    [
        ("p256", ec.SECP256R1, hashes.SHA256, SignatureAlgorithmOID.ECDSA_WITH_SHA256),
        ("p384", ec.SECP384R1, hashes.SHA384, SignatureAlgorithmOID.ECDSA_WITH_SHA384),
    ],
)
async def test_init_with_an_ec_ca_key_issues_over_est_with_ecdsa(
    tmp_path: Path,
    ca_key: str,
    curve: type[ec.EllipticCurve],
    digest: type[hashes.HashAlgorithm],
    oid: x509.ObjectIdentifier,
) -> None:
    initialised = run_est_ca("init", "--ca-key", ca_key, cwd=tmp_path)
    assert initialised.returncode == 0, initialised.stderr
    issuing = x509.load_pem_x509_certificate((tmp_path / "est-ca-data/ca/issuing.pem").read_bytes())
    issuing_key = issuing.public_key()
    assert isinstance(issuing_key, ec.EllipticCurvePublicKey)
    assert isinstance(issuing_key.curve, curve)
    async with serving(tmp_path) as served:
        recipe = await served.read_recipe()
        commands = commands_in(recipe, "Enroll from another terminal", "Renew with")
        enrolled = await run("bash", "-euo", "pipefail", "-c", commands, cwd=tmp_path)
        assert enrolled.returncode == 0, enrolled.stderr.decode()
    certificate = x509.load_pem_x509_certificate((tmp_path / "demo.pem").read_bytes())
    assert certificate.signature_algorithm_oid == oid
    issuing_key.verify(certificate.signature, certificate.tbs_certificate_bytes, ec.ECDSA(digest()))


def test_init_with_another_ca_key_than_the_existing_ca_s_is_refused(tmp_path: Path) -> None:
    assert run_est_ca("init", cwd=tmp_path).returncode == 0
    again = run_est_ca("init", "--ca-key", "p256", cwd=tmp_path)
    assert again.returncode == 2
    assert "exists already, with a rsa3072 key" in again.stderr
    issuing = x509.load_pem_x509_certificate((tmp_path / "est-ca-data/ca/issuing.pem").read_bytes())
    assert isinstance(issuing.public_key(), rsa.RSAPublicKey)
