from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from est_ca.revocation.publishing import RevocationPublishing
from est_ca.service import Service


@pytest.fixture
async def publishing(service: Service) -> AsyncIterator[RevocationPublishing]:
    """The service's CRL and OCSP publication, started as `serve` starts it."""
    assert service.publishing is not None
    await service.publishing.start()
    yield service.publishing
    await service.publishing.stop()
