"""Several `est-ca serve` processes on one PostgreSQL database, as an operator runs a cluster.

Three real instances (subprocesses, each with its own ports and data directory, sharing the CA
files, the HMAC and audit keys and the database; `database.auto_migrate` off, the schema made
once by `est-ca init`, see tools/cluster.py) are driven with curl and OCSP requests over HTTP:
an order is consumed once whichever instances race for it, serials stay unique, a revocation
through one instance (or the CLI) is what every other instance's OCSP and CRL say within 2 s,
cRLNumbers only grow, OCSP answers are pre-produced once for the cluster by one responder per
CA, issued and renewed once, and the cluster carries on when one instance is killed with
SIGKILL. One cluster serves the whole module (starting three takes seconds); kills come last.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from tools.cluster import (
    Instance,
    SharedFiles,
    crl_number,
    fetch_crl,
    ocsp_request,
    ocsp_status,
    revoke_through_admin,
    running_cluster,
)

from est_ca.admin.access import Scope
from est_ca.ca.authority import key_identifier
from est_ca.ca.certificates import Serial
from est_ca.ca.publication import OCSP_PATH
from est_ca.client import EstClient
from est_ca.config import load_settings
from est_ca.service import Service
from tests.conftest import CaMaterial, fresh_postgres_database
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

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

INSTANCES = 3
# The bound the issue sets on how long another instance may still say "good".
PROPAGATION_BOUND = 2.0
# A maintenance round (service.MAINTENANCE_INTERVAL) and a little: the lease moves within it.
TAKEOVER_BOUND = 8.0


@dataclasses.dataclass
class Cluster:
    instances: list[Instance]
    service: Service  # the test's own administrative view of the shared database (no CA key)
    session: aiohttp.ClientSession
    token: str
    ca: CaMaterial
    directory: Path
    database_url: str

    @property
    def issuer(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.ca.hierarchy.issuing_cert.read_bytes())

    @property
    def served_key_ids(self) -> list[str]:
        """The CAs the instances serve OCSP for: the issuing CA and the root."""
        root = x509.load_pem_x509_certificate(self.ca.hierarchy.root_cert.read_bytes())
        return [key_identifier(self.issuer).hex(), key_identifier(root).hex()]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster_database() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for this module's cluster, dropped afterwards."""
    async with fresh_postgres_database("est_ca_cluster") as url:
        yield url


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    ca_material: CaMaterial,
    cluster_database: str,
    ec_profiles: Path,
) -> AsyncIterator[Cluster]:
    directory = tmp_path_factory.mktemp("cluster")
    shared = SharedFiles(
        hierarchy=ca_material.hierarchy,
        passphrase=ca_material.passphrase,
        tls_cert=ca_material.tls_cert,
        tls_key=ca_material.tls_key,
        public_base_url=f"http://127.0.0.1:{ca_material.http_port}",
        profile_dirs=(ec_profiles,),
    )
    async with running_cluster(directory, shared, cluster_database, INSTANCES) as instances:
        service = await Service.open(
            load_settings(instances[0].config, {}, {}), with_ca=False, create=False
        )
        await organisation(service, "34051178", "Digitaliseringsstyrelsen")  # new_system's
        _, token = await service.tokens.create(
            ADMIN, name="cluster-test", scopes=frozenset({Scope.ADMIN}), cvr=None, valid_days=1
        )
        try:
            async with aiohttp.ClientSession() as session:
                yield Cluster(
                    instances, service, session, token, ca_material, directory, cluster_database
                )
        finally:
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
    return await ocsp_status(cluster.session, instance, ocsp_request(certificate, cluster.issuer))


async def _crl(cluster: Cluster, instance: Instance) -> x509.CertificateRevocationList:
    return await fetch_crl(cluster.session, instance)


