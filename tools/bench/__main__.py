"""est-ca's benchmark: every path as a ratio to a ceiling measured in the same run.

    .venv/bin/python -m tools.bench [--quick] [--ca-key rsa3072|p256|p384]
        [--database-url postgresql://postgres@127.0.0.1:5432/postgres] [--instances N]
        [--workers N]
        [--clients 32] [--client-processes 2] [--repeat 3] [--json out.json]

One run starts `est-ca serve` (and a bare aiohttp app) as processes of their own on a fresh
data directory (SQLite; or a fresh database made on the PostgreSQL server `--database-url`
names), places the orders in bulk through the admin API's import, makes every key and CSR, and
then measures, `--repeat` times each (min/median/max):

- simpleenroll (Basic) on a new TLS connection per request and over kept-alive connections,
  and simplereenroll (mTLS: a connection per request, as each carries its own client
  certificate), against the CA's own work for an enrollment (CSR check + build + sign with the
  same CA key, no HTTP or database) on 1 and 2 threads and 2 processes;
- GET cacerts (HTTPS, new connection and keep-alive) against the bare app returning the same
  bytes with the service's TLS context;
- OCSP GET of a pre-produced answer (the same request again and again) and OCSP POST with a
  nonce, against the bare app returning the same bytes over the same plain HTTP, back to back;
- once: a CRL of `--crl-entries` (100,000) revoked certificates made by the live service
  while OCSP GET runs: the regeneration's duration, and OCSP throughput and p99 during it.

Load comes from `--client-processes` processes (aiohttp), never the server's event loop; their
CPU is reported beside the server's, so a client-bound ceiling shows. Prints the table and
writes `--json` for comparing commits. `--quick` (under a minute) is the CI smoke test.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import datetime as dt
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509 import ocsp

from est_ca.ca.publication import OCSP_PATH, crl_path
from est_ca.client import encode_csr
from est_ca.config import load_settings
from est_ca.service import Service
from tools.bench.ceilings import SignSpec, sign_rate
from tools.bench.load import Job, Load, Outcome, Request, write_client_files
from tools.bench_floods import CVR, PKCS10, basic, make_csr
from tools.bench_import import staff_file
from tools.bench_propagation import Database
from tools.cluster import (
    CA_KEYS,
    PASSPHRASE,
    Instance,
    SharedFiles,
    crl_number,
    est_ca_command,
    fetch_crl,
    free_port,
    ocsp_request,
    profiles_for,
    revoke_through_admin,
    run_command,
    running_cluster,
    shared_files,
)
from tools.scratch import record_certificates

OCSP_REQUEST = "application/ocsp-request"
EST = "/.well-known/est"


@dataclasses.dataclass(frozen=True)
class Plan:
    repeat: int
    enrollments: int  # per enrollment measurement
    seconds: float  # per timed measurement (ceilings, cacerts, OCSP)
    crl_entries: int
    clients: int
    client_processes: int
    # Only the OCSP paths (and the few enrollments that make their certificate): the quick
    # before/after loop of an OCSP change.
    only_ocsp: bool = False
    # Only the ceilings and the enrollments (no cacerts, OCSP nor CRL): enrollment work.
    enroll_only: bool = False


# -- what the server processes used ------------------------------------------------------------


def _stat(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()  # fields from the 3rd (state) on


def _family(pids: list[int]) -> list[int]:
    """The processes and their descendants (a large CRL is drafted in a child process)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                children.setdefault(int(_stat(int(entry.name))[1]), []).append(int(entry.name))
    found, todo = [], list(pids)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime (and that of waited-for children) of the processes and their descendants."""
    ticks = 0
    for pid in _family(pids):
        with contextlib.suppress(OSError, IndexError):
            fields = _stat(pid)
            ticks += sum(int(fields[i]) for i in (11, 12, 13, 14))
    return ticks / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


# -- figures -----------------------------------------------------------------------------------


def percentile(values: list[float], p: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


class Results:
    """Every measurement of every repetition, by path; summarised as min/median/max."""

    def __init__(self) -> None:
        self.runs: dict[str, list[dict[str, float]]] = {}
        self.errors: dict[str, Counter[str]] = {}
        self.ceiling_of: dict[str, str] = {}

    def add(self, path: str, figures: dict[str, float], errors: Counter[str] | None = None) -> None:
        self.runs.setdefault(path, []).append(figures)
        self.errors.setdefault(path, Counter()).update(errors or {})

    def outcome(
        self, path: str, outcome: Outcome, server_cpu: float, ceiling: str | None = None
    ) -> None:
        errors = Counter({s: n for s, n in outcome.statuses.items() if s not in ("200", "304")})
        elapsed = outcome.ended - outcome.began
        self.add(
            path,
            {
                "rate": outcome.rate,
                "p50_ms": percentile(outcome.latencies, 50) * 1000,
                "p95_ms": percentile(outcome.latencies, 95) * 1000,
                "p99_ms": percentile(outcome.latencies, 99) * 1000,
                "server_cpu_ms_per_request": server_cpu / max(outcome.done, 1) * 1000,
                "server_cores": server_cpu / elapsed if elapsed else 0.0,
                "client_cores": outcome.client_cpu / elapsed if elapsed else 0.0,
            },
            errors,
        )
        if ceiling:
            self.ceiling_of[path] = ceiling

    def summary(self) -> dict[str, dict[str, Any]]:
        paths: dict[str, dict[str, Any]] = {}
        for path, runs in self.runs.items():
            entry: dict[str, Any] = {
                key: spread([run[key] for run in runs]) for key in runs[0] if key in runs[-1]
            }
            entry["errors"] = dict(self.errors[path])
            ceiling = self.ceiling_of.get(path)
            if ceiling is not None and ceiling in self.runs:
                tops = self.runs[ceiling]
                entry["ceiling"] = ceiling
                pairs = list(zip(runs, tops, strict=False))
                entry["ratio"] = spread(
                    [r["rate"] / t["rate"] for r, t in pairs if t["rate"]] or [0.0]
                )
                # CPU per request, the ceiling's over the service's: what a client-bound or
                # starved ceiling cannot hide (on a busy 2-core machine, the rates can).
                entry["cpu_ratio"] = spread(
                    [
                        t["server_cpu_ms_per_request"] / r["server_cpu_ms_per_request"]
                        for r, t in pairs
                        if r["server_cpu_ms_per_request"]
                    ]
                    or [0.0]
                )
            paths[path] = entry
        return paths


# -- the run -----------------------------------------------------------------------------------


@dataclasses.dataclass
class Bench:
    plan: Plan
    directory: Path
    shared: SharedFiles
    profiles: Path
    instances: list[Instance]
    load: Load
    token: str = ""
    # py-spy's record of the first server process during the first simpleenroll.
    profile: Path | None = None
    # py-spy's records of the first server process during the first OCSP measurements.
    profile_ocsp: Path | None = None
    plan_key: str = ""  # names the OCSP flame graphs (the CA key)
    # Event loops serving (instances x workers): the bare app runs as many processes.
    workers: int = 1
    bare_pids: list[int] = dataclasses.field(default_factory=list)
    results: Results = dataclasses.field(default_factory=Results)

    @property
    def pids(self) -> list[int]:
        return [i.process.pid for i in self.instances if i.process is not None]

    def urls(self, path: str, *, https: bool = True) -> tuple[str, ...]:
        return tuple((i.https_url if https else i.http_url) + path for i in self.instances)

    async def measured(
        self, path: str, job: Job, ceiling: str | None = None, pids: list[int] | None = None
    ) -> Outcome:
        """`pids`: the server processes whose CPU it costs (default: the service's)."""
        pids = pids or self.pids
        before = cpu_seconds(pids)
        outcome = await self.load.run(job)
        failed = {s: n for s, n in outcome.statuses.items() if s not in ("200", "304")}
        if failed:
            print(f"{path}: {failed} {outcome.samples}", file=sys.stderr, flush=True)
        self.results.outcome(path, outcome, cpu_seconds(pids) - before, ceiling)
        return outcome

    async def admin(self, path: str, body: bytes, content_type: str) -> Any:
        connector = aiohttp.TCPConnector(ssl=_trust(self.shared))
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.post(
                self.instances[0].admin_url + path,
                data=body,
                headers={"Authorization": f"Bearer {self.token}", "Content-Type": content_type},
            ) as response,
        ):
            reply = await response.json(content_type=None)
            if response.status >= 300:
                raise RuntimeError(f"{path}: {response.status} {str(reply)[:300]}")
            return reply

    async def place_orders(self, count: int) -> list[tuple[str, str]]:
        """`count` identities with an order each, in one import (the fastest bulk path)."""
        status, output = await run_command(
            *est_ca_command(self.instances[0].config),
            "token", "create", "bench", "--scopes", "admin", "--json",
        )  # fmt: skip
        if status != 0:
            raise RuntimeError(f"token create failed: {output}")
        self.token = json.loads(output)["token"]
        organisation = {"cvr": CVR, "name": "Bench ApS", "email_domains": ["example.dk"]}
        await self.admin("/organisations", json.dumps(organisation).encode(), "application/json")
        reply = await self.admin(
            "/identities/import?place_orders=true", staff_file(count).encode(), "text/csv"
        )
        return [(o["reference"], o["one_time_code"]) for o in reply["orders"]]


