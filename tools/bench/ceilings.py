"""What the machine gives at best, measured in the same run as the service: the CA's own work for
one enrollment (CSR check, certificate build, signature) without HTTP or a database, and a bare
aiohttp app with the service's TLS context returning fixed bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import dataclasses
import datetime as dt
import multiprocessing
import sys
import time
from pathlib import Path

from aiohttp import web

from est_ca.ca.authority import CertificateAuthority
from est_ca.ca.building import IssuanceRequest
from est_ca.ca.certificates import Serial
from est_ca.ca.csr_policy import check_csr, parse_csr
from est_ca.ca.issuer import Issuer
from est_ca.ca.profiles import ProfileCatalogue
from est_ca.ca.publication import Publication
from est_ca.ca.signing import KeyFileSigner
from est_ca.config import shipped_config_dir
from est_ca.registration.identities import Identity, IdentityType
from est_ca.web.tls import server_context


@dataclasses.dataclass(frozen=True)
class SignSpec:
    """What one enrollment's CA work needs: the CA's files, the profiles and CSRs (DER)."""

    cert: Path
    chain: Path
    key: Path
    passphrase: bytes
    profiles: Path
    base_url: str
    csrs: tuple[bytes, ...]


class _Signing:
    def __init__(self, spec: SignSpec) -> None:
        ca = CertificateAuthority.load(
            spec.cert, spec.chain, KeyFileSigner.load(spec.key, spec.passphrase)
        )
        catalogue = ProfileCatalogue.load([shipped_config_dir() / "profiles", spec.profiles])
        profile = catalogue.get("system")
        assert profile is not None
        self.profile = profile
        self.issuer = Issuer(
            ca, Publication(base_url=spec.base_url, name_registration_authority=spec.base_url)
        )
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        self.identity = Identity.create(
            type=IdentityType.SYSTEM,
            organisation_name="Bench ApS",
            cvr="99999999",
            display_name="bench",
            created_at=now,
        )
        self.csrs = spec.csrs

    def one(self, index: int) -> None:
        """What a worker does for one enrollment: parse and check the CSR, build, sign."""
        checked = check_csr(parse_csr(self.csrs[index % len(self.csrs)]), self.profile)
        request = IssuanceRequest(
            serial=Serial.random(),
            identity=self.identity,
            profile=self.profile,
            key=checked.key,
            not_before=dt.datetime.now(dt.UTC).replace(microsecond=0),
        )
        self.issuer.produce(request)

    def loop(self, seconds: float) -> int:
        done = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.one(done)
            done += 1
        return done


def _sign_in_process(spec: SignSpec, seconds: float) -> tuple[int, float]:
    signing = _Signing(spec)
    cpu = time.process_time()
    return signing.loop(seconds), time.process_time() - cpu


def sign_rate(
    spec: SignSpec, seconds: float, threads: int = 0, processes: int = 0
) -> tuple[float, float]:
    """Enrollments' CA work per second on `threads` threads of this process or `processes`
    processes (the key loaded before the clock starts, in each process), and the CPU
    milliseconds one took (a figure a busy machine does not change much)."""
    if threads:
        signing = _Signing(spec)
        signing.one(0)  # warm: the builder's throwaway key, lazy imports
        cpu = time.process_time()
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            counts = list(pool.map(signing.loop, [seconds] * threads))
        used = time.process_time() - cpu
    else:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(processes, mp_context=context) as pool:
            # Each process spends its own start-up outside its `seconds` of signing.
            parts = list(pool.map(_sign_in_process, [spec] * processes, [seconds] * processes))
        counts = [count for count, _ in parts]
        used = sum(cpu for _, cpu in parts)
    return sum(counts) / seconds, used / max(sum(counts), 1) * 1000


# -- the bare app ------------------------------------------------------------------------------


def bare_app(bodies: Path) -> web.Application:
    """GET or POST /<name> answers the bytes of the file `name` (read once, at its first
    request): no logging, no middleware, nothing but aiohttp."""
    answers: dict[str, bytes] = {}

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        name = request.match_info["name"]
        if name not in answers:
            answers[name] = (bodies / name).read_bytes()
        return web.Response(body=answers[name])

    app = web.Application()
    app.router.add_route("*", "/{name}", answer)
    return app


async def serve_bare(args: argparse.Namespace) -> None:
    context = server_context(args.cert, args.key, client_ca_pem=args.client_ca.read_bytes())
    runner = web.AppRunner(bare_app(args.bodies), access_log=None)
    await runner.setup()
    # Several bare processes (to match `serve --workers N`) each bind the ports with
    # SO_REUSEPORT; the kernel spreads the connections among them.
    reuse = bool(args.reuse_port) or None
    await web.TCPSite(
        runner, "127.0.0.1", args.https_port, ssl_context=context, reuse_port=reuse
    ).start()
    await web.TCPSite(runner, "127.0.0.1", args.http_port, reuse_port=reuse).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="the bare app (run by tools.bench)")
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--client-ca", type=Path, required=True)
    parser.add_argument("--bodies", type=Path, required=True)
    parser.add_argument("--https-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--reuse-port", action="store_true")
    args = parser.parse_args()
    try:
        asyncio.run(serve_bare(args))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
