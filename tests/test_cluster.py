"""Several `est-ca serve` processes on one PostgreSQL database, as an operator runs a cluster.

Three real instances (subprocesses, each with its own ports and data directory, sharing the CA
files, the HMAC and audit keys and the database; `database.auto_migrate` off, the schema made
once by `est-ca init`) are driven with curl and `openssl`-compatible OCSP requests:
an order is consumed once whichever instances race for it, serials stay unique, a revocation
through one instance (or the CLI) is what every other instance's OCSP and CRL say within 2 s,
cRLNumbers only grow, and the cluster carries on when one instance is killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from est_ca.admin.access import Scope
from est_ca.ca.certificates import Serial
from est_ca.ca.publication import OCSP_PATH, crl_path
from est_ca.client import EstClient
from est_ca.config import load_settings
from est_ca.service import Service
from tests.conftest import CaMaterial, free_port
from tests.helpers import (
    ADMIN,
    PKCS10,
    csr_base64,
    curl,
    make_csr,
    new_order,
    new_system,
    organisation,
    run,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

INSTANCES = 3
# The bound the issue sets on how long another instance may still say "good".
PROPAGATION_BOUND = 2.0
START_TIMEOUT = 60.0


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

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def admin_url(self) -> str:
        return f"https://127.0.0.1:{self.admin_port}/admin/v1"

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "est_ca",
                "--config",
                str(self.config),
                "serve",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
                env=_environment(),
            )

    async def wait_ready(self, session: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.returncode is not None:
                raise AssertionError(f"{self.name} exited:\n{self.log.read_text()[-4000:]}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(self.http_url + crl_path("issuing")) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{self.name} did not start:\n{self.log.read_text()[-4000:]}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)

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
        found = []
        for line in self.log.read_text().splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and record.get("event") == event:
                    found.append(record)
        return found


def _environment() -> dict[str, str]:
    # The configuration files say everything: nothing of the caller's EST_CA_* leaks in.
    return {k: v for k, v in os.environ.items() if not k.startswith("EST_CA_")}


@dataclasses.dataclass
class Cluster:
    instances: list[Instance]
    service: Service  # the test's own administrative view of the shared database (no CA key)
    session: aiohttp.ClientSession
    token: str
    ca: CaMaterial
    directory: Path

    @property
    def issuer(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.ca.hierarchy.issuing_cert.read_bytes())


def _config(
    directory: Path,
    instance: str,
    ca: CaMaterial,
    database_url: str,
    profiles: Path,
    ports: tuple[int, int, int],
) -> str:
    shared = directory / "shared"
    https_port, http_port, admin_port = ports
    hierarchy = ca.hierarchy
    return f"""
data_dir = "{directory / instance}"

[service]
host = "127.0.0.1"
port = {https_port}
http_port = {http_port}
demo = false

[admin]
port = {admin_port}

[publication]
base_url = "http://127.0.0.1:{ca.http_port}"

[tls]
cert_file = "{ca.tls_cert}"
key_file = "{ca.tls_key}"

[ca]
cert_file = "{hierarchy.issuing_cert}"
chain_file = "{hierarchy.issuing_chain}"
key_file = "{hierarchy.issuing_key}"
key_passphrase_file = "{ca.passphrase}"
root_key_file = "{hierarchy.root_key}"
generate_demo = false

[database]
url = "{database_url}"
auto_migrate = false

[secrets]
hmac_key_file = "{shared / "hmac.key"}"
audit_key_file = "{shared / "audit.key"}"

[profiles]
extra_dirs = ["{profiles}"]

[limits]
max_concurrent_enrollments = 1000
failures_per_source = 10000
max_connections_per_source = 1000

