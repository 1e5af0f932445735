"""Floods against a real `est-ca serve` process: what they cost, and whether others still get in.

    .venv/bin/python -m tools.bench_floods [--flood 1000] [--timing 300]

Prints, for one run on a fresh data directory:
- the response time of an unknown order reference and of a wrong code for a known one
  (medians and 10th/90th percentiles; they should be equal, or an attacker could tell which
  references exist);
- what a flood of malformed Basic credentials (EST) and of credential-less requests (admin API)
  from one address gets, and how many audit rows it writes (during the flood, and in all once
  the service has stopped and written its summaries);
- five holders of real orders enrolling while 200 addresses send unknown references.
The service runs as its own process; the load runs here, on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import socket
import sqlite3
import ssl
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from est_ca.ca.publication import OCSP_PATH
from est_ca.client import encode_csr

CVR = "99999999"
PKCS10 = "application/pkcs10"


def make_csr(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
) -> x509.CertificateSigningRequest:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench")])
    return x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Deployment:
    """One `est-ca serve` process on a scratch directory, and what the tool needs of it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.https, self.http, self.admin = free_port(), free_port(), free_port()
        self.config = directory / "est-ca.toml"
        self.config.write_text(
            f'data_dir = "{directory / "data"}"\n'
            f"[service]\nport = {self.https}\nhttp_port = {self.http}\ndemo = false\n"
            f"[admin]\nport = {self.admin}\n"
            '[logging]\nformat = "json"\nlevel = "warning"\n'
        )
        self.process: asyncio.subprocess.Process | None = None
        self.token = ""
        self.organisations: bool | None = None
        self.last_ocsp_seconds = 0.0

    def cli(self, *args: str) -> str:
        import subprocess

        result = subprocess.run(
            [sys.executable, "-m", "est_ca", "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "est_ca",
            "--config",
            str(self.config),
            "serve",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env={k: v for k, v in os.environ.items() if not k.startswith("EST_CA_")},
        )
        for _ in range(600):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.admin)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        reply = json.loads(self.cli("token", "create", "bench", "--scopes", "admin", "--json"))
        self.token = reply["token"]

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.process.wait(), 60)

    def audit_rows(self) -> int:
        with sqlite3.connect(self.directory / "data" / "est-ca.db") as db:
            return int(db.execute("SELECT COUNT(*) FROM audit_events").fetchone()[0])

    @property
    def trust(self) -> ssl.SSLContext:
        # The demo CA issued the listener's certificate: its root is the one anchor.
        return ssl.create_default_context(cafile=str(self.directory / "data/ca/root.pem"))

    def est(self, operation: str = "simpleenroll") -> str:
        return f"https://127.0.0.1:{self.https}/.well-known/est/{operation}"

    async def api(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        connector = aiohttp.TCPConnector(ssl=self.trust)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.post(
                f"https://127.0.0.1:{self.admin}/admin/v1{path}",
                json=body,
                headers={"Authorization": f"Bearer {self.token}"},
            ) as response,
        ):
            reply: dict[str, Any] = await response.json(content_type=None)
            if response.status >= 300 and response.status != 409:
                raise RuntimeError(f"{path}: {response.status} {reply}")
            return reply

    async def order(self, n: int) -> tuple[str, str]:
        """A system identity with one order: (reference, one-time code). Versions with
        organisation records need the organisation first; older ones take its name."""
        if self.organisations is None:
            self.organisations = await self._has_organisations()
            if self.organisations:
                await self.api("/organisations", {"cvr": CVR, "name": "Bench ApS"})
        named = {} if self.organisations else {"organisation_name": "Bench ApS"}
        identity = await self.api(
            "/identities", {"type": "system", "cvr": CVR, "display_name": f"bench-{n}", **named}
        )
        placed = await self.api("/orders", {"identity_id": identity["id"]})
        return placed["reference"], placed["one_time_code"]

    async def enroll(
        self, reference: str, code: str, csr: x509.CertificateSigningRequest
    ) -> x509.Certificate:
        connector = aiohttp.TCPConnector(ssl=self.trust)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.post(
                self.est(),
                data=encode_csr(csr),
                headers={"Authorization": basic(reference, code), "Content-Type": PKCS10},
            ) as response,
        ):
            body = await response.read()
            if response.status != 200:
                raise RuntimeError(f"enrollment: {response.status} {body!r}")
        return pkcs7.load_der_pkcs7_certificates(base64.b64decode(body))[0]

    async def cacerts(self) -> list[x509.Certificate]:
        connector = aiohttp.TCPConnector(ssl=self.trust)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.get(self.est("cacerts")) as response,
        ):
            return pkcs7.load_der_pkcs7_certificates(base64.b64decode(await response.read()))

    async def ocsp(self, certificate: x509.Certificate, issuer: x509.Certificate) -> None:
        """An OCSP POST with a nonce (signed fresh); the time it took in `last_ocsp_seconds`."""
        request = (
            ocsp.OCSPRequestBuilder()
            .add_certificate(certificate, issuer, hashes.SHA1())  # noqa: S303 - RFC 5019 CertID
            .add_extension(x509.OCSPNonce(os.urandom(16)), critical=False)
            .build()
            .public_bytes(serialization.Encoding.DER)
        )
        started = time.perf_counter()
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"http://127.0.0.1:{self.http}{OCSP_PATH}",
                data=request,
                headers={"Content-Type": "application/ocsp-request"},
            ) as response,
        ):
            answer = ocsp.load_der_ocsp_response(await response.read())
        self.last_ocsp_seconds = time.perf_counter() - started
        if answer.certificate_status is not ocsp.OCSPCertStatus.GOOD:
            raise RuntimeError(f"OCSP said {answer.certificate_status}")

    async def import_csv(self, text: str) -> int:
        """POST an import with orders; the number of orders placed."""
        connector = aiohttp.TCPConnector(ssl=self.trust)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.post(
                f"https://127.0.0.1:{self.admin}/admin/v1/identities/import?place_orders=true",
                data=text.encode(),
                headers={"Authorization": f"Bearer {self.token}", "Content-Type": "text/csv"},
            ) as response,
        ):
            reply = await response.json(content_type=None)
            if response.status >= 300:
                raise RuntimeError(f"import: {response.status} {str(reply)[:300]}")
            return len(reply["orders"])

    async def _has_organisations(self) -> bool:
        connector = aiohttp.TCPConnector(ssl=self.trust)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.get(f"https://127.0.0.1:{self.admin}/admin/v1/openapi.json") as response,
        ):
            document = await response.json()
        return "/organisations" in document.get("paths", {})


