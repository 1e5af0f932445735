"""structlog set-up: key=value on a terminal, JSON lines otherwise; secrets are scrubbed.

The scrubber is a last line of defence: no code path logs a one-time code, password or key on
purpose, and tests check that none does; if one ever tried, its value would be replaced.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from est_ca.config import LogFormat

SECRET_KEYS = frozenset(
    {"one_time_code", "code", "password", "passphrase", "authorization", "private_key", "token"}
)


def scrub_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key.lower() in SECRET_KEYS:
            event_dict[key] = "[redacted]"
    return event_dict


class _CurrentStderr:
    """sys.stderr as it is at each write, not as it was at configuration: code that embeds
    the service (tests, tools) replaces and closes its own streams, and a log line written to a
    closed one raised inside the accept callback and left a connection unhandled."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure(
    format: LogFormat = "auto", level: str = "info", stream: TextIO | None = None
) -> None:
    target: TextIO | _CurrentStderr = stream or _CurrentStderr()
    use_json = format == "json" or (format == "auto" and not target.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            scrub_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(file=target),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    # aiohttp's own access log would duplicate ours; its error log stays on stderr.
    logging.getLogger("aiohttp.access").disabled = True