def _trust(shared: SharedFiles) -> Any:
    import ssl

    return ssl.create_default_context(cafile=str(shared.tls_cert))


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _issued(body: bytes) -> x509.Certificate:
    return pkcs7.load_der_pkcs7_certificates(base64.b64decode(body))[0]


def _enroll_request(order: tuple[str, str], csr: x509.CertificateSigningRequest) -> Request:
    return Request(
        body=encode_csr(csr),
        headers=(("Authorization", basic(*order)), ("Content-Type", PKCS10)),
    )


def _ocsp_with_nonce(certificate: x509.Certificate, issuer: x509.Certificate) -> bytes:
    return (
        ocsp.OCSPRequestBuilder()
        .add_certificate(certificate, issuer, hashes.SHA1())  # noqa: S303 - RFC 5019 CertID
        .add_extension(x509.OCSPNonce(os.urandom(16)), critical=False)
        .build()
        .public_bytes(serialization.Encoding.DER)
    )


async def enrollments(
    bench: Bench, orders: list[tuple[str, str]], rep: int
) -> list[x509.Certificate]:
    """simpleenroll on new and on kept-alive connections; the mTLS requests for the renewals
    (the certificates issued, their keys, new CSRs) made before the clock starts."""
    plan = bench.plan
    renewals: list[Request] = []
    holders: list[x509.Certificate] = []
    for variant, keep_alive in (("new_connection", False), ("keep_alive", True)):
        batch = orders[: plan.enrollments]
        del orders[: plan.enrollments]
        keys = [ec.generate_private_key(ec.SECP256R1()) for _ in batch]
        job = Job(
            urls=bench.urls(f"{EST}/simpleenroll"),
            method="POST",
            requests=tuple(
                _enroll_request(o, make_csr(k)) for o, k in zip(batch, keys, strict=True)
            ),
            clients=plan.clients,
            keep_alive=keep_alive,
            trust=str(bench.shared.tls_cert),
            keep_bodies=True,
        )
        profiling = bench.profile is not None and rep == 0 and not keep_alive
        async with profiled(bench.profile if profiling else None, bench.pids[0]):
            outcome = await bench.measured(f"simpleenroll_basic_{variant}", job, "sign_2_threads")
        if variant == "new_connection":
            files = bench.directory / f"clients-{rep}"
            files.mkdir()
            for index, body in outcome.bodies.items():
                issued = _issued(body)
                holders.append(issued)
                pem = issued.public_bytes(serialization.Encoding.PEM)
                request = write_client_files(files, index, pem, _key_pem(keys[index]))
                # simplereenroll: the CSR names the current certificate's subject and SAN
                # (RFC 7030 4.2.2).
                builder = x509.CertificateSigningRequestBuilder().subject_name(issued.subject)
                with contextlib.suppress(x509.ExtensionNotFound):
                    san = issued.extensions.get_extension_for_class(x509.SubjectAlternativeName)
                    builder = builder.add_extension(san.value, critical=False)
                csr = builder.sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
                renewals.append(
                    dataclasses.replace(
                        request, body=encode_csr(csr), headers=(("Content-Type", PKCS10),)
                    )
                )
    job = Job(
        urls=bench.urls(f"{EST}/simplereenroll"),
        method="POST",
        requests=tuple(renewals),
        clients=plan.clients,
        keep_alive=False,
        trust=str(bench.shared.tls_cert),
        keep_bodies=True,
    )
    renewed = await bench.measured("simplereenroll_mtls_new_connection", job, "sign_2_threads")
    return [holders[i] for i in sorted(renewed.bodies)]


