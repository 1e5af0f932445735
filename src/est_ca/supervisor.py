"""`est-ca serve --workers N`: N processes serve the same listeners, watched by their parent.

One process's event loop is one core; signing already runs on threads (workers.py), but
parsing, TLS and the handlers do not. With several workers:

- The parent does once what a start does once: it opens the service (creating the demo CA,
  keys and database when the embedded default lacks them, migrating, anchoring the audit
  trail, issuing the listener's TLS certificate), recovers interrupted issuances, binds the
  three listeners, places the demo order and prints its recipe, then closes the service and
  forks the workers. They inherit the listening sockets and share their accept queues: the
  kernel hands each connection to one of them, and none is lost while a worker restarts.
- Each worker opens the service itself (its own database pool, CA key, caches) and serves.
  Work done for all runs once: on PostgreSQL as for a cluster of instances, and on SQLite
  through the same two mechanisms made cross-process (`Store.exclusive` and `Store.lease`
  take a lock file beside the database), so one worker makes each CRL and renews each
  responder certificate (the others adopt them) and one holds the maintenance lease.
- The parent restarts a worker that dies (giving up, and stopping, when they keep dying),
  stops all on SIGTERM or SIGINT, and exits 0 only when every worker stopped cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from typing import TextIO

import structlog

from est_ca import demo, logs
from est_ca.config import Settings
from est_ca.service import Service
from est_ca.web.connections import quiet_accept_errors

_log = structlog.get_logger(__name__)

# A worker that dies more often than this is not helped by restarting it.
RESTARTS_ALLOWED = 5
RESTART_WINDOW_SECONDS = 60.0
# How long stopping workers may take before they are killed.
STOP_GRACE_SECONDS = 30.0
_SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT}


def run(settings: Settings, command: str, out: TextIO | None = None) -> int:
    """`serve` with `settings.service.workers` worker processes; the exit status."""
    logs.configure(settings.logging.format, settings.logging.level)
    # Signals wait until asked for (sigtimedwait): none can interrupt the preparation half
    # way, and a SIGTERM meanwhile stops the start before any worker begins.
    signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        sockets = asyncio.run(_prepare(settings, command, out or sys.stdout))
        if _stop_requested():
            return 0
        return Supervisor(settings, sockets).run()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)


async def _prepare(settings: Settings, command: str, out: TextIO) -> list[socket.socket]:
    """What a start does once, before there are workers; the bound listeners."""
    from est_ca import server

    service = await Service.open(settings, create=True)
    try:
        server.warn_unpublished_urls(service)
        await service.recover()
        host = settings.service.host
        sockets = server.bind_listeners(
            settings, host, settings.service.port, settings.service.http_port
        )
        try:
            if settings.service.demo:
                identity, placed = await demo.first_demo_order(service)
                https_url = server.socket_url("https", sockets[0])
                out.write(demo.recipe(service, https_url, identity, placed, command))
                out.flush()
        except BaseException:
            for bound in sockets:
                bound.close()
            raise
        return sockets
    finally:
        await service.close()


def _stop_requested() -> bool:
    pending = signal.sigpending()
    return signal.SIGTERM in pending or signal.SIGINT in pending


class Supervisor:
    """The parent of the workers: starts them, restarts one that dies, stops them all."""

    def __init__(self, settings: Settings, sockets: Sequence[socket.socket]) -> None:
        self.settings = settings
        self.sockets = list(sockets)
        self.count = settings.service.workers
        self.children: dict[int, int] = {}  # pid -> worker index
        self._restarts: list[float] = []
        self._failed = False

    def run(self) -> int:
        for index in range(self.count):
            self._spawn(index)
        _log.info("workers started", workers=self.count, pids=sorted(self.children))
        while True:
            info = signal.sigtimedwait(_SIGNALS, 1.0)
            if info is not None and info.si_signo in (signal.SIGTERM, signal.SIGINT):
                _log.info("stopping", workers=len(self.children))
                return self._stop_all()
            for pid, index, status in self._reap():
                if _stop_requested():
                    # A SIGTERM to the whole group (systemd, Ctrl-C) reached a worker first.
                    _log.info("stopping", workers=len(self.children))
                    return self._stop_all()
                _log.error("worker ended; restarting it", worker=index, pid=pid, status=status)
                if not self._may_restart():
                    _log.error(
                        "workers keep dying; stopping",
                        restarts=len(self._restarts),
                        seconds=RESTART_WINDOW_SECONDS,
                    )
                    self._failed = True
                    return self._stop_all()
                self._spawn(index)

    def _may_restart(self) -> bool:
        now = time.monotonic()
        self._restarts = [t for t in self._restarts if now - t < RESTART_WINDOW_SECONDS]
        self._restarts.append(now)
        return len(self._restarts) <= RESTARTS_ALLOWED

    def _reap(self) -> list[tuple[int, int, int]]:
        """The workers that ended since the last look: pid, index, exit status."""
        ended = []
        while self.children:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            index = self.children.pop(pid, None)
            if index is not None:
                ended.append((pid, index, os.waitstatus_to_exitcode(wait_status)))
        return ended

    def _stop_all(self) -> int:
        """SIGTERM to every worker, SIGKILL to those still running after the grace period;
        0 when every worker stopped with status 0."""
        clean = not self._failed
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while self.children:
            for pid, index, status in self._reap():
                if status != 0:
                    _log.error("worker stopped with an error", worker=index, pid=pid, status=status)
                    clean = False
            remaining = deadline - time.monotonic()
            if not self.children:
                break
            if remaining <= 0:
                for pid in self.children:
                    _log.error("worker did not stop; killing it", pid=pid)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                clean = False
                deadline = time.monotonic() + STOP_GRACE_SECONDS
            signal.sigtimedwait({signal.SIGCHLD}, min(max(remaining, 0.05), 1.0))
        for bound in self.sockets:
            bound.close()
        _log.info("stopped", clean=clean)
        return 0 if clean else 1

    def _spawn(self, index: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid:
            self.children[pid] = index
            return
        code = 1
        try:
            structlog.contextvars.bind_contextvars(worker=index)
            _die_with(parent)
            code = asyncio.run(_serve_worker(self.settings, self.sockets))
        except BaseException:
            _log.exception("worker failed")
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)


def _die_with(parent: int) -> None:
    """A worker gets SIGTERM when its parent ends, however it ends (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent ended before the line above
        os.kill(os.getpid(), signal.SIGTERM)


async def _serve_worker(settings: Settings, sockets: Sequence[socket.socket]) -> int:
    """One worker: the service opened anew in this process, served on the parent's sockets
    until SIGTERM or SIGINT."""
    from est_ca.server import Server

    loop = asyncio.get_running_loop()
    quiet_accept_errors(loop)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    # The handlers are in place: the signals the parent held back may arrive now.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
    service = await Service.open(settings)
    server = Server(service)
    try:
        await server.start(settings.service.host, 0, 0, sockets=sockets)
        await stop.wait()
        _log.info("stopping")
    finally:
        await server.stop()
        await service.close()
    return 0
