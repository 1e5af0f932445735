"""Fixtures: one demo CA per test session, a fresh database and service per test, real listeners."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import itertools
import os
import random
import secrets
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import hypothesis
import pytest

from est_ca.ca.hierarchy import HierarchyFiles, generate_demo_hierarchy
from est_ca.ca.publication import Publication
from est_ca.clock import SettableClock
from est_ca.config import Settings, load_settings, shipped_config_dir
from est_ca.private_files import write_private
from est_ca.server import Server
from est_ca.service import Service
from est_ca.tls_files import generate_self_signed
from tests.helpers import REQUIRE_SERVICES, KeyPool, organisation

# Property-based and fuzz tests run a bounded number of cases in CI; EST_CA_FUZZ=long runs
# thousands (EST_CA_FUZZ_EXAMPLES sets any number).
_EXAMPLES = int(
    os.environ.get(
        "EST_CA_FUZZ_EXAMPLES", "3000" if os.environ.get("EST_CA_FUZZ") == "long" else "150"
    )
)
hypothesis.settings.register_profile(
    "est-ca",
    max_examples=_EXAMPLES,
    deadline=None,
    suppress_health_check=[
        hypothesis.HealthCheck.function_scoped_fixture,
        hypothesis.HealthCheck.too_slow,
        hypothesis.HealthCheck.data_too_large,
    ],
    derandomize=os.environ.get("EST_CA_FUZZ") != "long",
    print_blob=True,
)
hypothesis.settings.load_profile("est-ca")

POSTGRES_ADMIN_URL = os.environ.get(
    "EST_CA_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


def _port_block() -> range:
    """Ports below the kernel's ephemeral range (32768 and up here), which port-0 listeners and
    outgoing connections draw from: a port chosen there could be taken by another test's
    connection between our probe and our bind (seen with two xdist workers). Each xdist
    worker has a block of its own."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    size = 20000 // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    start = 12000 + size * worker
    return range(start, start + size)


_next_ports = itertools.cycle(random.Random().sample(_port_block(), len(_port_block())))


def free_port() -> int:
    """A port nothing listens on now, from this worker's block (in a random order, so two test
    runs at once on this machine rarely meet)."""
    for _ in range(len(_port_block())):
        port = next(_next_ports)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_port_block()}")


@dataclasses.dataclass(frozen=True)
class CaMaterial:
    hierarchy: HierarchyFiles
    passphrase: Path
    tls_cert: Path
    tls_key: Path
    # The plain-HTTP port the session's certificates name in their CRL and OCSP URLs; every
    # test server listens on it, one after the other.
    http_port: int

    @property
    def publication(self) -> Publication:
        base = f"http://127.0.0.1:{self.http_port}"
        return Publication(base_url=base, name_registration_authority=base)


@pytest.fixture(scope="session")
def ca_material(tmp_path_factory: pytest.TempPathFactory) -> CaMaterial:
    directory = tmp_path_factory.mktemp("ca")
    passphrase = directory / "passphrase"
    write_private(passphrase, b"test passphrase\n")  # 0600: a start refuses anything looser
    http_port = free_port()
    base = f"http://127.0.0.1:{http_port}"
    hierarchy = generate_demo_hierarchy(
        HierarchyFiles.in_directory(directory / "demo"),
        b"test passphrase",
        dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=1),
        Publication(base_url=base, name_registration_authority=base),
    )
    tls_cert, tls_key = directory / "tls.pem", directory / "tls.key"
    generate_self_signed(tls_cert, tls_key, [])
    return CaMaterial(hierarchy, passphrase, tls_cert, tls_key, http_port)


@pytest.fixture(scope="session")
def second_hierarchy(tmp_path_factory: pytest.TempPathFactory) -> HierarchyFiles:
    """Another root and issuing CA (same passphrase as `ca_material`'s): a second hierarchy
    served beside the first."""
    base = "http://127.0.0.1:1"
    return generate_demo_hierarchy(
        HierarchyFiles.in_directory(tmp_path_factory.mktemp("second")),
        b"test passphrase",
        dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=1),
        Publication(base_url=base, name_registration_authority=base),
    )


def authorities_overrides(tmp_path: Path, ca_material: CaMaterial) -> dict[str, Any]:
    """Settings for a service whose CAs come from an `[[authorities]]` file."""
    return {
        "data_dir": str(tmp_path / "data"),
        "service": {
            "host": "127.0.0.1",
            "port": 0,
            "http_port": ca_material.http_port,
            "demo": False,
        },
        "admin": {"port": 0},
        "tls": {"cert_file": str(ca_material.tls_cert), "key_file": str(ca_material.tls_key)},
    }


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPool:
    return KeyPool(tmp_path_factory.mktemp("keys"))