@contextlib.asynccontextmanager
async def profiled(out: Path | None, pid: int) -> AsyncIterator[None]:
    """py-spy (not a dependency: on PATH or beside this Python) sampling `pid` until the block
    ends: a flame graph `out` and the collapsed stacks beside it (`.txt`), to count frames."""
    if out is None:
        yield
        return
    spy = str(Path(sys.executable).parent / "py-spy")
    records = []
    for form, path in (("flamegraph", out), ("raw", out.with_suffix(".txt"))):
        command = [spy, "record", "--nonblocking", "--pid", str(pid), "--format", form]
        records.append(
            await asyncio.create_subprocess_exec(
                *command, "-o", str(path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        )
    await asyncio.sleep(1.0)  # attached before the load starts
    try:
        yield
    finally:
        for record in records:
            record.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        await asyncio.gather(*(record.wait() for record in records))


def sign_ceilings(bench: Bench, spec: SignSpec) -> None:
    for name, threads, processes in (
        ("sign_1_thread", 1, 0),
        ("sign_2_threads", 2, 0),
        ("sign_2_processes", 0, 2),
    ):
        rate, cpu = sign_rate(spec, bench.plan.seconds, threads=threads, processes=processes)
        bench.results.add(name, {"rate": rate, "server_cpu_ms_per_request": cpu})


async def versus_bare(bench: Bench, name: str, est_ca: Job, bare_url: str) -> None:
    """The service's path and the bare app's, the same requests, back to back."""
    bare = dataclasses.replace(est_ca, urls=(bare_url,))
    await bench.measured(name, est_ca, f"bare_{name}")
    await bench.measured(f"bare_{name}", bare, pids=bench.bare_pids)


@contextlib.asynccontextmanager
async def bare_app(
    shared: SharedFiles, bodies: Path, processes: int = 1
) -> AsyncIterator[tuple[str, str, list[int]]]:
    """The bare app in `processes` processes of its own sharing its ports (as many as the
    service has workers: the same number of event loops): its https and http base URLs, pids."""
    https_port, http_port = free_port(), free_port()
    started = []
    try:
        for _ in range(processes):
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tools.bench.ceilings",
                "--cert", str(shared.tls_cert), "--key", str(shared.tls_key),
                "--client-ca", str(shared.hierarchy.issuing_chain), "--bodies", str(bodies),
                "--https-port", str(https_port), "--http-port", str(http_port),
                *(["--reuse-port"] if processes > 1 else []),
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            started.append(process)
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), 60)
            if line.strip() != b"ready":
                raise RuntimeError("the bare app did not start")
        pids = [process.pid for process in started]
        yield f"https://127.0.0.1:{https_port}", f"http://127.0.0.1:{http_port}", pids
    finally:
        for process in started:
            process.terminate()
            await process.wait()


