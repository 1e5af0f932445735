"""Several `est-ca serve` processes on one PostgreSQL database: what tests/test_cluster.py and
the cluster benchmarks share.

Each instance is the real command in a process of its own, with its own ports and data
directory, sharing what a cluster shares: the CA files, the HMAC and audit keys and the
database (`database.auto_migrate` off; `est-ca init` makes the shared keys, the schema and the
audit anchor once, before any instance starts).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from est_ca.ca.certificates import Serial
from est_ca.ca.hierarchy import (
    HierarchyFiles,
    generate_demo_hierarchy,
)
from est_ca.ca.publication import OCSP_PATH, Publication, crl_path
from est_ca.config import DEMO_KEY_TYPES, shipped_config_dir
from est_ca.private_files import write_private
from est_ca.tls_files import generate_self_signed

START_TIMEOUT = 90.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclasses.dataclass(frozen=True)
class SharedFiles:
    """What every instance of the cluster reads: the CA and the listener's TLS files."""

    hierarchy: HierarchyFiles
    passphrase: Path
    tls_cert: Path
    tls_key: Path
    # The base URL certificates name (publication.base_url), the same for every instance.
    public_base_url: str
    # Extra profile directories (e.g. one allowing P-256 keys).
    profile_dirs: tuple[Path, ...] = ()


@dataclasses.dataclass
class Instance:
    """One `est-ca serve` process of the cluster."""

    name: str
    config: Path
    log: Path
    https_port: int
    http_port: int
    admin_port: int
    process: asyncio.subprocess.Process | None = None
    # `est-ca serve --workers`: worker processes of this instance.
    workers: int = 1

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def admin_url(self) -> str:
        return f"https://127.0.0.1:{self.admin_port}/admin/v1"

    async def start(self, environment: dict[str, str] | None = None) -> None:
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *est_ca_command(self.config),
                "serve",
                *(("--workers", str(self.workers)) if self.workers > 1 else ()),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
                env={**clean_environment(), **(environment or {})},
            )

    async def wait_ready(self, session: aiohttp.ClientSession) -> None:
        """Until its CRL is served (the last thing a start does before serving)."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.returncode is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log.read_text()[-4000:]}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(self.http_url + crl_path("issuing")) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start:\n{self.log.read_text()[-4000:]}")

    async def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup, as a crash or the OOM killer ends it."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 30)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()

    def log_events(self, event: str) -> list[dict[str, object]]:
        """Its JSON log lines whose event is `event`."""
        found = []
        for line in self.log.read_text().splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and record.get("event") == event:
                    found.append(record)
        return found


# The issuing CA keys a bench can run with: OCES3's RSA-3072, and the two NIST curves.
CA_KEYS = DEMO_KEY_TYPES
PASSPHRASE = b"bench passphrase"


def shared_files(directory: Path, ca_key: str = "rsa3072") -> SharedFiles:
    """A CA hierarchy and a listener certificate, as conftest makes them: the demo hierarchy
    `est-ca init --ca-key` makes (an RSA-4096 root certifying an issuing CA with a `ca_key`
    key); for an EC CA the profiles must sign with ECDSA (`profiles_for`)."""
    passphrase = directory / "passphrase"
    write_private(passphrase, PASSPHRASE + b"\n")
    base = f"http://127.0.0.1:{free_port()}"
    publication = Publication(base_url=base, name_registration_authority=base)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=1)
    files = HierarchyFiles.in_directory(directory / "demo")
    hierarchy = generate_demo_hierarchy(files, PASSPHRASE, now, publication, ca_key)
    tls_cert, tls_key = directory / "tls.pem", directory / "tls.key"
    generate_self_signed(tls_cert, tls_key, [])
    return SharedFiles(hierarchy, passphrase, tls_cert, tls_key, base)


def profiles_for(directory: Path, ca_key: str = "rsa3072") -> Path:
    """The shipped profiles, each allowing P-256 subscriber keys too (many distinct keys made
    in microseconds), signing as a CA with `ca_key` can: ECDSA with the curve's hash for an EC
    CA (a start refuses a profile its CA cannot sign)."""
    directory.mkdir(parents=True, exist_ok=True)
    for shipped in sorted((shipped_config_dir() / "profiles").glob("*.toml")):
        text = shipped.read_text().replace("ec_curves = []", 'ec_curves = ["P-256"]')
        if ca_key != "rsa3072":
            start = text.index("[signature]")
            digest = "sha384" if ca_key == "p384" else "sha256"
            # salt_length is read (and ignored) whatever the algorithm.
            text = text[:start] + (
                f'[signature]\nalgorithm = "ecdsa"\nhash = "{digest}"\nsalt_length = 32\n'
            )
        (directory / shipped.name).write_text(text)
    return directory


def clean_environment() -> dict[str, str]:
    # The configuration files say everything: nothing of the caller's EST_CA_* leaks in.
    return {k: v for k, v in os.environ.items() if not k.startswith("EST_CA_")}


def est_ca_command(config: Path) -> list[str]:
    return [sys.executable, "-m", "est_ca", "--config", str(config)]


def instance_config(
    directory: Path,
    name: str,
    shared: SharedFiles,
    database_url: str,
    ports: tuple[int, int, int],
    *,
    listen: bool = True,
) -> str:
    """The TOML of one instance: its own ports and data directory, the shared rest."""
    keys = directory / "shared"
    https_port, http_port, admin_port = ports
    hierarchy = shared.hierarchy
    profile_dirs = ", ".join(f'"{d}"' for d in shared.profile_dirs)
    return f"""
