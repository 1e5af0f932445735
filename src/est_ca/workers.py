"""CPU work off the event loop.

Signing, CSR checks and one-time-code hashing run on a thread pool: cryptography and hashlib
release the GIL while they compute, so threads use both cores while the event loop keeps
serving I/O.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """`items` a bounded slice at a time: bulk work (a worker's job, a statement's rows) that
    lets everything else in between slices."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def default_threads() -> int:
    """How many worker threads sign at once: also the size of a token signer's session pool."""
    return max(2, os.cpu_count() or 2)


class Workers:
    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads or default_threads()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.threads, thread_name_prefix="est-ca-cpu"
        )
        self._processes: concurrent.futures.ProcessPoolExecutor | None = None
        # Submitted and not finished (the metrics' queue depth); changed on the loop only.
        self.pending = 0

    async def run(self, function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        loop = asyncio.get_running_loop()
        self.pending += 1
        try:
            return await loop.run_in_executor(self._pool, lambda: function(*args, **kwargs))
        finally:
            self.pending -= 1

    async def run_in_process(self, function: Callable[..., R], *args: object) -> R:
        """For work that holds the GIL for long (large CRLs): a separate process, started on
        first use. `function` and its arguments must be picklable; no keys go there."""
        if self._processes is None:
            # Starting a process blocks for a while: do it on a worker thread, not the loop.
            self._processes = await self.run(self._start_processes)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._processes, function, *args)

    @staticmethod
    def _start_processes() -> concurrent.futures.ProcessPoolExecutor:
        processes = concurrent.futures.ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn")
        )
        processes.submit(int).result()  # the child is up before the loop first uses it
        return processes

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._processes is not None:
            self._processes.shutdown(wait=True, cancel_futures=True)
