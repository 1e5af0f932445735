"""How long the event loop stalls while a service opens, starts, serves a burst and renews.

    .venv/bin/python -m tools.bench_loop_stall [--rounds 3] [--burst 12]

Each round opens the service on a scratch data directory with a fresh demo CA (which generates
the hierarchy), starts its listeners (CRLs, OCSP responder certificates), serves a burst of
concurrent enrollments, OCSP (with and without nonce) and CRL requests from clients in this
process, and renews its OCSP responder certificates (the clock moved into their renewal
window). A ticker coroutine measures, without asyncio's debug mode, the longest extra delay of a
10 ms tick in each phase: what any other request waits at worst. Prints min/median/max over
the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import os
import socket
import statistics
import tempfile
from pathlib import Path

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from est_ca.audit import Actor
from est_ca.client import EstClient
from est_ca.clock import SettableClock
from est_ca.config import load_settings, shipped_config_dir
from est_ca.registration.identities import IdentityType
from est_ca.server import Server
from est_ca.service import Service
from tools.bench_crl import LoopWatch

ADMIN = Actor("admin", "bench", "bench_loop_stall")
CVR = "99999999"
PHASES = ("open", "start", "burst", "renew")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ec_profiles(directory: Path) -> Path:
    """The shipped system profile, allowing P-256: a burst of distinct keys without RSA keygen."""
    directory.mkdir()
    text = (shipped_config_dir() / "profiles" / "system.toml").read_text()
    (directory / "system.toml").write_text(text.replace("ec_curves = []", 'ec_curves = ["P-256"]'))
    return directory


def new_csr() -> x509.CertificateSigningRequest:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench")])
    key = ec.generate_private_key(ec.SECP256R1())
    return x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())


async def place_orders(service: Service, count: int) -> list[tuple[str, str]]:
    await service.registry.create_organisation(
        ADMIN, cvr=CVR, name="Bench ApS", email_domains=["example.dk"]
    )
    placed = []
    for n in range(count):
        identity = await service.registry.create_identity(
            ADMIN, type=IdentityType.SYSTEM, cvr=CVR, display_name=f"bench-{n}"
        )
        order = await service.registry.place_order(ADMIN, identity.id)
        placed.append((order.order.reference, order.one_time_code))
    return placed


def ocsp_request(certificate: x509.Certificate, issuer: x509.Certificate, *, nonce: bool) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(
        certificate,
        issuer,
        hashes.SHA1(),  # noqa: S303 - RFC 5019's CertID hash
    )
    if nonce:
        builder = builder.add_extension(x509.OCSPNonce(os.urandom(16)), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


async def serve_burst(service: Service, server: Server, count: int) -> float:
    """The longest stall while `count` each of enrollments, OCSP POSTs (nonce), OCSP GETs and
    CRL GETs run at once."""
    placed = await place_orders(service, count + 1)
    csrs = [new_csr() for _ in placed]
    # The demo CA issued the listener's certificate: its root is the one anchor.
    client = EstClient(server.https_url, trust=service.files.demo_root or service.files.ca_chain)
    first = await client.simpleenroll(csrs[0], placed[0])
    [certificate] = first.certificates()
    issuing = x509.load_pem_x509_certificate(service.files.ca_cert.read_bytes())
    publication = service.publication
    get_url = (
        publication.ocsp_url
        + "/"
        + base64.b64encode(ocsp_request(certificate, issuing, nonce=False)).decode("ascii")
    )

    async with aiohttp.ClientSession() as session:

        async def fetch(method: str, url: str, body: bytes | None = None) -> int:
            headers = {"Content-Type": "application/ocsp-request"} if body else {}
            async with session.request(method, url, data=body, headers=headers) as response:
                await response.read()
                return response.status

        async def enroll(csr: x509.CertificateSigningRequest, order: tuple[str, str]) -> int:
            return (await client.simpleenroll(csr, order)).status

        with LoopWatch() as watch:
            await asyncio.sleep(0)  # the ticker takes its first time before the work
            statuses = await asyncio.gather(
                *(enroll(csr, order) for csr, order in zip(csrs[1:], placed[1:], strict=True)),
                *(
                    fetch(
                        "POST", publication.ocsp_url, ocsp_request(certificate, issuing, nonce=True)
                    )
                    for _ in range(count)
                ),
                *(fetch("GET", get_url) for _ in range(count)),
                *(fetch("GET", publication.issuing_crl_url) for _ in range(count)),
            )
            await asyncio.sleep(0.02)  # one more tick after the last step
    if set(statuses) != {200}:
        raise RuntimeError(f"the burst was not served: {sorted(statuses)}")
    return watch.longest


async def one_round(directory: Path, burst: int) -> dict[str, float]:
    http_port = free_port()
    settings = load_settings(
        None,
        {},
        {
            "data_dir": str(directory / "data"),
            "service": {"host": "127.0.0.1", "port": 0, "http_port": http_port, "demo": False},
            "admin": {"port": 0},
            "profiles": {"extra_dirs": [str(ec_profiles(directory / "profiles"))]},
            "limits": {"max_concurrent_enrollments": 1000},
        },
    )
    clock = SettableClock()
    stalls: dict[str, float] = {}
    with LoopWatch() as watch:
        await asyncio.sleep(0)  # the ticker takes its first time before the work
        service = await Service.open(settings, clock=clock, create=True)
        await asyncio.sleep(0.02)
    stalls["open"] = watch.longest
    try:
        server = Server(service)
        with LoopWatch() as watch:
            await asyncio.sleep(0)  # the ticker takes its first time before the work
            await server.start("127.0.0.1", 0, http_port)
            await asyncio.sleep(0.02)
        stalls["start"] = watch.longest
        try:
            stalls["burst"] = await serve_burst(service, server, burst)
            assert service.publishing is not None
            ocsp_settings = settings.ocsp
            due = ocsp_settings.responder_validity_days - ocsp_settings.responder_renew_days
            clock.advance(dt.timedelta(days=due + 1))
            with LoopWatch() as watch:
                await asyncio.sleep(0)  # the ticker takes its first time before the work
                await service.publishing.check()
                await asyncio.sleep(0.02)
            stalls["renew"] = watch.longest
        finally:
            await server.stop()
    finally:
        await service.close()
    return stalls


async def bench(rounds: int, burst: int) -> None:
    measured: dict[str, list[float]] = {phase: [] for phase in PHASES}
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as scratch:
            for phase, stall in (await one_round(Path(scratch), burst)).items():
                measured[phase].append(stall)
    print(f"longest extra delay of a 10 ms tick, {rounds} rounds (min / median / max):")
    for phase in PHASES:
        values = [v * 1000 for v in measured[phase]]
        print(
            f"  {phase:6} {min(values):6.0f} ms {statistics.median(values):6.0f} ms "
            f"{max(values):6.0f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--burst", type=int, default=12)
    args = parser.parse_args()
    asyncio.run(bench(args.rounds, args.burst))


if __name__ == "__main__":
    main()