async def fetch(url: str, *, data: bytes | None = None, trust: Any = True) -> bytes:
    headers = {"Content-Type": OCSP_REQUEST} if data else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request("POST" if data else "GET", url, data=data, headers=headers, ssl=trust) as r,
    ):
        r.raise_for_status()
        return await r.read()


async def crl_under_load(bench: Bench, ocsp_get: Job, revoke_serial: int) -> dict[str, float]:
    """Record the revoked entries, then revoke one more certificate through the admin API while
    OCSP GET runs: the service makes the large CRL at once. Figures for the window from the
    revocation until the new CRL is served, against the seconds before it."""
    instance = bench.instances[0]
    service = await Service.open(load_settings(instance.config, {}, {}), with_ca=False)
    try:
        started = time.perf_counter()
        # Not counted as a revocation: the CRL that lists them is the one measured below.
        await record_certificates(service, bench.plan.crl_entries, revoked=True)
        recorded = time.perf_counter() - started
    finally:
        await service.close()
    async with aiohttp.ClientSession() as session:
        before = crl_number(await fetch_crl(session, instance))
        stop = bench.directory / "stop-ocsp"
        job = dataclasses.replace(ocsp_get, duration=600.0, stop_file=str(stop))
        cpu = cpu_seconds(bench.pids)
        running = asyncio.create_task(bench.load.run(job))
        await asyncio.sleep(max(1.0, bench.plan.seconds))
        revoked_at = time.monotonic()
        await revoke_through_admin(
            session, instance, bench.token, revoke_serial, bench.shared.tls_cert
        )
        etag = ""
        while True:
            async with session.get(
                instance.http_url + crl_path("issuing"), headers={"If-None-Match": etag}
            ) as response:
                body = await response.read()
                etag = response.headers.get("ETag", "")
                if response.status == 200 and body:
                    crl = x509.load_der_x509_crl(body)
                    if crl_number(crl) > before:
                        break
            await asyncio.sleep(0.05)
        served_at = time.monotonic()
        await asyncio.sleep(max(1.0, bench.plan.seconds))
        stop.touch()
        outcome = await running
        cpu = cpu_seconds(bench.pids) - cpu
    during = [
        t
        for s, t in zip(outcome.starts, outcome.latencies, strict=True)
        if revoked_at <= s < served_at
    ]
    calm = [t for s, t in zip(outcome.starts, outcome.latencies, strict=True) if s < revoked_at]
    window = served_at - revoked_at
    return {
        "entries": float(len(crl)),
        "crl_bytes": float(len(body)),
        "record_seconds": recorded,
        "regeneration_seconds": window,
        "ocsp_rate_during": len(during) / window if window else 0.0,
        "ocsp_p99_ms_during": percentile(during, 99) * 1000,
        "ocsp_rate_before": len(calm) / (revoked_at - outcome.began),
        "ocsp_p99_ms_before": percentile(calm, 99) * 1000,
        "server_cpu_seconds": cpu,
    }