[logging]
format = "json"
"""


@pytest.fixture
async def cluster(
    tmp_path: Path, ca_material: CaMaterial, postgres_url: str, ec_profiles: Path
) -> AsyncIterator[Cluster]:
    (tmp_path / "shared").mkdir(mode=0o700)
    instances = []
    for index in range(INSTANCES):
        name = f"instance-{'abc'[index]}"
        config = tmp_path / f"{name}.toml"
        ports = (free_port(), free_port(), free_port())
        config.write_text(_config(tmp_path, name, ca_material, postgres_url, ec_profiles, ports))
        instances.append(Instance(name, config, tmp_path / f"{name}.log", *ports))
    # Once, before any instance: the keys every instance shares, the schema and the audit
    # anchor (an instance with auto_migrate off refuses an empty database).
    made = await run(
        sys.executable, "-m", "est_ca", "--config", instances[0].config, "init", cwd=tmp_path
    )
    assert made.returncode == 0, made.stderr.decode()
    upgraded = await run(
        sys.executable, "-m", "est_ca", "--config", instances[0].config, "db", "upgrade"
    )
    assert upgraded.returncode == 0, upgraded.stderr.decode()
    service = await Service.open(
        load_settings(instances[0].config, {}, {}), with_ca=False, create=False
    )
    await organisation(service, "34051178", "Digitaliseringsstyrelsen")  # new_system's
    _, token = await service.tokens.create(
        ADMIN, name="cluster-test", scopes=frozenset({Scope.ADMIN}), cvr=None, valid_days=1
    )
    session = aiohttp.ClientSession()
    try:
        await asyncio.gather(*(instance.start() for instance in instances))
        await asyncio.gather(*(instance.wait_ready(session) for instance in instances))
        yield Cluster(instances, service, session, token, ca_material, tmp_path)
    finally:
        await asyncio.gather(*(instance.stop() for instance in instances))
        await session.close()
        await service.close()


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


async def _enroll_with_curl(
    cluster: Cluster,
    instance: Instance,
    reference: str,
    code: str,
    key: ec.EllipticCurvePrivateKey,
) -> int:
    request = cluster.directory / f"csr-{os.urandom(6).hex()}.b64"
    request.write_bytes(csr_base64(make_csr(key)))
    result = await curl(
        f"{instance.https_url}/.well-known/est/simpleenroll",
        *PKCS10,
        "-u",
        f"{reference}:{code}",
        "--data-binary",
        f"@{request}",
        trust=cluster.ca.tls_cert,
    )
    return result.status


async def _enroll(cluster: Cluster, instance: Instance) -> x509.Certificate:
    system = await new_system(cluster.service, f"s{os.urandom(4).hex()}.service")
    placed = await new_order(cluster.service, system)
    reply = await EstClient(instance.https_url, trust=cluster.ca.tls_cert).simpleenroll(
        make_csr(_key()), (placed.order.reference, placed.one_time_code)
    )
    assert reply.status == 200, reply
    return reply.certificates()[0]


async def _ocsp_status(
    cluster: Cluster, instance: Instance, certificate: x509.Certificate
) -> ocsp.OCSPCertStatus:
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(certificate, cluster.issuer, hashes.SHA1())  # noqa: S303 (CertID)
        .build()
        .public_bytes(Encoding.DER)
    )
    async with cluster.session.post(
        instance.http_url + OCSP_PATH,
        data=request,
        headers={"Content-Type": "application/ocsp-request"},
    ) as response:
        assert response.status == 200
        answer = ocsp.load_der_ocsp_response(await response.read())
    assert answer.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    return answer.certificate_status


async def _crl(cluster: Cluster, instance: Instance) -> x509.CertificateRevocationList:
    async with cluster.session.get(instance.http_url + crl_path("issuing")) as response:
        assert response.status == 200
        return x509.load_der_x509_crl(await response.read())


async def _seconds_until(check: Callable[[], Awaitable[bool]], limit: float = 10.0) -> float:
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > limit:
            raise AssertionError(f"not within {limit} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def _revoke_through_admin(cluster: Cluster, instance: Instance, serial: int) -> None:
    result = await curl(
        f"{instance.admin_url}/certificates/{Serial(serial).hex}/revoke",
        "-H",
        f"Authorization: Bearer {cluster.token}",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        "{}",
        trust=cluster.ca.tls_cert,
    )
    assert result.status == 200, result.text


async def _revoked_everywhere_within(
    cluster: Cluster, instance: Instance, certificate: x509.Certificate
) -> tuple[float, float]:
    async def ocsp_says_revoked() -> bool:
        status = await _ocsp_status(cluster, instance, certificate)
        return status is ocsp.OCSPCertStatus.REVOKED

    async def crl_lists_it() -> bool:
        crl = await _crl(cluster, instance)
        return crl.get_revoked_certificate_by_serial_number(certificate.serial_number) is not None

    return await asyncio.gather(_seconds_until(ocsp_says_revoked), _seconds_until(crl_lists_it))


async def test_an_order_raced_through_every_instance_is_consumed_exactly_once(
    cluster: Cluster,
) -> None:
    placed = await new_order(cluster.service, await new_system(cluster.service))
    reference, code = placed.order.reference, placed.one_time_code
    statuses = await asyncio.gather(
        *(
            _enroll_with_curl(cluster, instance, reference, code, _key())
            for instance in cluster.instances
            for _ in range(4)
        )
    )
    assert sorted(statuses).count(200) == 1, statuses
    assert set(statuses) <= {200, 403, 409}, statuses
    issued = await cluster.service.registry.list_certificates(identity_id=placed.order.identity_id)
    assert len(issued) == 1


async def test_serials_stay_unique_over_enrollments_spread_over_the_instances(
    cluster: Cluster,
) -> None:
    certificates = await asyncio.gather(
        *(_enroll(cluster, cluster.instances[n % INSTANCES]) for n in range(30))
    )
    assert len({certificate.serial_number for certificate in certificates}) == 30


async def test_a_revocation_through_one_instance_shows_on_the_others_within_two_seconds(
    cluster: Cluster,
) -> None:
    a, b, c = cluster.instances
    certificate = await _enroll(cluster, c)
    assert await _ocsp_status(cluster, b, certificate) is ocsp.OCSPCertStatus.GOOD
    await _revoke_through_admin(cluster, a, certificate.serial_number)
    ocsp_delay, crl_delay = await _revoked_everywhere_within(cluster, b, certificate)
    assert ocsp_delay < PROPAGATION_BOUND
    assert crl_delay < PROPAGATION_BOUND


async def test_a_revocation_by_the_cli_shows_on_every_instance_within_two_seconds(
    cluster: Cluster,
) -> None:
    certificate = await _enroll(cluster, cluster.instances[0])
    revoked = await run(
        sys.executable,
        "-m",
        "est_ca",
        "--config",
        cluster.instances[2].config,
        "certificate",
        "revoke",
        Serial(certificate.serial_number).hex,
    )
    assert revoked.returncode == 0, revoked.stderr.decode()
    delays = await asyncio.gather(
        *(_revoked_everywhere_within(cluster, i, certificate) for i in cluster.instances)
    )
    assert max(max(pair) for pair in delays) < PROPAGATION_BOUND, delays


async def test_crl_numbers_only_grow_and_every_newer_crl_lists_what_an_older_one_did(
    cluster: Cluster,
) -> None:
    certificates = await asyncio.gather(*(_enroll(cluster, cluster.instances[0]) for _ in range(8)))
    seen: dict[int, frozenset[int]] = {}

    async def watch(instance: Instance, stop: asyncio.Event) -> None:
        while not stop.is_set():
            crl = await _crl(cluster, instance)
            number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
            listed = frozenset(entry.serial_number for entry in crl)
            assert seen.setdefault(number, listed) == listed, "two CRLs with one number"
            await asyncio.sleep(0.01)

    stop = asyncio.Event()
    watchers = [asyncio.create_task(watch(i, stop)) for i in cluster.instances]
    await asyncio.gather(
        *(
            _revoke_through_admin(cluster, cluster.instances[n % INSTANCES], c.serial_number)
            for n, c in enumerate(certificates)
        )
    )
    await asyncio.gather(
        *(_revoked_everywhere_within(cluster, i, certificates[-1]) for i in cluster.instances)
    )
    await asyncio.sleep(PROPAGATION_BOUND)
    stop.set()
    await asyncio.gather(*watchers)
    published = sorted(
        int(str(event["number"]))
        for instance in cluster.instances
        for event in instance.log_events("CRL published")
        if event.get("ca") == "issuing"
    )
    assert len(published) == len(set(published)), f"a cRLNumber signed twice: {published}"
    numbers = sorted(seen)
    for older, newer in itertools.pairwise(numbers):
        assert seen[older] <= seen[newer], f"CRL {newer} lacks what {older} listed"
    assert {c.serial_number for c in certificates} <= seen[numbers[-1]]


async def test_the_others_carry_on_when_one_instance_is_killed(cluster: Cluster) -> None:
    a, b, c = cluster.instances
    certificate = await _enroll(cluster, a)
    c.kill()
    assert c.process is not None
    await c.process.wait()
    await _enroll(cluster, b)
    await _revoke_through_admin(cluster, a, certificate.serial_number)
    ocsp_delay, crl_delay = await _revoked_everywhere_within(cluster, b, certificate)
    assert max(ocsp_delay, crl_delay) < PROPAGATION_BOUND
