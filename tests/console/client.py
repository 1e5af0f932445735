"""The console over plain HTTP, as a browser without script uses it: cookies, forms, CSRF."""

from __future__ import annotations

import html
import re
import ssl

import aiohttp

from est_ca.service import Service

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def client(service: Service) -> aiohttp.ClientSession:
    context = ssl.create_default_context(cafile=str(service.settings.tls.cert_file))
    # unsafe: keep cookies of an IP address (the listener is 127.0.0.1), as a browser does.
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=context, force_close=True),
        cookie_jar=aiohttp.CookieJar(unsafe=True),
    )


def csrf_of(page: str) -> str:
    match = CSRF.search(page)
    assert match is not None, "the page has no form with a CSRF token"
    return html.unescape(match.group(1))


async def sign_in(session: aiohttp.ClientSession, admin_url: str, token: str) -> str:
    """Sign in with the form's own CSRF token; the console's URL."""
    console = admin_url + "/console/"
    async with session.get(console + "sign-in") as page:
        csrf = csrf_of(await page.text())
    async with session.post(
        console + "sign-in", data={"token": token, "csrf": csrf}, allow_redirects=False
    ) as response:
        assert response.status == 303, await response.text()
        assert response.headers["Location"] == "/console/"
    return console
