"""The load generator: HTTP clients in processes of their own, apart from the server's event loop.

A `Job` is a list of prepared requests (bodies, headers and, for mTLS, a client certificate
each: everything costly is made before the clock starts) and how to send them: `clients`
coroutines at once, each request on a new connection or over kept-alive ones, either every
request once (`duration` 0) or round and round until `duration` seconds have passed or the
`stop_file` appears. `run` splits a job over `processes` processes and merges what they saw.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import multiprocessing
import os
import ssl
import time
from pathlib import Path

import aiohttp


@dataclasses.dataclass(frozen=True)
class Request:
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    # For mTLS: the client's certificate and key files (PEM), loaded before the clock starts.
    client_cert: tuple[str, str] | None = None


@dataclasses.dataclass(frozen=True)
class Job:
    # Request i goes to urls[i % len(urls)] (several instances: spread round-robin).
    urls: tuple[str, ...]
    method: str
    requests: tuple[Request, ...]
    clients: int
    keep_alive: bool
    trust: str | None = None
    duration: float = 0.0
    stop_file: str | None = None
    keep_bodies: bool = False


@dataclasses.dataclass
class Outcome:
    """What the clients saw: each request's start (time.monotonic, the same clock in every
    process on Linux) and latency, statuses, and the client processes' CPU seconds."""

    starts: list[float]
    latencies: list[float]
    statuses: collections.Counter[str]
    began: float
    ended: float
    client_cpu: float
    bodies: dict[int, bytes]
    # The first body answered with each failing status (what the service said was wrong).
    samples: dict[str, bytes] = dataclasses.field(default_factory=dict)

    @property
    def done(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.done / (self.ended - self.began) if self.ended > self.began else 0.0


def _context(job: Job, request: Request) -> ssl.SSLContext | bool:
    if not job.urls[0].startswith("https:"):
        return True
    context = ssl.create_default_context(cafile=job.trust)
    if request.client_cert is not None:
        context.load_cert_chain(*request.client_cert)
    return context


async def _drive(job: Job, indices: list[int]) -> Outcome:
    outcome = Outcome([], [], collections.Counter(), 0.0, 0.0, 0.0, {})
    mtls = any(job.requests[i].client_cert for i in indices)
    contexts = {i: _context(job, job.requests[i]) for i in indices} if mtls else {}
    shared = _context(job, Request())
    connector = aiohttp.TCPConnector(
        limit=0, force_close=not job.keep_alive, ssl=shared if not mtls else True
    )
    stopped = False
    queue = collections.deque(indices)

    async def watch() -> None:
        nonlocal stopped
        while job.stop_file is not None and not stopped:
            if await asyncio.to_thread(Path(job.stop_file).exists):
                stopped = True
            await asyncio.sleep(0.05)

    async def client(deadline: float) -> None:
        while queue and not stopped and (not job.duration or time.monotonic() < deadline):
            index = queue.popleft()
            if job.duration:
                queue.append(index)  # round and round
            request = job.requests[index]
            started = time.monotonic()
            try:
                async with session.request(
                    job.method,
                    job.urls[index % len(job.urls)],
                    data=request.body or None,
                    headers=dict(request.headers),
                    ssl=contexts.get(index, shared) if mtls else shared,
                ) as response:
                    body = await response.read()
                    status = str(response.status)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                status, body = type(exc).__name__, b""
            outcome.starts.append(started)
            outcome.latencies.append(time.monotonic() - started)
            outcome.statuses[status] += 1
            if job.keep_bodies and status == "200":
                outcome.bodies[index] = body
            elif status not in ("200", "304"):
                outcome.samples.setdefault(status, body[:300])

    timeout = aiohttp.ClientTimeout(total=120)
    cpu = time.process_time()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        watcher = asyncio.create_task(watch())
        outcome.began = time.monotonic()
        deadline = outcome.began + job.duration
        await asyncio.gather(*(client(deadline) for _ in range(job.clients)))
        outcome.ended = time.monotonic()
        stopped = True
        await watcher
    outcome.client_cpu = time.process_time() - cpu
    return outcome


def _in_process(job: Job, indices: list[int]) -> Outcome:
    return asyncio.run(_drive(job, indices))


class Load:
    """A pool of client processes (spawned once: their start-up is not measured)."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._pool = concurrent.futures.ProcessPoolExecutor(
            processes, mp_context=multiprocessing.get_context("spawn")
        )

    def warm(self) -> None:
        list(self._pool.map(_warm, range(self.processes)))

    def close(self) -> None:
        self._pool.shutdown()

    async def run(self, job: Job) -> Outcome:
        """The job over every process (its requests dealt out round-robin, its clients split)."""
        loop = asyncio.get_running_loop()
        parts = []
        for p in range(self.processes):
            if job.duration:  # every process goes round all of them, from its own place
                indices = [(p + i) % len(job.requests) for i in range(len(job.requests))]
            else:  # each request once: dealt out
                indices = list(range(p, len(job.requests), self.processes))
            clients = job.clients // self.processes + (p < job.clients % self.processes)
            if indices and clients:
                part = dataclasses.replace(job, clients=clients)
                parts.append(loop.run_in_executor(self._pool, _in_process, part, indices))
        outcomes = await asyncio.gather(*parts)
        return Outcome(
            starts=[s for o in outcomes for s in o.starts],
            latencies=[t for o in outcomes for t in o.latencies],
            statuses=sum((o.statuses for o in outcomes), collections.Counter()),
            began=min(o.began for o in outcomes),
            ended=max(o.ended for o in outcomes),
            client_cpu=sum(o.client_cpu for o in outcomes),
            bodies={k: v for o in outcomes for k, v in o.bodies.items()},
            samples={k: v for o in outcomes for k, v in o.samples.items()},
        )


def _warm(_: int) -> int:
    return os.getpid()


def write_client_files(directory: Path, index: int, cert_pem: bytes, key_pem: bytes) -> Request:
    """A client certificate and key as the files ssl loads (before the clock starts)."""
    cert, key = directory / f"client-{index}.pem", directory / f"client-{index}.key"
    cert.write_bytes(cert_pem)
    key.write_bytes(key_pem)
    return Request(client_cert=(str(cert), str(key)))
