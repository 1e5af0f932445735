"""Does the service's memory grow under a steady mixed load? A soak of `--minutes` (10).

    .venv/bin/python -m tools.bench_soak [--minutes 10] [--ca-key rsa3072|p256]
        [--database-url postgresql://postgres@127.0.0.1:5432/postgres] [--json out.json]

Starts `est-ca serve` on a fresh data directory like `tools.bench` and then repeats rounds
until the time is up: a batch of simpleenroll (Basic, new connection each), OCSP GET of a
pre-produced answer and OCSP POST with fresh nonces for a few seconds each, and one revocation
through the admin API (so the CRL is made again and caches are invalidated). After each round
it reads the server processes' resident memory (VmRSS, with their children), open file
descriptors and threads from /proc. A leak shows as a slope after the warm-up (the first
`--warm-up` minutes: caches filling, the allocator settling), so the slope and the growth from
the end of the warm-up to the end are what it reports.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import json
import statistics
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from est_ca.ca.publication import OCSP_PATH
from tools.bench.__main__ import (
    EST,
    OCSP_REQUEST,
    Bench,
    Plan,
    _enroll_request,
    _issued,
    _ocsp_with_nonce,
    database,
)
from tools.bench.load import Job, Load, Request
from tools.bench_floods import make_csr
from tools.cluster import (
    CA_KEYS,
    ocsp_request,
    profiles_for,
    revoke_through_admin,
    running_cluster,
    shared_files,
)


@dataclasses.dataclass(frozen=True)
class Sample:
    minute: float
    rss_mb: float
    fds: int
    threads: int
    enrollments: int
    ocsp_requests: int
    errors: int


def _status_field(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def resources(pids: list[int]) -> tuple[float, int, int]:
    """Resident MB, open descriptors and threads of the server processes."""
    rss = sum(_status_field(pid, "VmRSS") for pid in pids) / 1024
    fds = sum(len(list(Path(f"/proc/{pid}/fd").iterdir())) for pid in pids)
    threads = sum(_status_field(pid, "Threads") for pid in pids)
    return rss, fds, threads


def slope_mb_per_minute(samples: list[Sample]) -> float:
    """Least-squares slope of RSS over time."""
    if len(samples) < 2:
        return 0.0
    return statistics.linear_regression(
        [s.minute for s in samples], [s.rss_mb for s in samples]
    ).slope


async def soak(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    shared = shared_files(scratch / "ca", args.ca_key)
    profiles = profiles_for(scratch / "profiles", args.ca_key)
    shared = dataclasses.replace(shared, profile_dirs=(profiles,))
    # Orders for the most rounds that fit: a round lasts at least its two OCSP measurements.
    rounds = int(args.minutes * 60 / (2 * args.ocsp_seconds)) + 2
    plan = Plan(1, args.per_round, args.ocsp_seconds, 0, args.clients, 2)
    load = Load(2)
    samples: list[Sample] = []
    try:
        async with (
            database(args.database_url, scratch, 1) as url,
            running_cluster(scratch / "cluster", shared, url, 1) as instances,
        ):
            bench = Bench(plan, scratch, shared, profiles, instances, load)
            orders = await bench.place_orders(rounds * args.per_round)
            issuer = x509.load_pem_x509_certificate(shared.hierarchy.issuing_cert.read_bytes())
            load.warm()
            began = time.monotonic()
            issued: list[x509.Certificate] = []
            enrolled = asked = errors = 0
            async with aiohttp.ClientSession() as session:
                while time.monotonic() - began < args.minutes * 60 and orders:
                    batch, orders = orders[: args.per_round], orders[args.per_round :]
                    enroll = Job(
                        urls=bench.urls(f"{EST}/simpleenroll"),
                        method="POST",
                        requests=tuple(
                            _enroll_request(o, make_csr(ec.generate_private_key(ec.SECP256R1())))
                            for o in batch
                        ),
                        clients=plan.clients,
                        keep_alive=False,
                        trust=str(shared.tls_cert),
                        keep_bodies=True,
                    )
                    outcome = await load.run(enroll)
                    enrolled += outcome.statuses.get("200", 0)
                    errors += outcome.done - outcome.statuses.get("200", 0)
                    fresh = [_issued(body) for body in outcome.bodies.values()]
                    issued.extend(fresh)
                    target = fresh[0]
                    get_path = "/" + urllib.parse.quote(
                        base64.b64encode(ocsp_request(target, issuer)).decode(), safe=""
                    )
                    nonces = tuple(
                        Request(
                            body=_ocsp_with_nonce(target, issuer),
                            headers=(("Content-Type", OCSP_REQUEST),),
                        )
                        for _ in range(500)
                    )
                    for job in (
                        Job(bench.urls(OCSP_PATH + get_path, https=False), "GET", (Request(),),
                            plan.clients, True, duration=plan.seconds),
                        Job(bench.urls(OCSP_PATH, https=False), "POST", nonces, plan.clients,
                            True, duration=plan.seconds),
                    ):  # fmt: skip
                        outcome = await load.run(job)
                        asked += outcome.done
                        errors += outcome.done - outcome.statuses.get("200", 0)
                    await revoke_through_admin(
                        session, instances[0], bench.token, issued.pop(0).serial_number,
                        shared.tls_cert,
                    )  # fmt: skip
                    rss, fds, threads = resources(bench.pids)
                    sample = Sample(
                        (time.monotonic() - began) / 60, rss, fds, threads, enrolled, asked, errors
                    )
                    samples.append(sample)
                    print(
                        f"{sample.minute:5.1f} min  RSS {rss:6.1f} MB  fds {fds:4d}  "
                        f"threads {threads:3d}  enrolled {enrolled}  OCSP {asked}  "
                        f"errors {errors}",
                        flush=True,
                    )
    finally:
        load.close()
    settled = [s for s in samples if s.minute >= args.warm_up] or samples
    return {
        "ca_key": args.ca_key,
        "database": "postgresql" if args.database_url else "sqlite",
        "minutes": args.minutes,
        "samples": [dataclasses.asdict(s) for s in samples],
        "rss_after_warm_up_mb": settled[0].rss_mb,
        "rss_at_end_mb": samples[-1].rss_mb,
        "rss_peak_mb": max(s.rss_mb for s in samples),
        "slope_after_warm_up_mb_per_minute": slope_mb_per_minute(settled),
        "fds_after_warm_up": settled[0].fds,
        "fds_at_end": samples[-1].fds,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--warm-up", type=float, default=2.0, help="minutes not judged")
    parser.add_argument("--per-round", type=int, default=100, help="enrollments per round")
    parser.add_argument("--ocsp-seconds", type=float, default=4.0, help="OCSP GET, POST per round")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--ca-key", choices=CA_KEYS, default="rsa3072")
    parser.add_argument("--database-url", default="", help="PostgreSQL server (default SQLite)")
    parser.add_argument("--json", type=Path, help="write the samples and figures here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="est-ca-soak-") as scratch:
        report = asyncio.run(soak(args, Path(scratch)))
    print(
        f"RSS after warm-up {report['rss_after_warm_up_mb']:.1f} MB, at end "
        f"{report['rss_at_end_mb']:.1f} MB, peak {report['rss_peak_mb']:.1f} MB; slope after "
        f"warm-up {report['slope_after_warm_up_mb_per_minute']:+.2f} MB/min; descriptors "
        f"{report['fds_after_warm_up']} -> {report['fds_at_end']}"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