def _ocsp_profile(bench: Bench, rep: int, name: str) -> Path | None:
    """Where the first repetition's OCSP `name` flame graph goes (both est-ca and the bare
    app are timed in the block: the bare app is another process, not sampled)."""
    if bench.profile_ocsp is None or rep != 0:
        return None
    bench.profile_ocsp.mkdir(parents=True, exist_ok=True)
    return bench.profile_ocsp / f"ocsp-{name}-{bench.plan_key}.svg"


async def measure(bench: Bench, spec: SignSpec, bodies: Path) -> dict[str, float] | None:
    plan = bench.plan
    trust = str(bench.shared.tls_cert)
    orders = await bench.place_orders((1 if plan.only_ocsp else plan.repeat) * 2 * plan.enrollments)
    issuer = x509.load_pem_x509_certificate(bench.shared.hierarchy.issuing_cert.read_bytes())
    cacerts = await fetch(bench.urls(f"{EST}/cacerts")[0], trust=_trust(bench.shared))
    (bodies / "cacerts").write_bytes(cacerts)
    renewed: list[x509.Certificate] = []
    async with bare_app(bench.shared, bodies, bench.workers) as (bare_https, bare_http, bare_pids):
        bench.bare_pids = bare_pids
        bench.load.warm()
        for rep in range(plan.repeat):
            if not plan.only_ocsp:
                sign_ceilings(bench, spec)
            if rep == 0 or not plan.only_ocsp:
                renewed = await enrollments(bench, orders, rep)
            if plan.enroll_only:
                continue
            for variant, keep_alive in (("new_connection", False), ("keep_alive", True)):
                if plan.only_ocsp:
                    break
                job = Job(
                    urls=bench.urls(f"{EST}/cacerts"),
                    method="GET",
                    requests=(Request(),),
                    clients=plan.clients,
                    keep_alive=keep_alive,
                    trust=trust,
                    duration=plan.seconds,
                )
                await versus_bare(bench, f"cacerts_https_{variant}", job, bare_https + "/cacerts")
            if rep == 0:
                # A certificate the service issued: its pre-produced answer, and one with a nonce.
                target = renewed[0]
                get_path = "/" + urllib.parse.quote(
                    base64.b64encode(ocsp_request(target, issuer)).decode(), safe=""
                )
                ocsp_get_url = bench.urls(OCSP_PATH + get_path, https=False)
                (bodies / "ocsp-get").write_bytes(await fetch(ocsp_get_url[0]))
                nonces = tuple(
                    Request(
                        body=_ocsp_with_nonce(target, issuer),
                        headers=(("Content-Type", OCSP_REQUEST),),
                    )
                    for _ in range(2000)
                )
                (bodies / "ocsp-nonce").write_bytes(
                    await fetch(bench.urls(OCSP_PATH, https=False)[0], data=nonces[0].body)
                )
            ocsp_get = Job(
                urls=ocsp_get_url,
                method="GET",
                requests=(Request(),),
                clients=plan.clients,
                keep_alive=True,
                duration=plan.seconds,
            )
            async with profiled(_ocsp_profile(bench, rep, "get"), bench.pids[0]):
                await versus_bare(bench, "ocsp_get_preproduced", ocsp_get, bare_http + "/ocsp-get")
            ocsp_post = Job(
                urls=bench.urls(OCSP_PATH, https=False),
                method="POST",
                requests=nonces,
                clients=plan.clients,
                keep_alive=True,
                duration=plan.seconds,
            )
            async with profiled(_ocsp_profile(bench, rep, "post-nonce"), bench.pids[0]):
                await versus_bare(bench, "ocsp_post_nonce", ocsp_post, bare_http + "/ocsp-nonce")
    if plan.only_ocsp or plan.enroll_only:
        return None
    # The CRL is the service's alone (no bare app). Revoke a certificate that is not the OCSP
    # target.
    return await crl_under_load(bench, ocsp_get, renewed[-1].serial_number)