def make_settings(
    data_dir: Path, ca: CaMaterial, *, database_url: str = "", **sections: dict[str, Any]
) -> Settings:
    overrides: dict[str, Any] = {
        "data_dir": str(data_dir),
        "service": {"host": "127.0.0.1", "port": 0, "http_port": ca.http_port, "demo": False},
        "admin": {"port": 0},
        "database": {"url": database_url},
        "tls": {"cert_file": str(ca.tls_cert), "key_file": str(ca.tls_key)},
        "ca": {
            "cert_file": str(ca.hierarchy.issuing_cert),
            "chain_file": str(ca.hierarchy.issuing_chain),
            "key_file": str(ca.hierarchy.issuing_key),
            "key_passphrase_file": str(ca.passphrase),
            "root_key_file": str(ca.hierarchy.root_key),
            "generate_demo": False,
        },
    }
    for section, values in sections.items():
        overrides.setdefault(section, {}).update(values)
    return load_settings(None, {}, overrides)


@pytest.fixture(scope="session")
def ec_profiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The system profile allowing P-256 too: many distinct keys without many RSA key pairs."""
    directory = tmp_path_factory.mktemp("profiles")
    text = (shipped_config_dir() / "profiles" / "system.toml").read_text()
    (directory / "system.toml").write_text(text.replace("ec_curves = []", 'ec_curves = ["P-256"]'))
    return directory


@pytest.fixture
def settings(tmp_path: Path, ca_material: CaMaterial) -> Settings:
    return make_settings(tmp_path, ca_material)


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock()


# The organisations the tests' identities belong to (CVR, name); email domain example.dk.
TEST_ORGANISATIONS = (
    ("99999999", "ÆØÅ ApS"),
    ("96908409", "Testorganisation nr. 96908409"),
    ("34051178", "Digitaliseringsstyrelsen"),
)


async def with_test_organisations(service: Service) -> Service:
    for cvr, name in TEST_ORGANISATIONS:
        await organisation(service, cvr, name)
    return service


@pytest.fixture
async def service(settings: Settings, clock: SettableClock) -> AsyncIterator[Service]:
    opened = await with_test_organisations(await Service.open(settings, clock=clock, create=True))
    yield opened
    await opened.close()


@pytest.fixture
async def server(service: Service) -> AsyncIterator[Server]:
    running = Server(service)
    await running.start("127.0.0.1", 0, service.settings.service.http_port)
    yield running
    await running.stop()


OpenService = Callable[..., Awaitable[Service]]


@pytest.fixture
async def open_service(
    tmp_path: Path, ca_material: CaMaterial, clock: SettableClock
) -> AsyncIterator[OpenService]:
    """Open services with custom settings (several may share one database)."""
    opened: list[Service] = []

    async def open_(*, database_url: str = "", **sections: dict[str, Any]) -> Service:
        data_dir = tmp_path / f"instance-{len(opened)}"
        configured = make_settings(data_dir, ca_material, database_url=database_url, **sections)
        instance = await Service.open(configured, clock=clock, create=True)
        opened.append(instance)
        return await with_test_organisations(instance)

    yield open_
    for instance in opened:
        await instance.close()


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for this test, dropped afterwards."""
    async with fresh_postgres_database("est_ca_test") as url:
        yield url


@contextlib.asynccontextmanager
async def fresh_postgres_database(prefix: str) -> AsyncIterator[str]:
    """A new PostgreSQL database named `prefix_<random>`, dropped on leaving; a PostgreSQL out
    of reach skips the test (fails it when services are required, as in CI)."""
    try:
        admin = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        message = f"PostgreSQL at {POSTGRES_ADMIN_URL} is not reachable ({exc})"
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)
    name = f"{prefix}_{secrets.token_hex(6)}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each backend in turn: the embedded SQLite file and a real PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    url = request.getfixturevalue("postgres_url")
    assert isinstance(url, str)
    return url


# The token PIN of the SoftHSM2 fixture: distinctive, so a test can search every log line,
# audit event and error body for it.
TOKEN_PIN = "pin-5c1e-93af"
_SOFTHSM_MODULES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
)


@dataclasses.dataclass(frozen=True)
class SoftHsm:
    """A real SoftHSM2 token for the test session: its configuration, token directory, module,
    label and a 0600 PIN file. `SOFTHSM2_CONF` points at it for this process and its children."""

    conf: Path
    tokens: Path
    module: str
    pin_file: Path
    token: str = "est-ca"

    def key_table(self, label: str) -> str:
        """The `key = { kind = "pkcs11", ... }` line of an `[[authorities]]` entry."""
        return (
            f'key = {{ kind = "pkcs11", module = "{self.module}", token = "{self.token}", '
            f'label = "{label}", pin_file = "{self.pin_file}" }}\n'
        )


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> SoftHsm:
    util = shutil.which("softhsm2-util")
    module = next((path for path in _SOFTHSM_MODULES if Path(path).is_file()), None)
    if util is None or module is None:
        message = "SoftHSM2 is not installed (Debian: softhsm2); these tests use a real token"
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)
    directory = tmp_path_factory.mktemp("softhsm")
    tokens = directory / "tokens"
    tokens.mkdir()
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        [util, "--init-token", "--free", "--label", "est-ca", "--pin", TOKEN_PIN,
         "--so-pin", "so-pin-5678"],
        check=True, capture_output=True,
    )  # fmt: skip
    pin_file = directory / "pin"
    write_private(pin_file, f"{TOKEN_PIN}\n".encode())
    return SoftHsm(conf=conf, tokens=tokens, module=module, pin_file=pin_file)