data_dir = "{directory / name}"

[service]
host = "127.0.0.1"
port = {https_port}
http_port = {http_port}
demo = false

[admin]
port = {admin_port}

[publication]
base_url = "{shared.public_base_url}"

[tls]
cert_file = "{shared.tls_cert}"
key_file = "{shared.tls_key}"

[ca]
cert_file = "{hierarchy.issuing_cert}"
chain_file = "{hierarchy.issuing_chain}"
key_file = "{hierarchy.issuing_key}"
key_passphrase_file = "{shared.passphrase}"
root_key_file = "{hierarchy.root_key}"
generate_demo = false

[database]
url = "{database_url}"
auto_migrate = false

[secrets]
hmac_key_file = "{keys / "hmac.key"}"
audit_key_file = "{keys / "audit.key"}"
responder_wrap_key_file = "{keys / "responder-wrap.key"}"

[profiles]
extra_dirs = [{profile_dirs}]

[limits]
max_concurrent_enrollments = 1000
failures_per_source = 10000
max_connections_per_source = 1000

[revocation]
listen = {"true" if listen else "false"}

[logging]
format = "json"
"""


async def run_command(*args: str | Path) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *(str(a) for a in args),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=clean_environment(),
    )
    output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


@contextlib.asynccontextmanager
async def running_cluster(
    directory: Path,
    shared: SharedFiles,
    database_url: str,
    count: int,
    *,
    listen: bool = True,
    workers: int = 1,
) -> AsyncIterator[list[Instance]]:
    """`count` instances on `database_url` (an empty database: `est-ca init` makes the
    schema), started together and ready; stopped (SIGTERM) at the end."""
    (directory / "shared").mkdir(mode=0o700, parents=True, exist_ok=True)
    instances = []
    for index in range(count):
        name = f"instance-{chr(ord('a') + index)}"
        config = directory / f"{name}.toml"
        ports = (free_port(), free_port(), free_port())
        config.write_text(
            instance_config(directory, name, shared, database_url, ports, listen=listen)
        )
        instances.append(Instance(name, config, directory / f"{name}.log", *ports, workers=workers))
    # Once, before any instance: the shared keys, the schema and the audit anchor; then
    # `db upgrade`, what an operator runs before starting a new version (nothing to do here).
    for step in (("init",), ("db", "upgrade")):
        status, output = await run_command(*est_ca_command(instances[0].config), *step)
        if status != 0:
            raise RuntimeError(f"est-ca {' '.join(step)} failed:\n{output}")
    async with aiohttp.ClientSession() as session:
        try:
            await asyncio.gather(*(instance.start() for instance in instances))
            await asyncio.gather(*(instance.wait_ready(session) for instance in instances))
            yield instances
        finally:
            await asyncio.gather(*(instance.stop() for instance in instances))


def ocsp_request(certificate: x509.Certificate, issuer: x509.Certificate) -> bytes:
    return (
        ocsp.OCSPRequestBuilder()
        .add_certificate(certificate, issuer, hashes.SHA1())  # noqa: S303 - RFC 5019 CertID
        .build()
        .public_bytes(Encoding.DER)
    )


async def ocsp_status(
    session: aiohttp.ClientSession, instance: Instance, request: bytes
) -> ocsp.OCSPCertStatus:
    """What the instance's OCSP responder says (POST, as relying parties send it)."""
    async with session.post(
        instance.http_url + OCSP_PATH,
        data=request,
        headers={"Content-Type": "application/ocsp-request"},
    ) as response:
        response.raise_for_status()
        answer = ocsp.load_der_ocsp_response(await response.read())
    if answer.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise RuntimeError(f"OCSP answered {answer.response_status}")
    return answer.certificate_status


async def fetch_crl(
    session: aiohttp.ClientSession, instance: Instance, name: str = "issuing"
) -> x509.CertificateRevocationList:
    async with session.get(instance.http_url + crl_path(name)) as response:
        response.raise_for_status()
        return x509.load_der_x509_crl(await response.read())


def crl_number(crl: x509.CertificateRevocationList) -> int:
    return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)


async def revoke_through_admin(
    session: aiohttp.ClientSession,
    instance: Instance,
    token: str,
    serial: int,
    trust: Path,
) -> None:
    context = ssl.create_default_context(cafile=str(trust))
    async with session.post(
        f"{instance.admin_url}/certificates/{Serial(serial).hex}/revoke",
        json={},
        headers={"Authorization": f"Bearer {token}"},
        ssl=context,
    ) as response:
        if response.status != 200:
            raise RuntimeError(f"revocation refused: {response.status} {await response.text()}")