def _fmt(figures: dict[str, float], digits: int = 0) -> str:
    return (
        f"{figures['median']:,.{digits}f} "
        f"({figures['min']:,.{digits}f}-{figures['max']:,.{digits}f})"
    )


def table(report: dict[str, Any]) -> str:
    """path | est-ca | ceiling | ratio (median (min-max)), then what each path cost (medians)."""
    meta, paths = report["meta"], report["paths"]
    lines = [
        f"est-ca bench {meta['commit']}: CA {meta['ca_key']}, {meta['database']}, "
        f"{meta['instances']} instance(s) of {meta.get('workers', 1)} worker(s), "
        f"{meta['clients']} clients in "
        f"{meta['client_processes']} processes, {meta['repeat']} repetition(s)",
        "",
        "| path | est-ca /s | ceiling | ceiling /s | ratio | CPU/request ratio |",
        "|---|---|---|---|---|---|",
    ]
    for path, entry in paths.items():
        if path.startswith("bare_"):
            continue
        ceiling = entry.get("ceiling", "")
        if path.startswith("sign_"):
            each = entry["server_cpu_ms_per_request"]["median"]
            lines.append(
                f"| (ceiling) {path} | | | {_fmt(entry['rate'])}, {each:.2f} ms CPU each | | |"
            )
            continue
        top = _fmt(paths[ceiling]["rate"]) if ceiling else ""
        ratio = _fmt(entry["ratio"], 3) if "ratio" in entry else ""
        cpu = _fmt(entry["cpu_ratio"], 3) if "cpu_ratio" in entry else ""
        lines.append(f"| {path} | {_fmt(entry['rate'])} | {ceiling} | {top} | {ratio} | {cpu} |")
    lines += [
        "",
        "| path | p50 ms | p95 ms | p99 ms | server CPU ms/req | server cores | client cores "
        "| errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for path, entry in paths.items():
        if "p50_ms" in entry:  # timed over HTTP
            figures = " | ".join(
                f"{entry[key]['median']:.2f}"
                for key in ("p50_ms", "p95_ms", "p99_ms", "server_cpu_ms_per_request")
            )
            cores = f"{entry['server_cores']['median']:.2f} | {entry['client_cores']['median']:.2f}"
            lines.append(f"| {path} | {figures} | {cores} | {entry['errors'] or ''} |")
    crl = report["crl"]
    if crl is None:  # --only-ocsp, --enroll-only
        lines += [
            "",
            "peak RSS (VmHWM) per server process: "
            + ", ".join(f"{v:.0f} MB" for v in report["peak_rss_mb"]),
        ]
        return "\n".join(lines)
    lines += [
        "",
        f"CRL of {crl['entries']:,.0f} entries ({crl['crl_bytes'] / 1e6:.1f} MB) made by the live "
        f"service in {crl['regeneration_seconds']:.2f} s (revocation answered -> new CRL "
        f"served); OCSP GET during it {crl['ocsp_rate_during']:,.0f}/s, p99 "
        f"{crl['ocsp_p99_ms_during']:.1f} ms (before: {crl['ocsp_rate_before']:,.0f}/s, p99 "
        f"{crl['ocsp_p99_ms_before']:.1f} ms)",
        "peak RSS (VmHWM) per server process (with workers: the parent, then each worker): "
        + ", ".join(f"{v:.0f} MB" for v in report["peak_rss_mb"]),
    ]
    return "\n".join(lines)


def _commit() -> str:
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        return subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True, text=True, check=True, cwd=Path(__file__).parent,
        ).stdout.strip()  # fmt: skip
    return ""


