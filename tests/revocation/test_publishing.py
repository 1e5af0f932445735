"""The publishing task: it stops when asked, whatever it was about to do."""

from __future__ import annotations

import asyncio
import time

from est_ca.revocation.publishing import RevocationPublishing


async def test_stopping_just_after_a_revocation_woke_the_task_stops_it(
    publishing: RevocationPublishing,
) -> None:
    """A stop (SIGTERM) in the moment between a revocation's wake-up and the round it starts
    must not be lost: the task once went on polling for ever and the shutdown hung."""
    publishing.revoked()
    await asyncio.sleep(0)  # the wake-up is delivered; the task has not run yet
    started = time.monotonic()
    stopping = asyncio.create_task(publishing.stop())
    await asyncio.wait([stopping], timeout=5)
    assert stopping.done(), "the publishing task ignored the stop"
    assert time.monotonic() - started < 1
