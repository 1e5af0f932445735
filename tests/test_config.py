"""Settings: shipped defaults, an operator file, environment variables; mistakes stop the start."""

from __future__ import annotations

from pathlib import Path

import pytest

from est_ca.config import load_settings
from est_ca.errors import ConfigurationError


def test_the_shipped_defaults_are_the_embedded_default() -> None:
    settings = load_settings()
    assert settings.service.host == "127.0.0.1"
    assert settings.service.max_body_bytes == 65536
    assert settings.orders.validity_days == 14
    assert settings.orders.max_failed_attempts == 5
    assert settings.database_url == f"sqlite+aiosqlite:///{Path('est-ca-data') / 'est-ca.db'}"


def test_an_operator_file_changes_only_what_it_names(tmp_path: Path) -> None:
    config = tmp_path / "mine.toml"
    config.write_text("[orders]\nvalidity_days = 30\n[service]\nport = 9443\n")
    settings = load_settings(config)
    assert settings.orders.validity_days == 30
    assert settings.service.port == 9443
    assert settings.orders.max_failed_attempts == 5


def test_environment_variables_override_the_file(tmp_path: Path) -> None:
    config = tmp_path / "mine.toml"
    config.write_text("[service]\nport = 9443\n")
    settings = load_settings(
        config,
        {
            "EST_CA_SERVICE_PORT": "10443",
            "EST_CA_SERVICE_DEMO": "false",
            "EST_CA_DATA_DIR": "/srv/est-ca",
            "EST_CA_DATABASE_URL": "postgresql+asyncpg://est@db/est",
            "EST_CA_PROFILES_EXTRA_DIRS": "/etc/est-ca/profiles,/opt/profiles",
        },
    )
    assert settings.service.port == 10443
    assert settings.service.demo is False
    assert settings.data_dir == Path("/srv/est-ca")
    assert settings.database_url == "postgresql+asyncpg://est@db/est"
    assert settings.profiles.extra_dirs == ("/etc/est-ca/profiles", "/opt/profiles")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[service]\nprot = 1\n", "unknown setting 'prot'"),
        ("[servcie]\nport = 1\n", "unknown setting 'servcie'"),
        ('[service]\nport = "8443"\n', "'service.port' must be an integer"),
        ("[service]\nport = 70000\n", "service.port"),
        ('[logging]\nformat = "xml"\n', "'logging.format' must be one of"),
        ("[secrets]\nscrypt_n = 16384\n", "unknown setting 'scrypt_n'"),
        ("[limits]\nmax_connections_per_source = 0\n", "max_connections_per_source' must be"),
        ("not toml at all = = =", "not valid TOML"),
    ],
)
def test_a_mistake_in_the_operator_file_is_named(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "mine.toml"
    config.write_text(text)
    with pytest.raises(ConfigurationError, match=message):
        load_settings(config)


def test_any_free_http_port_needs_an_explicit_public_url() -> None:
    with pytest.raises(ConfigurationError, match=r"set publication\.base_url"):
        load_settings(None, {"EST_CA_SERVICE_HTTP_PORT": "0"})
    settings = load_settings(
        None, {"EST_CA_SERVICE_HTTP_PORT": "0", "EST_CA_PUBLICATION_BASE_URL": "http://ca.dk/"}
    )
    assert settings.public_base_url == "http://ca.dk"


def test_a_mistyped_environment_variable_is_named() -> None:
    with pytest.raises(ConfigurationError, match=r"'service\.demo' must be true or false"):
        load_settings(None, {"EST_CA_SERVICE_DEMO": "perhaps"})
