"""Nonce answers signed on the event loop or handed to the worker threads: which costs less.

    .venv/bin/python -m tools.bench_ocsp_inline [--answers 2000] [--repeat 3]

The service on a scratch data directory (SQLite, demo CA, P-256 responder key in memory);
the responder is asked directly (no HTTP), 32 answers at a time, each with its own nonce, so
every one is signed. Prints process CPU per answer and answers a second, each repetition,
for `ocsp.SIGN_INLINE` on and off (CPU per answer is what a busy machine does not blur).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import time
from pathlib import Path

from est_ca.revocation import ocsp as ocsp_module
from tools.bench_ocsp import request
from tools.scratch import open_service, record_certificates, run

CONCURRENT = 32


async def bench(answers: int, repeat: int, data_dir: Path) -> None:
    service = await open_service(data_dir)
    assert service.publishing is not None
    assert service.ca is not None
    await service.publishing.start()
    try:
        serials = await record_certificates(service, 1, revoked=False)
        responder = service.publishing.responder
        requests = [request(service.ca.certificate, serials, nonce=True) for _ in range(answers)]
        await responder.answer(requests[0])
        figures: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
        for _ in range(repeat):
            for inline in (True, False):
                ocsp_module.SIGN_INLINE = inline
                cpu, wall = time.process_time(), time.perf_counter()
                for start in range(0, answers, CONCURRENT):
                    batch = requests[start : start + CONCURRENT]
                    await asyncio.gather(*(responder.answer(r) for r in batch))
                figures[inline].append(
                    (
                        (time.process_time() - cpu) / answers * 1000,
                        answers / (time.perf_counter() - wall),
                    )
                )
        for inline, rows in figures.items():
            cpus = ", ".join(f"{c:.3f}" for c in sorted(c for c, _ in rows))
            rates = ", ".join(f"{r:,.0f}" for _, r in rows)
            name = "inline " if inline else "threads"
            print(f"{name} CPU ms/answer (sorted) {cpus}; answers/s {rates}")
    finally:
        ocsp_module.SIGN_INLINE = True
        await service.publishing.stop()
        await service.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data-dir", type=Path)
    args = parser.parse_args()
    run(functools.partial(bench, args.answers, args.repeat), args.data_dir)


if __name__ == "__main__":
    main()
