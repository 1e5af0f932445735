"""How long the OCSP responder takes to answer one CertID and MAX_CERT_IDS of them.

    .venv/bin/python -m tools.bench_ocsp [--rounds 200] [--data-dir DIR]

It opens the service on a scratch data directory (SQLite, demo CA), records MAX_CERT_IDS
issued certificates, and asks the responder directly (no HTTP) with a nonce, so that every
answer is looked up and signed afresh: what a request for several CertIDs always costs. A
pre-produced answer (one CertID, no nonce) is timed beside them for scale. Medians.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import statistics
import time
from pathlib import Path

from asn1crypto import core
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from est_ca.ca.certificates import Serial
from est_ca.revocation.ocsp import MAX_CERT_IDS, OcspResponder
from tools.scratch import open_service, record_certificates, run


def request(issuer: x509.Certificate, serials: list[Serial], nonce: bool) -> bytes:
    """One request for `serials` (cryptography's builder takes one CertID: asn1crypto lists
    the Request entries of one-CertID requests)."""
    entries = []
    for serial in serials:
        single = (
            ocsp.OCSPRequestBuilder()
            .add_certificate_by_hash(
                hashlib.sha1(issuer.subject.public_bytes()).digest(),  # noqa: S324 - CertID
                x509.SubjectKeyIdentifier.from_public_key(issuer.public_key()).digest,
                serial.value,
                hashes.SHA1(),  # noqa: S303 - RFC 5019's CertID hash
            )
            .build()
            .public_bytes(serialization.Encoding.DER)
        )
        entries.append(asn1_ocsp.OCSPRequest.load(single)["tbs_request"]["request_list"][0])
    tbs: dict[str, object] = {"request_list": entries}
    if nonce:
        tbs["request_extensions"] = [
            {
                "extn_id": "nonce",
                "critical": False,
                "extn_value": core.ParsableOctetString(core.OctetString(os.urandom(16)).dump()),
            }
        ]
    return bytes(asn1_ocsp.OCSPRequest({"tbs_request": tbs}).dump())


async def median_ms(responder: OcspResponder, der: bytes, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        answer = await responder.answer(der)
        times.append(time.perf_counter() - started)
        assert ocsp.load_der_ocsp_response(answer.der).response_status is (
            ocsp.OCSPResponseStatus.SUCCESSFUL
        )
    return statistics.median(times) * 1000


async def bench(rounds: int, data_dir: Path) -> None:
    service = await open_service(data_dir)
    assert service.publishing is not None
    assert service.ca is not None
    await service.publishing.start()
    try:
        serials = await record_certificates(service, MAX_CERT_IDS, revoked=False)
        responder = service.publishing.responder
        issuer = service.ca.certificate
        cases = [
            ("1 CertID, pre-produced (no nonce)", request(issuer, serials[:1], nonce=False)),
            ("1 CertID, with a nonce", request(issuer, serials[:1], nonce=True)),
            (f"{MAX_CERT_IDS} CertIDs, with a nonce", request(issuer, serials, nonce=True)),
            (f"{MAX_CERT_IDS} CertIDs, no nonce", request(issuer, serials, nonce=False)),
        ]
        for name, der in cases:
            print(f"{name:36} {await median_ms(responder, der, rounds):7.2f} ms (median)")
    finally:
        await service.publishing.stop()
        await service.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--data-dir", type=Path)
    args = parser.parse_args()
    run(functools.partial(bench, args.rounds), args.data_dir)


if __name__ == "__main__":
    main()
