"""A real admin listener (TLS, SQLite) for the console, and Debian's Chromium driven by Playwright.

The service runs on its own event loop in a thread for the whole module, so the browser
(Playwright's synchronous API) and the server are started once, not once per test.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from est_ca.admin.access import Scope
from est_ca.server import Server
from est_ca.service import Service
from tests.admin.conftest import AdminCa
from tests.admin.conftest import admin_ca as admin_ca
from tests.conftest import CaMaterial, make_settings, with_test_organisations
from tests.helpers import ADMIN, REQUIRE_SERVICES

CHROMIUM = Path("/usr/bin/chromium")
T = TypeVar("T")


@dataclasses.dataclass
class Console:
    service: Service
    server: Server
    loop: asyncio.AbstractEventLoop
    ca: CaMaterial

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the service's loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(120)

    @property
    def url(self) -> str:
        return self.server.admin_url + "/console/"

    def token(self, name: str, scopes: str, cvr: str | None = None) -> str:
        _, secret = self.call(
            self.service.tokens.create(
                ADMIN, name=name, scopes=Scope.parse_many(scopes), cvr=cvr, valid_days=1
            )
        )
        return secret


async def _open(settings: Any) -> Service:
    return await with_test_organisations(await Service.open(settings, create=True))


@pytest.fixture(scope="module")
def console(
    tmp_path_factory: pytest.TempPathFactory, ca_material: CaMaterial, admin_ca: AdminCa
) -> Iterator[Console]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    settings = make_settings(
        tmp_path_factory.mktemp("console") / "data",
        ca_material,
        admin={"client_ca_file": str(admin_ca.ca_file)},
    )
    running = Console(None, None, loop, ca_material)  # type: ignore[arg-type]
    running.service = running.call(_open(settings))
    running.server = Server(running.service)
    running.call(running.server.start("127.0.0.1", 0, ca_material.http_port))
    try:
        yield running
    finally:
        running.call(running.server.stop())
        running.call(running.service.close())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        message = (
            f"the browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium)"
        )
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield launched
        launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile (no cookies) per test; it does not know the test TLS CA."""
    made = browser.new_context(ignore_https_errors=True, locale="en-GB")
    yield made
    made.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    directory = Path(os.environ.get("EST_CA_SCREENSHOTS") or tmp_path)
    directory.mkdir(parents=True, exist_ok=True)
    return directory
