"""Profiles are data: shipped in ca-config/profiles, extended by operators without code."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from est_ca.ca.profiles import ProfileCatalogue
from est_ca.config import shipped_config_dir
from est_ca.errors import ConfigurationError
from est_ca.registration.identities import IdentityType

SHIPPED = shipped_config_dir() / "profiles"


def test_the_three_oces3_profiles_are_shipped() -> None:
    catalogue = ProfileCatalogue.load([SHIPPED])
    assert set(catalogue.profiles) == {"user", "organisation", "system"}
    for identity_type in IdentityType:
        profile = catalogue.default_for(identity_type)
        assert profile is not None
        assert profile.identity_type is identity_type
        assert profile.policies[0] == "0.4.0.2042.1.1"
        assert profile.validity_seconds == 1095 * 86400 - 1
        assert profile.keys.rsa_sizes == (3072, 4096)
        assert profile.signature.salt_length == 32


def copy_profile(directory: Path, name: str, **changes: str) -> Path:
    text = (SHIPPED / "system.toml").read_text()
    text = text.replace('name = "system"', f'name = "{name}"')
    for old, new in changes.items():
        assert old in text
        text = text.replace(old, new)
    path = directory / f"{name}.toml"
    path.write_text(text)
    return path


def test_an_operator_adds_a_profile_by_dropping_a_file(tmp_path: Path) -> None:
    copy_profile(tmp_path, "iot-device", **{"validity_days = 1095": "validity_days = 365"})
    catalogue = ProfileCatalogue.load([SHIPPED, tmp_path])
    device = catalogue.get("iot-device")
    assert device is not None
    assert device.validity_days == 365
    assert device.identity_type is IdentityType.SYSTEM


def test_an_operator_profile_of_the_same_name_replaces_the_shipped_one(tmp_path: Path) -> None:
    shutil.copy(SHIPPED / "system.toml", tmp_path / "system.toml")
    text = (tmp_path / "system.toml").read_text().replace("ec_curves = []", 'ec_curves = ["P-256"]')
    (tmp_path / "system.toml").write_text(text)
    system = ProfileCatalogue.load([SHIPPED, tmp_path]).get("system")
    assert system is not None
    assert system.keys.ec_curves == ("P-256",)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"validity_days = 1095": "validity_dayz = 1095"}, "unknown setting 'validity_dayz'"),
        ({'"1.2.208.169.1.1.1.3.7"': '"not.an.oid"'}, "not an OID"),
        ({'"key_encipherment"]': '"key_encryption"]'}, "key_usage"),
        ({'country = "DK"': 'country = "Denmark"'}, "two-letter"),
        ({"rsa_sizes = [3072, 4096]": "rsa_sizes = [1024]"}, "not a sensible size"),
        ({'hash = "sha256"': 'hash = "md5"'}, "unknown signature hash"),
        ({'identity_type = "system"': 'identity_type = "robot"'}, "identity_type"),
    ],
)
def test_a_mistake_in_a_profile_stops_the_start_naming_the_file(
    tmp_path: Path, change: dict[str, str], message: str
) -> None:
    path = copy_profile(tmp_path, "broken", **change)
    with pytest.raises(ConfigurationError, match=message) as error:
        ProfileCatalogue.load([SHIPPED, tmp_path])
    assert str(path) in str(error.value)
