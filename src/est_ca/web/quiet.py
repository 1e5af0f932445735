"""aiohttp's connection handler, minus the habit of repeating a malformed request back.

When a request is malformed at the HTTP level (a bad header character, a broken chunk, a
Content-Length that overflows), aiohttp answers 400 before any of our code runs, and both its
answer and its log line quote the offending bytes. Those bytes can be an Authorization header
with a one-time code in it. Here the answer is a fixed sentence and the log names the kind of
error only. Everything else is aiohttp's own behaviour.
"""

from __future__ import annotations

from http import HTTPStatus

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

_log = structlog.get_logger("est_ca.http")

_SENTENCES = {
    400: "malformed HTTP request",
    413: "the request is too large",
    431: "the request's headers are too large",
}


class QuietRequestHandler(RequestHandler):
    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        _log.info(
            "malformed request",
            peer=request.remote,
            status=status,
            error=type(exc).__name__ if exc is not None else None,
        )
        if request.writer.output_size > 0:
            raise ConnectionError("the response had begun; the connection is dropped instead")
        sentence = _SENTENCES.get(status) or HTTPStatus(status).phrase
        response = web.Response(status=status, text=sentence + "\n", content_type="text/plain")
        response.force_close()
        return response


class _QuietServer(web.Server):
    def __call__(self) -> RequestHandler:
        # aiohttp's Server.__call__, with our handler class (it keeps its arguments in _kwargs).
        return QuietRequestHandler(self, loop=self._loop, **self._kwargs)


class QuietAppRunner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _QuietServer
        return server
