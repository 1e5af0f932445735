"""A small EST client (RFC 7030): what the tests and tools use to talk to an est-ca service.

It speaks the wire format exactly as curl users do: base64 DER bodies, certs-only responses.
"""

from __future__ import annotations

import base64
import dataclasses
import ssl
from pathlib import Path

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7


@dataclasses.dataclass(frozen=True)
class EstResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def certificates(self) -> list[x509.Certificate]:
        """The certificates of a certs-only response (raises when it is not one)."""
        return pkcs7.load_der_pkcs7_certificates(base64.b64decode(self.body))


class EstClient:
    def __init__(
        self,
        base_url: str,
        *,
        trust: Path,
        client_cert: Path | None = None,
        client_key: Path | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/") + "/.well-known/est"
        self._context = ssl.create_default_context(cafile=str(trust))
        if client_cert is not None:
            self._context.load_cert_chain(client_cert, client_key)

    async def _request(
        self,
        method: str,
        operation: str,
        *,
        body: bytes | None = None,
        auth: tuple[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> EstResponse:
        connector = aiohttp.TCPConnector(ssl=self._context, force_close=True)
        headers = dict(headers or {})
        if auth is not None:
            headers["Authorization"] = aiohttp.encode_basic_auth(*auth)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.request(
                method,
                f"{self.base_url}/{operation}",
                data=body,
                headers=headers,
            ) as response,
        ):
            return EstResponse(
                status=response.status,
                headers=dict(response.headers),
                body=await response.read(),
            )

    async def cacerts(self) -> EstResponse:
        return await self._request("GET", "cacerts")

    async def simpleenroll(
        self, csr: x509.CertificateSigningRequest, auth: tuple[str, str] | None = None
    ) -> EstResponse:
        return await self._request(
            "POST",
            "simpleenroll",
            body=encode_csr(csr),
            auth=auth,
            headers={"Content-Type": "application/pkcs10"},
        )

    async def simplereenroll(self, csr: x509.CertificateSigningRequest) -> EstResponse:
        return await self._request(
            "POST",
            "simplereenroll",
            body=encode_csr(csr),
            headers={"Content-Type": "application/pkcs10"},
        )


def encode_csr(csr: x509.CertificateSigningRequest) -> bytes:
    return base64.encodebytes(csr.public_bytes(serialization.Encoding.DER))
