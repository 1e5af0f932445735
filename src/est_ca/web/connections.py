"""Connections before they are requests: a per-address cap, a handshake deadline, quiet EMFILE.

aiohttp's timeouts start once TLS is up, and asyncio gives a TLS handshake 60 s: a client that
connects and sends nothing holds a file descriptor for a minute, and a few hundred of them take
every listener down. Three bounds, all before any request exists:

- `ConnectionCap` counts open connections per source address over all listeners; the listening
  socket (`CappedListener.accept`) closes one over the cap as it is accepted, before asyncio
  or TLS sees it, so it costs a file descriptor for microseconds, not a handshake's worth.
- `HandshakeTimedSite` gives the TLS handshake (and the closing TLS shutdown) the request
  timeout instead of asyncio's 60 s and 30 s.
- When the process runs out of file descriptors anyway (many addresses), asyncio reports
  every failed accept with a traceback, up to `backlog` times per listener and second.
  `CappedListener` reports one per pause, and `quiet_accept_errors` logs them at most once a
  second with a count.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import math
import socket
import time
import weakref
from typing import Any

import structlog
from aiohttp import web

_log = structlog.get_logger("est_ca.connections")

# What asyncio's selector loop treats as "out of resources": it stops accepting on that
# listener for a second (asyncio.constants.ACCEPT_RETRY_DELAY) and reports the error.
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# The message asyncio's _accept_connection reports those errors with.
ACCEPT_ERROR_MESSAGE = "socket.accept() out of system resource"
# Turned-away connections handled in one accept() call before the event loop gets a turn.
_REFUSALS_PER_ACCEPT = 64


class Tally:
    """Counts occurrences of one event and logs them at most once per `interval` seconds.

    The first occurrence is logged at once; those that follow within the interval are counted
    and logged together when it ends, so a flood writes one line a second and none is lost.
    """

    def __init__(self, event: str, by: str, interval: float = 1.0) -> None:
        self._event = event
        self._by = by
        self._interval = interval
        self._counts: collections.Counter[str] = collections.Counter()
        self._last = -math.inf
        self._flush_scheduled = False

    def note(self, key: str) -> None:
        self._counts[key] += 1
        if self._flush_scheduled:
            return
        wait = self._last + self._interval - time.monotonic()
        if wait <= 0:
            self._flush()
        else:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_later(wait, self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._counts:
            return
        _log.warning(
            self._event,
            count=self._counts.total(),
            **{self._by: dict(self._counts.most_common(5))},
        )
        self._counts.clear()
        self._last = time.monotonic()


class ConnectionCap:
    """Open connections per source address, shared by an instance's listeners."""

    def __init__(self, per_source: int) -> None:
        self.per_source = per_source
        self._open: collections.Counter[str] = collections.Counter()
        self._refused = Tally("connections over the per-address cap closed", by="sources")

    def admit(self, source: str) -> bool:
        if self._open[source] >= self.per_source:
            self._refused.note(source)
            return False
        self._open[source] += 1
        return True

    def release(self, source: str) -> None:
        self._open[source] -= 1
        if self._open[source] <= 0:
            del self._open[source]


class _Connection(socket.socket):
    """An accepted connection that gives its address's place back when it is closed.

    asyncio closes a transport's socket with close(); should one ever be dropped without it,
    the place is given back when the socket is collected (a weakref finalizer runs once).
    """

    release: weakref.finalize  # type: ignore[type-arg]

    def close(self) -> None:
        super().close()
        self.release()


class CappedListener(socket.socket):
    """A listening socket whose accept() enforces a `ConnectionCap`.

    asyncio's selector loop calls `accept()` on the very socket given to create_server
    (`_accept_connection`): a connection refused here is closed before a transport, a
    protocol or a TLS handshake exists for it.
    """

    cap: ConnectionCap
    _resting_until: float

    @classmethod
    def listen_on(cls, host: str, port: int, cap: ConnectionCap, backlog: int) -> CappedListener:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        plain = socket.create_server((host, port), family=family, backlog=backlog)
        listener = cls(plain.family, plain.type, plain.proto, fileno=plain.detach())
        listener.cap = cap
        listener._resting_until = -math.inf
        return listener

    def accept(self) -> tuple[socket.socket, Any]:
        for _ in range(_REFUSALS_PER_ACCEPT):
            plain, address = self._accept_plain()
            source = str(address[0])
            if self.cap.admit(source):
                return self._connection(plain, source), address
            plain.close()
        # asyncio ends this round on BlockingIOError; the rest wait for the next loop turn.
        raise BlockingIOError(errno.EAGAIN, "over the cap; more later")

    def _accept_plain(self) -> tuple[socket.socket, Any]:
        # After a resource error asyncio stops listening for a second but still calls accept()
        # up to `backlog` more times in the same round, each a logged traceback and another
        # retry timer: one error per pause is enough.
        if time.monotonic() < self._resting_until:
            raise BlockingIOError(errno.EAGAIN, "resting after running out of resources")
        try:
            return super().accept()
        except OSError as exc:
            if exc.errno in RESOURCE_ERRNOS:
                self._resting_until = time.monotonic() + 0.5
            raise

    def _connection(self, plain: socket.socket, source: str) -> _Connection:
        """The accepted socket as a `_Connection` (same descriptor, same blocking mode)."""
        blocking = plain.getblocking()
        connection = _Connection(plain.family, plain.type, plain.proto, fileno=plain.detach())
        connection.setblocking(blocking)
        connection.release = weakref.finalize(connection, self.cap.release, source)
        connection.release.atexit = False
        return connection


class HandshakeTimedSite(web.SockSite):
    """aiohttp's SockSite, with the TLS handshake and shutdown given `handshake_timeout`.

    SockSite.start does not pass asyncio's ssl_handshake_timeout; this is its start with it.
    """

    __slots__ = ("_handshake_timeout",)

    def __init__(
        self,
        runner: web.BaseRunner,
        sock: socket.socket,
        *,
        ssl_context: Any,
        handshake_timeout: float,
        backlog: int,
    ) -> None:
        super().__init__(runner, sock, ssl_context=ssl_context, backlog=backlog)
        self._handshake_timeout = handshake_timeout

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        # asyncio refuses TLS timeouts for a listener without TLS.
        timeout = self._handshake_timeout if self._ssl_context is not None else None
        self._server = await asyncio.get_running_loop().create_server(
            server,
            sock=self._sock,
            ssl=self._ssl_context,
            backlog=self._backlog,
            ssl_handshake_timeout=timeout,
            ssl_shutdown_timeout=timeout,
        )


def quiet_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Log asyncio's accept errors (out of file descriptors) at most once a second, with a
    count and no traceback; everything else goes to the loop's default handler."""
    tally = Tally("accepting connections failed", by="errors")

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if (
            context.get("message") == ACCEPT_ERROR_MESSAGE
            and isinstance(exc, OSError)
            and exc.errno in RESOURCE_ERRNOS
        ):
            tally.note(exc.strerror or errno.errorcode.get(exc.errno or 0, "error"))
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
