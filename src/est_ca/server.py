"""Listeners and the `serve` loop: HTTPS for EST, plain HTTP for relying parties."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import signal
import socket
import sys
from collections.abc import Sequence
from typing import TextIO

import structlog
from aiohttp import web
from cryptography.hazmat.primitives.serialization import Encoding

from est_ca import demo, logs
from est_ca.config import Settings
from est_ca.errors import ListenerUnavailable
from est_ca.service import Service
from est_ca.web.app import admin_app, est_app, plain_http_app
from est_ca.web.connections import (
    CappedListener,
    ConnectionCap,
    HandshakeTimedSite,
    quiet_accept_errors,
)
from est_ca.web.quiet import QuietAppRunner
from est_ca.web.tls import server_context

_log = structlog.get_logger(__name__)


BACKLOG = 512


@dataclasses.dataclass(frozen=True)
class Listener:
    """One of the ports `serve` listens on, with the three ways an operator changes it."""

    name: str
    setting: str
    variable: str
    option: str

    def bind(self, host: str, port: int, cap: ConnectionCap) -> socket.socket:
        try:
            return CappedListener.listen_on(host, port, cap, BACKLOG)
        except OSError as exc:
            cause = (
                "is in use (another est-ca serve?)"
                if exc.errno == errno.EADDRINUSE
                else f"cannot be listened on: {exc.strerror}"
            )
            raise ListenerUnavailable(
                f"port {port} on {host} ({self.name}) {cause}; choose another with "
                f"{self.setting} in the configuration, {self.variable}=PORT or {self.option} PORT"
            ) from None


EST_LISTENER = Listener("EST over HTTPS", "service.port", "EST_CA_SERVICE_PORT", "--port")
HTTP_LISTENER = Listener(
    "CRL and OCSP over HTTP", "service.http_port", "EST_CA_SERVICE_HTTP_PORT", "--http-port"
)
ADMIN_LISTENER = Listener("admin API", "admin.port", "EST_CA_ADMIN_PORT", "--admin-port")


def bind_listeners(
    settings: Settings,
    host: str,
    https_port: int,
    http_port: int,
    admin_port: int | None = None,
) -> list[socket.socket]:
    """The EST, plain HTTP and admin listening sockets, in that order; all or none."""
    cap = ConnectionCap(settings.limits.max_connections_per_source)
    sockets: list[socket.socket] = []
    try:
        for listener, port in (
            (EST_LISTENER, https_port),
            (HTTP_LISTENER, http_port),
            (ADMIN_LISTENER, settings.admin.port if admin_port is None else admin_port),
        ):
            sockets.append(listener.bind(host, port, cap))
    except BaseException:
        for bound in sockets:
            bound.close()
        raise
    return sockets


def socket_url(scheme: str, sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


class Server:
    """The listeners of one running instance; `start` binds, `stop` drains and closes."""

    def __init__(self, service: Service) -> None:
        if service.ca is None or service.publishing is None:
            raise ValueError("serving needs the service opened with its CA")
        self.service = service
        self._runners: list[web.AppRunner] = []
        self._maintenance: asyncio.Task[None] | None = None
        self.https_url = ""
        self.http_url = ""
        self.admin_url = ""

    async def start(
        self,
        host: str,
        https_port: int,
        http_port: int,
        admin_port: int | None = None,
        *,
        sockets: Sequence[socket.socket] | None = None,
    ) -> None:
        """Bind the three listeners and serve on them; a worker of `serve --workers N` passes
        the `sockets` its parent bound (`bind_listeners`) instead."""
        files = self.service.files
        ca = self.service.ca
        publishing = self.service.publishing
        assert ca is not None
        assert publishing is not None
        settings = self.service.settings
        limits = settings.limits
        if sockets is None:
            # Bound before anything starts, so a port in use stops the start with nothing to undo.
            sockets = bind_listeners(settings, host, https_port, http_port, admin_port)
        https_socket, http_socket, admin_socket = sockets
        await publishing.start()
        self._maintenance = asyncio.create_task(self.service.run_maintenance(), name="maintenance")
        assert self.service.authority is not None
        # Client certificates of every label and CA generation authenticate (the store then
        # decides whether each is ours and usable).
        chain_pem = b"".join(
            certificate.public_bytes(Encoding.PEM) for certificate in self.service.authority.trusted
        )
        context = server_context(files.tls_cert, files.tls_key, client_ca_pem=chain_pem)
        admin_ca = (
            settings.data_path(settings.admin.client_ca_file, "").read_bytes()
            if settings.admin.client_ca_file
            else None
        )
        # Administrators' certificates (the admin trust anchor) and, for an organisation's IdM,
        # system certificates our issuing CAs issued: admin/tokens.py tells them apart. Our
        # issuing CAs are anchors themselves (partial chain), never the root above them: a
        # certificate of another CA under that root would be neither ours nor an admin's, yet
        # taken for an administrator's.
        issuing_pem = b"".join(
            certificate.public_bytes(Encoding.PEM) for certificate in self.service.authority.issuing
        )
        admin_context = server_context(
            files.tls_cert,
            files.tls_key,
            client_ca_pem=(admin_ca + b"\n" if admin_ca else b"") + issuing_pem,
            check_time=True,
            partial_chain=True,
        )
        for app, sock, ssl_context in (
            (est_app(self.service), https_socket, context),
            (plain_http_app(self.service), http_socket, None),
            (admin_app(self.service), admin_socket, admin_context),
        ):
            runner = QuietAppRunner(
                app,
                access_log=None,
                handle_signals=False,
                # aiohttp closes a connection that has not sent a whole request's headers (or,
                # between requests, anything) within this: slow-header clients are cut off.
                keepalive_timeout=limits.request_timeout_seconds,
                max_line_size=limits.max_header_bytes,
                max_field_size=limits.max_header_bytes,
                # Nobody compresses EST or OCSP bodies; a compressed one is not read unpacked.
                auto_decompress=False,
                # After answering without reading the whole body (a refusal), wait this long
                # for the rest before closing (aiohttp's default of 10 s lets a client hold on).
                lingering_time=1.0,
            )
            await runner.setup()
            await HandshakeTimedSite(
                runner,
                sock,
                ssl_context=ssl_context,
                handshake_timeout=limits.request_timeout_seconds,
                backlog=BACKLOG,
            ).start()
            self._runners.append(runner)
        self.https_url = socket_url("https", https_socket)
        self.http_url = socket_url("http", http_socket)
        self.admin_url = socket_url("https", admin_socket)
        _log.info(
            "listening",
            est=self.https_url + "/.well-known/est/",
            http=self.http_url,
            admin=self.admin_url + "/admin/v1/",
        )

    async def stop(self) -> None:
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
            self._maintenance = None
        if self.service.publishing is not None:
            await self.service.publishing.stop()


def warn_unpublished_urls(service: Service) -> None:
    for certificate, urls in service.unpublished_ca_urls():
        _log.warning(
            "a CA certificate names URLs this service does not publish; a CA certificate "
            "cannot change: keep those URLs reachable, or set publication.base_url back",
            ca=certificate.subject.rfc4514_string(),
            urls=urls,
            base_url=service.publication.base_url,
        )


async def serve(settings: Settings, *, command: str, out: TextIO | None = None) -> int:
    """Run until SIGINT or SIGTERM. Prints the demo recipe to `out` when demo mode is on;
    `command` is how the operator runs this est-ca, for the commands the recipe prints."""
    out = out or sys.stdout
    loop = asyncio.get_running_loop()
    quiet_accept_errors(loop)
    # From the first moment: a SIGTERM while starting stops the start cleanly too.
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    service = await Service.open(settings, create=True)
    server = Server(service)
    try:
        warn_unpublished_urls(service)
        await service.recover()
        await server.start(settings.service.host, settings.service.port, settings.service.http_port)
        if settings.service.demo:
            identity, placed = await demo.first_demo_order(service)
            out.write(demo.recipe(service, server.https_url, identity, placed, command))
            out.flush()
        await stop.wait()
        _log.info("stopping")
    finally:
        await server.stop()
        await service.close()
    return 0


def run(settings: Settings, command: str) -> int:
    if settings.service.workers > 1:
        from est_ca import supervisor

        return supervisor.run(settings, command)
    logs.configure(settings.logging.format, settings.logging.level)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(serve(settings, command=command))
    return 0