@contextlib.asynccontextmanager
async def database(url: str, directory: Path, instances: int) -> AsyncIterator[str]:
    if not url:
        if instances > 1:
            raise SystemExit("several instances share a PostgreSQL database: give --database-url")
        yield f"sqlite+aiosqlite:///{directory / 'est-ca.db'}"
        return
    async with Database(url) as fresh:
        yield fresh


async def bench_run(args: argparse.Namespace, plan: Plan, scratch: Path) -> dict[str, Any]:
    shared = shared_files(scratch / "ca", args.ca_key)
    profiles = profiles_for(scratch / "profiles", args.ca_key)
    shared = dataclasses.replace(shared, profile_dirs=(profiles,))
    spec = SignSpec(
        cert=shared.hierarchy.issuing_cert,
        chain=shared.hierarchy.issuing_chain,
        key=shared.hierarchy.issuing_key,
        passphrase=PASSPHRASE,
        profiles=profiles,
        base_url=shared.public_base_url,
        csrs=tuple(
            make_csr(ec.generate_private_key(ec.SECP256R1())).public_bytes(
                serialization.Encoding.DER
            )
            for _ in range(64)
        ),
    )
    bodies = scratch / "bodies"
    bodies.mkdir()
    load = Load(plan.client_processes)
    try:
        async with (
            database(args.database_url, scratch, args.instances) as url,
            running_cluster(
                scratch / "cluster", shared, url, args.instances, workers=args.workers
            ) as instances,
        ):
            bench = Bench(
                plan,
                scratch,
                shared,
                profiles,
                instances,
                load,
                profile=args.profile,
                profile_ocsp=args.profile_ocsp,
                plan_key=args.ca_key,
                workers=args.instances * args.workers,
            )
            crl = await measure(bench, spec, bodies)
            rss = [peak_rss_mb(pid) for pid in _family(bench.pids)]
    finally:
        load.close()
    return {
        "meta": {
            "commit": _commit(),
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "ca_key": args.ca_key,
            "database": "postgresql" if args.database_url else "sqlite",
            "instances": args.instances,
            "workers": args.workers,
            "clients": plan.clients,
            "client_processes": plan.client_processes,
            "repeat": plan.repeat,
            "enrollments": plan.enrollments,
            "seconds": plan.seconds,
            "cpus": os.cpu_count(),
            "quick": args.quick,
        },
        "paths": bench.results.summary(),
        "crl": crl,
        "peak_rss_mb": rss,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts: a CI smoke test")
    parser.add_argument("--ca-key", choices=CA_KEYS, default="rsa3072")
    parser.add_argument("--database-url", default="", help="PostgreSQL server (default SQLite)")
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument(
        "--workers", type=int, default=1, help="est-ca serve --workers N for each instance"
    )
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--repeat", type=int, help="default 3 (--quick 1)")
    parser.add_argument("--enrollments", type=int, help="per measurement: default 300 (quick 16)")
    parser.add_argument("--seconds", type=float, help="per timed measurement: 3 (quick 0.5)")
    parser.add_argument("--crl-entries", type=int, help="default 100000 (quick 2000)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument(
        "--enroll-only",
        action="store_true",
        help="only the signing ceilings and the enrollments (no cacerts, OCSP, CRL)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="py-spy flame graph (SVG) of the server during the first simpleenroll",
    )
    parser.add_argument(
        "--only-ocsp",
        action="store_true",
        help="only the OCSP paths (after 2 x --enrollments enrollments that make the target)",
    )
    parser.add_argument(
        "--profile-ocsp",
        type=Path,
        help="directory: py-spy flame graphs of the server during the first OCSP measurements",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    plan = Plan(
        repeat=args.repeat or (1 if quick else 3),
        enrollments=args.enrollments or (16 if quick else 300),
        seconds=args.seconds or (0.5 if quick else 3.0),
        crl_entries=args.crl_entries or (2000 if quick else 100_000),
        clients=args.clients,
        client_processes=args.client_processes,
        only_ocsp=args.only_ocsp,
        enroll_only=args.enroll_only,
    )
    with tempfile.TemporaryDirectory(prefix="est-ca-bench-") as scratch:
        report = asyncio.run(bench_run(args, plan, Path(scratch)))
    print(table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