async def _seconds_until(check: Callable[[], Awaitable[bool]], limit: float = 10.0) -> float:
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > limit:
            raise AssertionError(f"not within {limit} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def _revoke_through_admin(cluster: Cluster, instance: Instance, serial: int) -> None:
    await revoke_through_admin(
        cluster.session, instance, cluster.token, serial, cluster.ca.tls_cert
    )


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
            number = crl_number(crl)
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


# -- OCSP for the whole cluster -------------------------------------------------------------

# A publishing round everywhere (revocation.poll_seconds, 2 s) and a little.
ROUND = 3.0


async def _ocsp_answer(cluster: Cluster, instance: Instance, request: bytes) -> bytes:
    async with cluster.session.post(
        instance.http_url + OCSP_PATH,
        data=request,
        headers={"Content-Type": "application/ocsp-request"},
    ) as response:
        response.raise_for_status()
        return await response.read()


def _with_nonce(certificate: x509.Certificate, issuer: x509.Certificate) -> bytes:
    """A request answered fresh (never a stored response): it shows the responder in use."""
    return (
        ocsp.OCSPRequestBuilder()
        .add_certificate(certificate, issuer, hashes.SHA256())
        .add_extension(x509.OCSPNonce(os.urandom(16)), critical=False)
        .build()
        .public_bytes(serialization.Encoding.DER)
    )


def _responder(der: bytes) -> x509.Certificate:
    [responder] = ocsp.load_der_ocsp_response(der).certificates
    return responder


async def _responder_rows(cluster: Cluster, key_id: str) -> int:
    async with cluster.service.store.read() as tx:
        return await tx.count_ocsp_responders(key_id)


async def _newest_responder(cluster: Cluster) -> int:
    async with cluster.service.store.read() as tx:
        recorded = await tx.newest_ocsp_responder(cluster.served_key_ids[0], on_token=False)
    assert recorded is not None
    return recorded.serial.value


async def _make_responder_due(cluster: Cluster) -> None:
    """The issuing CA's responders end within responder_renew_days, as far as the database
    says (what every instance decides renewal by)."""
    connection = await asyncpg.connect(
        cluster.database_url.replace("postgresql+asyncpg", "postgresql")
    )
    try:
        await connection.execute(
            "UPDATE ocsp_responders SET not_after = now() + interval '1 day' "
            "WHERE issuer_key_id = $1",
            cluster.served_key_ids[0],
        )
    finally:
        await connection.close()


def _alive(cluster: Cluster) -> list[Instance]:
    return [i for i in cluster.instances if i.process is not None and i.process.returncode is None]


async def _renewed_once_and_adopted_everywhere(cluster: Cluster) -> int:
    """Make the issuing CA's responder due; exactly one new responder is recorded, and every
    instance alive signs with it. Its serial."""
    before = await _responder_rows(cluster, cluster.served_key_ids[0])
    await _make_responder_due(cluster)
    started = time.monotonic()
    while await _responder_rows(cluster, cluster.served_key_ids[0]) == before:
        assert time.monotonic() - started < 3 * ROUND, "no instance renewed the responder"
        await asyncio.sleep(0.1)
    renewed = await _newest_responder(cluster)
    certificate = await _enroll(cluster, _alive(cluster)[0])
    for instance in _alive(cluster):

        async def adopted(instance: Instance = instance) -> bool:
            request = _with_nonce(certificate, cluster.issuer)
            answer = await _ocsp_answer(cluster, instance, request)
            return _responder(answer).serial_number == renewed

        await _seconds_until(adopted, limit=2 * ROUND)
    await asyncio.sleep(ROUND)  # another round everywhere: nobody issued a second one
    assert await _responder_rows(cluster, cluster.served_key_ids[0]) == before + 1
    return renewed


async def _issued_by(cluster: Cluster, serial: int) -> list[Instance]:
    return [
        instance
        for instance in cluster.instances
        if any(
            event.get("serial") == Serial(serial).hex
            for event in instance.log_events("OCSP responder certificate issued")
        )
    ]


async def test_one_ocsp_request_gets_byte_identical_answers_from_every_instance(
    cluster: Cluster,
) -> None:
    """Pre-produced once for the cluster, by the one responder of the CA that every instance
    adopted at start (three started at once: one issued it)."""
    certificate = await _enroll(cluster, cluster.instances[1])
    request = ocsp_request(certificate, cluster.issuer)  # no nonce: RFC 5019's pre-produced
    answers = [await _ocsp_answer(cluster, i, request) for i in cluster.instances]
    assert len(set(answers)) == 1
    response = ocsp.load_der_ocsp_response(answers[0])
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
    fresh = [
        _responder(await _ocsp_answer(cluster, i, _with_nonce(certificate, cluster.issuer)))
        for i in cluster.instances
    ]
    assert {r.serial_number for r in fresh} == {_responder(answers[0]).serial_number}
    for key_id in cluster.served_key_ids:
        assert await _responder_rows(cluster, key_id) == 1, key_id


async def test_after_a_revocation_no_instance_serves_the_stored_good_answer(
    cluster: Cluster,
) -> None:
    a, b, c = cluster.instances
    certificate = await _enroll(cluster, a)
    request = ocsp_request(certificate, cluster.issuer)
    for instance in cluster.instances:  # stored for the cluster and in every memory
        status = ocsp.load_der_ocsp_response(await _ocsp_answer(cluster, instance, request))
        assert status.certificate_status is ocsp.OCSPCertStatus.GOOD
    await _revoke_through_admin(cluster, b, certificate.serial_number)
    async with cluster.service.store.read() as tx:
        stored = await tx.ocsp_response(
            cluster.served_key_ids[0], Serial(certificate.serial_number), "sha1"
        )
    assert stored is None or not stored.status.startswith("good")
    delays = await asyncio.gather(
        *(_revoked_everywhere_within(cluster, i, certificate) for i in (a, c))
    )
    assert max(max(pair) for pair in delays) < PROPAGATION_BOUND, delays
    await asyncio.sleep(ROUND)  # and it stays so: nothing brings "good" back
    for instance in cluster.instances:
        assert await _ocsp_status(cluster, instance, certificate) is ocsp.OCSPCertStatus.REVOKED


async def test_a_responder_due_for_renewal_is_renewed_once_and_every_instance_adopts_it(
    cluster: Cluster,
) -> None:
    renewed = await _renewed_once_and_adopted_everywhere(cluster)
    assert len(await _issued_by(cluster, renewed)) == 1


async def test_the_cluster_s_background_work_runs_in_one_instance_at_a_time(
    cluster: Cluster,
) -> None:
    await _lease_holder(cluster)
    await asyncio.sleep(6)  # another maintenance round everywhere: nobody else took it
    holders = [i for i in cluster.instances if i.log_events("lease taken")]
    assert len(holders) == 1, [i.name for i in holders]


async def test_when_an_instance_is_killed_the_others_serve_and_one_takes_over_its_work(
    cluster: Cluster,
) -> None:
    holder = await _lease_holder(cluster)
    survivors = [i for i in cluster.instances if i is not holder]
    certificate = await _enroll(cluster, holder)
    await holder.kill()
    killed_at = time.monotonic()
    await _enroll(cluster, survivors[0])
    await _revoke_through_admin(cluster, survivors[0], certificate.serial_number)
    ocsp_delay, crl_delay = await _revoked_everywhere_within(cluster, survivors[1], certificate)
    assert max(ocsp_delay, crl_delay) < PROPAGATION_BOUND
    while not any(i.log_events("lease taken") for i in survivors):
        assert time.monotonic() - killed_at < TAKEOVER_BOUND, "no instance took the lease over"
        await asyncio.sleep(0.1)


async def _lease_holder(cluster: Cluster) -> Instance:
    """The instance that holds the maintenance lease (taken in the first round, after 5 s)."""
    started = time.monotonic()
    while True:
        holders = [i for i in cluster.instances if i.log_events("lease taken")]
        if holders:
            (holder,) = holders
            return holder
        assert time.monotonic() - started < TAKEOVER_BOUND, "no instance took the lease"
        await asyncio.sleep(0.1)


async def test_when_the_instance_that_issued_the_responder_is_killed_the_others_renew_it(
    cluster: Cluster,
) -> None:
    """After the kill above too: the survivors issue the next responder, once."""
    for issuer in await _issued_by(cluster, await _newest_responder(cluster)):
        if issuer in _alive(cluster) and len(_alive(cluster)) > 1:
            await issuer.kill()
    renewed = await _renewed_once_and_adopted_everywhere(cluster)
    [issuer] = await _issued_by(cluster, renewed)
    assert issuer in _alive(cluster)