def basic(reference: str, code: str) -> str:
    return "Basic " + base64.b64encode(f"{reference}:{code}".encode()).decode()


async def timed(
    deployment: Deployment, authorization: list[str], source: str, csr: bytes
) -> list[float]:
    """Each Authorization value once, over one keep-alive connection from `source`."""
    connector = aiohttp.TCPConnector(ssl=deployment.trust, local_addr=(source, 0), limit=1)
    durations = []
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(deployment.est("cacerts")) as warm:
            await warm.read()
        for value in authorization:
            started = time.perf_counter()
            async with session.post(
                deployment.est(),
                data=csr,
                headers={"Authorization": value, "Content-Type": "application/pkcs10"},
            ) as response:
                await response.read()
                assert response.status == 401, response.status
            durations.append(time.perf_counter() - started)
    return durations


async def flood(
    deployment: Deployment,
    url: str,
    count: int,
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    source: str = "127.0.0.1",
) -> Counter[int]:
    connector = aiohttp.TCPConnector(ssl=deployment.trust, local_addr=(source, 0), limit=1)
    seen: Counter[int] = Counter()
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(count):
            async with session.request(method, url, headers=headers, data=body) as response:
                await response.read()
                seen[response.status] += 1
    return seen


def spread(values: list[float]) -> str:
    ordered = sorted(values)
    tenth, ninetieth = ordered[len(ordered) // 10], ordered[(len(ordered) * 9) // 10]
    return (
        f"median {statistics.median(ordered) * 1000:6.2f} ms   "
        f"p10 {tenth * 1000:6.2f}   p90 {ninetieth * 1000:6.2f}"
    )


async def bench(flood_size: int, timing: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        deployment = Deployment(Path(scratch))
        await deployment.start()
        try:
            csr = encode_csr(make_csr(ec.generate_private_key(ec.SECP256R1())))
            # Timing: unknown references and wrong codes, alternating, from addresses that
            # stay under the failure throttle (9 each) and orders that stay unlocked (4 each).
            orders = [await deployment.order(n) for n in range(timing // 4 + 1)]
            unknown, wrong = [], []
            for batch in range(timing // 4):
                source = f"127.0.3.{1 + batch % 250}"
                reference, _ = orders[batch]
                unknown += await timed(
                    deployment,
                    [basic(f"NOSUCH{batch:06d}", "AAAAA-AAAAA-AAAAA-AAAAA")] * 4,
                    source,
                    csr,
                )
                wrong += await timed(
                    deployment,
                    [basic(reference, "AAAAA-AAAAA-AAAAA-AAAAA")] * 4,
                    f"127.0.4.{1 + batch % 250}",
                    csr,
                )
            print(f"unknown order reference ({len(unknown)}):  {spread(unknown)}")
            print(f"wrong code, known order ({len(wrong)}):   {spread(wrong)}")

            rows = deployment.audit_rows()
            seen = await flood(
                deployment,
                deployment.est(),
                flood_size,
                headers={"Authorization": "Basic !!!", "Content-Type": "application/pkcs10"},
                body=csr,
                source="127.0.5.1",
            )
            est_rows = deployment.audit_rows() - rows
            print(
                f"{flood_size} malformed Basic (EST), one address: {dict(seen)}, "
                f"{est_rows} audit rows during the flood"
            )
            rows = deployment.audit_rows()
            seen = await flood(
                deployment,
                f"https://127.0.0.1:{deployment.admin}/admin/v1/identities",
                flood_size,
                method="GET",
                source="127.0.5.2",
            )
            admin_rows = deployment.audit_rows() - rows
            print(
                f"{flood_size} without credentials (admin API), one address: {dict(seen)}, "
                f"{admin_rows} audit rows during the flood"
            )

            real = [await deployment.order(1000 + n) for n in range(5)]
            # The shipped system profile takes RSA 3072 and 4096 keys.
            requests = [
                encode_csr(make_csr(rsa.generate_private_key(65537, 3072))) for _ in range(5)
            ]

            async def attacker(n: int) -> Counter[int]:
                return await flood(
                    deployment,
                    deployment.est(),
                    10,
                    headers={
                        "Authorization": basic(f"UNKNOWN{n:05d}", "AAAAA-AAAAA-AAAAA-AAAAA"),
                        "Content-Type": "application/pkcs10",
                    },
                    body=csr,
                    source=f"127.0.{6 + n // 250}.{1 + n % 250}",
                )

            async def holder(n: int) -> tuple[int, float]:
                await asyncio.sleep(0.05 * n)
                started = time.perf_counter()
                connector = aiohttp.TCPConnector(ssl=deployment.trust)
                request = requests[n]
                async with (
                    aiohttp.ClientSession(connector=connector) as session,
                    session.post(
                        deployment.est(),
                        data=request,
                        headers={
                            "Authorization": basic(*real[n]),
                            "Content-Type": "application/pkcs10",
                        },
                    ) as response,
                ):
                    await response.read()
                    return response.status, time.perf_counter() - started

            attacks = [asyncio.create_task(attacker(n)) for n in range(200)]
            await asyncio.sleep(0.2)
            legitimate = await asyncio.gather(*(holder(n) for n in range(5)))
            flooded = sum(await asyncio.gather(*attacks), Counter())
            print(
                "5 real orders during 200 addresses x 10 unknown references: "
                + ", ".join(f"{status} in {seconds:.2f} s" for status, seconds in legitimate)
                + f"; the flood got {dict(flooded)}"
            )
        finally:
            before_stop = deployment.audit_rows()
            await deployment.stop()
        print(
            f"audit rows in all: {before_stop} while serving, {deployment.audit_rows()} after "
            "the service stopped (refusal summaries written)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flood", type=int, default=1000)
    parser.add_argument("--timing", type=int, default=300)
    args = parser.parse_args()
    asyncio.run(bench(args.flood, args.timing))


if __name__ == "__main__":
    main()
