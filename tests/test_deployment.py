"""The shipped systemd units start est-ca as the CLI and the settings understand them: a unit
that names an option or a variable est-ca does not know would fail only on the operator's
machine."""

from __future__ import annotations

import configparser
import shlex
import tomllib
from pathlib import Path

import pytest

from est_ca.cli import _parser
from est_ca.config import load_settings, shipped_config_dir

UNITS = sorted((Path(__file__).parents[1] / "tools" / "systemd").glob("*.service"))


def _unit(path: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return parser


def test_units_are_shipped() -> None:
    assert [unit.name for unit in UNITS] == ["est-ca-db-upgrade.service", "est-ca.service"]


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_a_units_command_is_one_the_cli_accepts(unit: Path) -> None:
    command = shlex.split(_unit(unit)["Service"]["ExecStart"])
    assert Path(command[0]).name == "est-ca"
    _parser().parse_args(command[1:])


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_a_units_environment_names_only_settings_est_ca_reads(unit: Path, tmp_path: Path) -> None:
    environment = dict(
        line.split("=", 1)
        for line in unit.read_text().splitlines()
        if line.startswith("Environment=")
        for line in [line.removeprefix("Environment=")]
    )
    assert environment.pop("EST_CA_CONFIG") == "/etc/est-ca/est-ca.toml"
    shipped = tomllib.loads((shipped_config_dir() / "est-ca.toml").read_text())
    known = {
        f"EST_CA_{section}_{key}".upper()
        if isinstance(values, dict)
        else f"EST_CA_{section}".upper()
        for section, values in shipped.items()
        for key in (values if isinstance(values, dict) else [None])
    }
    assert set(environment) <= known, set(environment) - known
    environment["EST_CA_DATA_DIR"] = str(tmp_path)  # the unit's own path is not here
    settings = load_settings(None, environment)
    if "EST_CA_DATABASE_AUTO_MIGRATE" in environment:
        assert settings.database.auto_migrate is False
