"""A CA key file's passphrase may come from an environment variable instead of a file
(issue 13, item 3): the key stays encrypted PKCS#8, the passphrase never on a command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from est_ca.clock import SettableClock
from est_ca.config import load_settings
from est_ca.errors import ConfigurationError
from est_ca.service import Service
from tests.conftest import CaMaterial, authorities_overrides
from tests.helpers import authority_entry


def _config(tmp_path: Path, ca_material: CaMaterial) -> Path:
    entry = authority_entry("env", ca_material.hierarchy, ca_material.passphrase, default=True)
    entry = entry.replace(
        f'passphrase_file = "{ca_material.passphrase}"', 'passphrase_env = "TEST_CA_PASSPHRASE"'
    )
    assert "passphrase_env" in entry
    config = tmp_path / "cas.toml"
    config.write_text(entry)
    return config


async def test_a_listed_ca_key_opens_with_its_passphrase_from_the_environment(
    tmp_path: Path,
    ca_material: CaMaterial,
    clock: SettableClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_CA_PASSPHRASE", "test passphrase")
    settings = load_settings(
        _config(tmp_path, ca_material), {}, authorities_overrides(tmp_path, ca_material)
    )
    service = await Service.open(settings, clock=clock, create=True)
    try:
        assert service.ca is not None
        assert service.readiness()["signing_keys"] is True
    finally:
        await service.close()


async def test_an_unset_passphrase_variable_stops_the_start_naming_it(
    tmp_path: Path,
    ca_material: CaMaterial,
    clock: SettableClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TEST_CA_PASSPHRASE", raising=False)
    settings = load_settings(
        _config(tmp_path, ca_material), {}, authorities_overrides(tmp_path, ca_material)
    )
    with pytest.raises(ConfigurationError, match="TEST_CA_PASSPHRASE"):
        await Service.open(settings, clock=clock, create=True)
