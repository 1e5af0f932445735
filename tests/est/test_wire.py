"""EST body decoding (RFC 8951): base64 whatever the headers say, whitespace ignored."""

from __future__ import annotations

import base64

import pytest

from est_ca.errors import BadRequest
from est_ca.est.wire import decode_base64_body

DER = bytes(range(256)) * 3


@pytest.mark.parametrize(
    "body",
    [
        base64.b64encode(DER),
        base64.encodebytes(DER),
        base64.encodebytes(DER).replace(b"\n", b"\r\n"),
        b"  " + base64.b64encode(DER) + b"\n\n",
        b"\t".join(base64.b64encode(DER)[i : i + 10] for i in range(0, 1024, 10)),
    ],
    ids=["one-line", "mime-lines", "crlf-lines", "padded-with-space", "tabs-everywhere"],
)
def test_base64_with_any_whitespace_decodes(body: bytes) -> None:
    assert decode_base64_body(body) == DER


@pytest.mark.parametrize(
    "body",
    [b"not base64!", base64.b64encode(DER)[:-1], b"\x00" + base64.b64encode(DER), b"\xff\xfe"],
    ids=["punctuation", "bad-padding", "nul-byte", "binary"],
)
def test_anything_but_base64_is_a_bad_request(body: bytes) -> None:
    with pytest.raises(BadRequest, match="not valid base64"):
        decode_base64_body(body)


def test_pem_gets_a_hint() -> None:
    body = b"-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(DER)
    with pytest.raises(BadRequest, match="not PEM"):
        decode_base64_body(body)


def test_an_empty_body_says_what_to_send() -> None:
    with pytest.raises(BadRequest, match="empty"):
        decode_base64_body(b" \r\n")
