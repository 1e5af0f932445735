"""Settings: shipped defaults, an operator file, environment variables; mistakes stop the start."""

from __future__ import annotations

from pathlib import Path

import pytest

from est_ca.config import MANAGED_AUTHORITIES, FileKeyRef, Pkcs11KeyRef, load_settings, token_key
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


def _authorities(tmp_path: Path, text: str) -> Path:
    config = tmp_path / "cas.toml"
    config.write_text(text)
    return config


ONE_CA = """
[[authorities]]
name = "issuing-2"
certificate = "/etc/est-ca/issuing.pem"
chain = "/etc/est-ca/chain.pem"
key = { kind = "file", path = "/etc/est-ca/issuing.key", passphrase_file = "/etc/est-ca/pw" }
default = true
profiles = ["oces3-person"]
"""


def test_without_listed_authorities_the_ca_section_is_used_as_before() -> None:
    settings = load_settings()
    assert settings.authorities == ()
    assert settings.ca.cert_file == ""
    assert settings.ca.generate_demo is True


def test_a_listed_authority_is_typed_and_becomes_the_configured_ca(tmp_path: Path) -> None:
    settings = load_settings(_authorities(tmp_path, ONE_CA))
    (entry,) = settings.authorities
    assert entry.name == "issuing-2"
    assert entry.key == FileKeyRef(path="/etc/est-ca/issuing.key", passphrase_file="/etc/est-ca/pw")
    assert entry.profiles == ("oces3-person",)
    assert settings.ca.cert_file == "/etc/est-ca/issuing.pem"
    assert settings.ca.chain_file == "/etc/est-ca/chain.pem"
    assert settings.ca.key_file == "/etc/est-ca/issuing.key"
    assert settings.ca.key_passphrase_file == "/etc/est-ca/pw"
    assert settings.ca.generate_demo is False


def _with_key(key: str) -> str:
    file_key = ONE_CA.split("\n")[5]
    assert file_key.startswith('key = { kind = "file"')
    return ONE_CA.replace(file_key, key)


def test_a_pkcs11_key_names_module_token_label_and_where_the_pin_is(tmp_path: Path) -> None:
    text = _with_key(
        'key = { kind = "pkcs11", module = "/usr/lib/softhsm/libsofthsm2.so", '
        'token = "est-ca", label = "issuing-2026", pin_env = "EST_CA_TOKEN_PIN" }'
    )
    settings = load_settings(_authorities(tmp_path, text))
    assert settings.authorities[0].key == Pkcs11KeyRef(
        module="/usr/lib/softhsm/libsofthsm2.so",
        token="est-ca",
        label="issuing-2026",
        pin_env="EST_CA_TOKEN_PIN",
    )
    assert token_key(settings) == settings.authorities[0].key
    assert settings.ca.key_file == ""


@pytest.mark.parametrize(
    "pin", ["", 'pin_file = "/etc/est-ca/pin", pin_env = "PIN"'], ids=["none", "both"]
)
def test_a_pkcs11_key_needs_exactly_one_pin_source(tmp_path: Path, pin: str) -> None:
    text = _with_key(
        'key = { kind = "pkcs11", module = "/m.so", token = "t", label = "l"'
        + (f", {pin}" if pin else "")
        + " }"
    )
    with pytest.raises(ConfigurationError, match=r"exactly one of key\.pin_file or key\.pin_env"):
        load_settings(_authorities(tmp_path, text))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('kind = "file"', 'kind = "vault"'), r"kind' must be one of 'file', 'pkcs11'"),
        (('name = "issuing-2"', 'name = "a/b"'), "becomes a URL path"),
        (('name = "issuing-2"', 'name = "root"'), "'root' is reserved"),
        (("default = true", "default = 1"), "must be true or false"),
        (('chain = "/etc/est-ca/chain.pem"', 'chain = ""'), "needs certificate and chain"),
    ],
)
def test_a_mistake_in_a_listed_authority_is_named(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_settings(_authorities(tmp_path, ONE_CA.replace(*change)))


def test_two_authorities_need_exactly_one_default(tmp_path: Path) -> None:
    second = ONE_CA.replace("issuing-2", "other").replace("default = true", "")
    with pytest.raises(ConfigurationError, match="exactly one authority must be marked default"):
        load_settings(_authorities(tmp_path, ONE_CA.replace("default = true", "") + second))


def test_several_authorities_are_listed_and_the_default_stands_in_for_the_ca_section(
    tmp_path: Path,
) -> None:
    second = (
        ONE_CA.replace("issuing-2", "other")
        .replace("default = true", "")
        .replace("/etc/est-ca/issuing", "/etc/est-ca/other")
    )
    settings = load_settings(_authorities(tmp_path, ONE_CA + second))
    assert [entry.name for entry in settings.authorities] == ["issuing-2", "other"]
    assert settings.ca.cert_file == "/etc/est-ca/issuing.pem"


def test_a_rolled_over_generation_keeps_its_labels_channel_binding(tmp_path: Path) -> None:
    """`est-ca ca rollover` writes the new generation to the managed file; what the label
    requires of its CSRs stays the operator's, from the configured entry of that label."""
    data_dir = tmp_path / "data"
    (data_dir / "ca").mkdir(parents=True)
    (data_dir / MANAGED_AUTHORITIES).write_text(
        ONE_CA.replace("default = true", "retired = true")
        + ONE_CA.replace('name = "issuing-2"', 'name = "issuing-3"\nlabel = "issuing-2"')
        .replace("issuing.pem", "issuing-3.pem")
        .replace('profiles = ["oces3-person"]\n', "")
    )
    configured = ONE_CA + "require_channel_binding = true\n"
    settings = load_settings(
        _authorities(tmp_path, configured), overrides={"data_dir": str(data_dir)}
    )
    current = [entry for entry in settings.authorities if not entry.retired]
    assert [entry.name for entry in current] == ["issuing-3"]
    assert current[0].require_channel_binding is True
