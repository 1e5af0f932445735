"""The administrator's command line, run as a real process against a data directory."""

from __future__ import annotations

import asyncio
import csv
import importlib.metadata
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from est_ca.ca.certificates import Serial
from est_ca.cli import spreadsheet_safe
from est_ca.config import load_settings
from est_ca.errors import ApprovalPending, NoPendingOrder
from est_ca.service import Service
from tests.helpers import KeyPair, KeyPool, csr_der, make_csr
from tests.revocation.helpers import OTHER_ISSUER, record_under_other_issuer

# The real `est-ca` command the package installs, next to this Python.
EST_CA = Path(sys.executable).parent / "est-ca"


def run_est_ca(
    *args: str, cwd: Path, environment: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    if not EST_CA.is_file():
        pytest.skip(f"the est-ca command is not installed next to {sys.executable}")
    return subprocess.run(
        [str(EST_CA), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environment
        if environment is not None
        else {k: v for k, v in os.environ.items() if not k.startswith("EST_CA_")},
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def initialised_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory made once with the real `est-ca init`, the organisations the tests use
    registered (by importing them, as an operator would). Each test works on a copy: a demo
    hierarchy's RSA keys take seconds to generate, the copy milliseconds."""
    base = tmp_path_factory.mktemp("cli-template")
    environment = {**os.environ, "EST_CA_DATA_DIR": str(base / "data")}
    initialised = run_est_ca("init", cwd=base, environment=environment)
    assert initialised.returncode == 0, initialised.stderr
    organisations = base / "organisations.csv"
    organisations.write_text(
        "cvr,name,email_domains\n99999999,ÆØÅ ApS,example.dk\n34051178,Digitaliseringsstyrelsen,\n"
    )
    registered = run_est_ca(
        "organisation", "import", str(organisations), cwd=base, environment=environment
    )
    assert registered.returncode == 0, registered.stderr
    return base / "data"


@pytest.fixture
def est_ca(tmp_path: Path, initialised_data_dir: Path) -> Any:
    """The real `est-ca` command on a data directory of its own (a copy of the initialised
    one: modes kept, so the start-up checks of secret files' modes still apply)."""
    shutil.copytree(initialised_data_dir, tmp_path / "data")
    environment = {**os.environ, "EST_CA_DATA_DIR": str(tmp_path / "data")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_est_ca(*args, cwd=tmp_path, environment=environment)

    return run


def json_of(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def billing_system(est_ca: Any) -> Any:
    """A system identity made with the CLI, as its --json record."""
    return json_of(
        est_ca(
            "identity",
            "create",
            "--type",
            "system",
            "--organisation",
            "ÆØÅ ApS",
            "--cvr",
            "99999999",
            "--display-name",
            "billing",
            "--json",
        )
    )


def test_an_administrator_creates_an_identity_orders_and_lists(est_ca: Any) -> None:
    identity = json_of(
        est_ca(
            "identity",
            "create",
            "--type",
            "user",
            "--organisation",
            "ÆØÅ ApS",
            "--cvr",
            "99999999",
            "--given-name",
            "Søren",
            "--surname",
            "Ærø Ålborg",
            "--email",
            "soren@example.dk",
            "--json",
        )
    )
    assert identity["display_name"] == "Søren Ærø Ålborg"
    order = json_of(est_ca("order", "create", identity["id"], "--json"))
    assert order["state"] == "pending"
    assert len(order["one_time_code"]) == 23
    listed = json_of(est_ca("order", "list", "--json"))
    assert [o["reference"] for o in listed] == [order["reference"]]
    assert "one_time_code" not in listed[0]
    table = est_ca("identity", "list")
    assert table.returncode == 0
    assert table.stdout.splitlines()[0].split() == [
        "ID",
        "TYPE",
        "DISPLAY_NAME",
        "ORGANISATION_NAME",
        "CVR",
        "STATUS",
    ]
    assert "Søren Ærø Ålborg" in table.stdout


def test_the_one_time_code_is_printed_once_for_people(est_ca: Any) -> None:
    identity = billing_system(est_ca)
    created = est_ca("order", "create", identity["id"])
    assert created.returncode == 0
    assert "one-time code:" in created.stdout
    assert "shown only now" in created.stdout


def test_an_order_is_cancelled_once(est_ca: Any) -> None:
    identity = billing_system(est_ca)
    order = json_of(est_ca("order", "create", identity["id"], "--json"))
    cancelled = json_of(est_ca("order", "cancel", order["reference"], "--json"))
    assert cancelled["state"] == "cancelled"
    again = est_ca("order", "cancel", order["reference"])
    assert again.returncode == 1
    assert "cannot be cancelled" in again.stderr
    actions = [e["action"] for e in json_of(est_ca("audit", "list", "--json"))]
    assert actions[-3:] == ["identity.created", "order.created", "order.cancelled"]


def test_bad_input_is_explained_without_a_traceback(est_ca: Any) -> None:
    result = est_ca(
        "identity",
        "create",
        "--type",
        "user",
        "--organisation",
        "X",
        "--cvr",
        "123",
        "--given-name",
        "A",
        "--surname",
        "B",
        "--email",
        "a@example.dk",
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "est-ca: CVR must be exactly 8 digits"
    unknown = est_ca("order", "show", "NOSUCH")
    assert unknown.returncode == 1
    assert "no order" in unknown.stderr


def test_no_certificates_yet_is_said_plainly(est_ca: Any) -> None:
    result = est_ca("certificate", "list")
    assert result.returncode == 0
    assert result.stdout.strip() == "(none)"


def test_revoking_a_serial_that_was_never_issued_is_refused(est_ca: Any) -> None:
    result = est_ca("certificate", "revoke", "7" * 40, "--reason", "keyCompromise")
    assert result.returncode == 1
    assert result.stderr.strip() == f"est-ca: no issued certificate with serial {'7' * 40}"
    bad_reason = est_ca("certificate", "revoke", "7" * 40, "--reason", "certificateHold")
    assert bad_reason.returncode == 2  # argparse: not one of the offered reasons
    assert "invalid choice" in bad_reason.stderr


def test_disabling_an_identity_cancels_its_orders(est_ca: Any) -> None:
    identity = billing_system(est_ca)
    order = json_of(est_ca("order", "create", identity["id"], "--json"))
    disabled = est_ca("identity", "disable", identity["id"], "--reason", "affiliationChanged")
    assert disabled.returncode == 0, disabled.stderr
    assert disabled.stdout.startswith(f"identity {identity['id']} disabled; 0 certificate(s)")
    shown = json_of(est_ca("order", "show", order["reference"], "--json"))
    assert shown["state"] == "cancelled"
    again = est_ca("identity", "disable", identity["id"])
    assert again.returncode == 1
    assert "already disabled" in again.stderr


def test_an_import_writes_the_one_time_codes_to_a_new_private_file(
    est_ca: Any, tmp_path: Path
) -> None:
    source = tmp_path / "staff.csv"
    source.write_text(
        "external_id,type,organisation_name,cvr,given_name,surname,email\n"
        "e1,user,ÆØÅ ApS,99999999,Søren,Ærø,s@example.dk\n"
        "e2,user,ÆØÅ ApS,99999999,Åse,Ørsted,a@example.dk\n",
        encoding="utf-8",
    )
    codes = tmp_path / "codes.csv"
    result = est_ca("identity", "import", str(source), "--place-orders", "--codes-out", str(codes))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"imported 2 identities (0 already present), placed 2 orders; "
        f"one-time codes in {codes} (mode 0600)"
    )
    assert stat.S_IMODE(codes.stat().st_mode) == 0o600
    written = list(csv.DictReader(codes.open(encoding="utf-8")))
    assert [row["external_id"] for row in written] == ["e1", "e2"]
    orders = json_of(est_ca("order", "list", "--json"))
    assert {o["reference"] for o in orders} == {row["order_reference"] for row in written}
    again = est_ca("identity", "import", str(source))
    assert again.stdout.strip() == "imported 0 identities (2 already present), placed 0 orders"
    reused = est_ca("identity", "import", str(source), "--place-orders", "--codes-out", str(codes))
    assert reused.returncode == 1
    assert "exists; the codes file must be new" in reused.stderr


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_a_csv_cell_a_spreadsheet_would_run_as_a_formula_is_quoted(start: str) -> None:
    assert spreadsheet_safe(f"{start}HYPERLINK(1)") == f"'{start}HYPERLINK(1)"


@pytest.mark.parametrize("cell", ["e1", "0123", "a=b", "'quoted", ""])
def test_a_csv_cell_that_is_no_formula_is_written_as_it_is(cell: str) -> None:
    assert spreadsheet_safe(cell) == cell


def test_imported_external_ids_that_look_like_formulas_are_quoted_in_the_codes_file(
    est_ca: Any, tmp_path: Path
) -> None:
    formulas = ["=1+2", "+1", "-1", "@SUM(A1)"]
    source = tmp_path / "staff.csv"
    source.write_text(
        "external_id,type,organisation_name,cvr,given_name,surname,email\n"
        + "".join(f"{f},user,ÆØÅ ApS,99999999,Søren,Ærø,s@example.dk\n" for f in formulas),
        encoding="utf-8",
    )
    codes = tmp_path / "codes.csv"
    result = est_ca("identity", "import", str(source), "--place-orders", "--codes-out", str(codes))
    assert result.returncode == 0, result.stderr
    written = list(csv.DictReader(codes.open(encoding="utf-8")))
    assert [row["external_id"] for row in written] == [f"'{f}" for f in formulas]
    # Only the file a spreadsheet opens is changed: the identities keep what was imported.
    identities = json_of(est_ca("identity", "list", "--json"))
    assert sorted(i["external_id"] for i in identities) == sorted(formulas)


def test_an_import_with_errors_lists_them_and_imports_nothing(est_ca: Any, tmp_path: Path) -> None:
    source = tmp_path / "staff.jsonl"
    source.write_text(
        json.dumps(
            {
                "external_id": "ok",
                "type": "system",
                "organisation_name": "Ø",
                "cvr": "99999999",
                "display_name": "fine",
            }
        )
        + "\n"
        + json.dumps(
            {
                "external_id": "bad",
                "type": "user",
                "organisation_name": "Ø",
                "cvr": "9999",
                "given_name": "A",
                "surname": "B",
                "email": "æ@example.dk",
            }
        )
        + "\n",
        encoding="utf-8",
    )
    result = est_ca("identity", "import", str(source))
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == (
        "est-ca: 2 error(s) in 1 row(s); nothing was imported:"
    )
    assert "line 2, cvr: CVR must be exactly 8 digits" in result.stderr
    assert est_ca("identity", "list").stdout.strip() == "(none)"


def test_a_token_is_shown_once_listed_without_its_secret_and_revoked(est_ca: Any) -> None:
    created = est_ca("token", "create", "idm", "--scopes", "read,order", "--cvr", "99999999")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.splitlines()[1].strip()
    assert secret.startswith("estca_")
    listed = est_ca("token", "list", "--json")
    [token] = json_of(listed)
    assert (token["name"], token["scopes"], token["cvr"]) == ("idm", "order,read", "99999999")
    assert secret.split("_")[-1] not in listed.stdout
    assert json_of(est_ca("token", "list", "--all", "--json")) == [token]
    assert est_ca("token", "revoke", "idm").returncode == 0
    again = est_ca("token", "revoke", "idm")
    assert (again.returncode, again.stderr.strip()) == (
        1,
        "est-ca: the token 'idm' is already revoked",
    )
    bad = est_ca("token", "create", "x", "--scopes", "read,root")
    assert bad.returncode == 1
    assert "comma-separated list of read, order, revoke, admin" in bad.stderr


def test_an_organisation_is_registered_listed_and_changed(est_ca: Any) -> None:
    created = json_of(
        est_ca(
            "organisation",
            "create",
            "--cvr",
            "12345678",
            "--name",
            "Øresund ApS",
            "--email-domains",
            "oresund.dk,XN--RESUND-VUA.dk",
            "--json",
        )
    )
    assert created["email_domains"] == ["oresund.dk", "xn--resund-vua.dk"]
    listed = json_of(est_ca("organisation", "list", "--json"))
    assert [o["cvr"] for o in listed] == ["12345678", "34051178", "99999999"]
    changed = json_of(
        est_ca("organisation", "update", "12345678", "--status", "disabled", "--json")
    )
    assert changed["status"] == "disabled"
    refused = est_ca(
        "identity", "create", "--type", "system", "--cvr", "12345678", "--display-name", "x"
    )
    assert refused.returncode == 1
    assert "disabled" in refused.stderr


def test_an_identity_of_an_unregistered_organisation_is_refused_naming_what_to_do(
    est_ca: Any,
) -> None:
    refused = est_ca(
        "identity", "create", "--type", "system", "--cvr", "11111111", "--display-name", "x"
    )
    assert refused.returncode == 1
    assert "no organisation with CVR 11111111 is registered" in refused.stderr
    assert "est-ca organisation create" in refused.stderr


# -- finding the CA -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ("identity", "list"),
        ("certificate", "revoke", "0a1b2c3d4e5f60718293a4b5c6d7e8f9", "--reason", "keyCompromise"),
        ("order", "create", "3e534f0b-902d-4a93-b313-ba5a41b82f9f"),
        ("status",),
    ],
    ids=lambda words: " ".join(words[:2]),
)
def test_a_command_where_there_is_no_ca_creates_none_and_says_where_it_looked(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    result = run_est_ca(*command, cwd=tmp_path)
    assert result.returncode == 2
    message = result.stderr
    assert message.startswith(f"est-ca: no CA in {tmp_path.resolve() / 'est-ca-data'} ")
    for way_elsewhere in ("--data-dir", "EST_CA_DATA_DIR", "--config", "est-ca init"):
        assert way_elsewhere in message
    assert "Traceback" not in message
    assert list(tmp_path.iterdir()) == []


def test_a_data_directory_without_a_database_is_not_given_a_new_one(tmp_path: Path) -> None:
    assert run_est_ca("init", cwd=tmp_path).returncode == 0
    (tmp_path / "est-ca-data" / "est-ca.db").unlink()
    result = run_est_ca("identity", "list", cwd=tmp_path)
    assert result.returncode == 2
    assert f"the database {tmp_path.resolve() / 'est-ca-data' / 'est-ca.db'}" in result.stderr
    assert not (tmp_path / "est-ca-data" / "est-ca.db").exists()


def test_init_creates_a_ca_the_other_commands_then_find(tmp_path: Path) -> None:
    created = run_est_ca("init", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert "CN=est-ca Demo Issuing CA 1" in created.stdout
    assert run_est_ca("identity", "list", cwd=tmp_path).stdout.strip() == "(none)"


def test_with_auto_migrate_off_init_and_db_upgrade_make_the_schema_other_commands_refuse(
    tmp_path: Path,
) -> None:
    """A cluster's instances start with auto_migrate off; the operator's `init` and
    `db upgrade` are what migrate (before, both refused an empty database)."""
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("EST_CA_")},
        "EST_CA_DATABASE_AUTO_MIGRATE": "false",
    }
    created = run_est_ca("init", cwd=tmp_path, environment=environment)
    assert created.returncode == 0, created.stderr
    upgraded = run_est_ca("db", "upgrade", cwd=tmp_path, environment=environment)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "database schema at revision" in upgraded.stdout
    assert run_est_ca("identity", "list", cwd=tmp_path, environment=environment).returncode == 0
    (tmp_path / "est-ca-data" / "est-ca.db").write_bytes(b"")  # an empty database
    refused = run_est_ca("identity", "list", cwd=tmp_path, environment=environment)
    assert refused.returncode != 0
    assert "est-ca db upgrade" in refused.stderr


def test_a_command_given_the_data_dir_works_from_any_directory(est_ca: Any, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    listed = run_est_ca("--data-dir", str(tmp_path / "data"), "organisation", "list", cwd=elsewhere)
    assert listed.returncode == 0, listed.stderr
    assert "ÆØÅ ApS" in listed.stdout


def test_verbose_names_the_data_dir_and_database_used(est_ca: Any, tmp_path: Path) -> None:
    result = est_ca("-v", "identity", "list")
    assert result.returncode == 0, result.stderr
    data = (tmp_path / "data").resolve()
    assert result.stderr.splitlines() == [
        f"est-ca: data dir {data}, database sqlite+aiosqlite:///{data / 'est-ca.db'}"
    ]


def test_status_shows_data_dir_database_cas_listeners_and_counts(
    est_ca: Any, tmp_path: Path
) -> None:
    billing_system(est_ca)
    shown = est_ca("status")
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert f"data dir:       {(tmp_path / 'data').resolve()}" in text
    assert re.search(r"database: +sqlite\+aiosqlite:////.+/est-ca\.db \(schema \d{4}\)", text)
    assert re.search(r"CA: +.*CN=est-ca Demo Issuing CA 1\n +key id [0-9a-f]{40}, until ", text)
    assert "CN=est-ca Demo Root CA" in text
    assert re.search(r"EST \(HTTPS\): +https://127\.0\.0\.1:8443/\.well-known/est/ \(", text)
    assert "organisations:  2 active" in text
    assert "identities:     1 active" in text
    report = json_of(est_ca("status", "--json"))
    assert report["counts"]["identities"] == {"active": 1}
    assert {ca["key_id"] for ca in report["certificate_authorities"]} == {
        line.split()[2].rstrip(",") for line in text.splitlines() if "key id" in line
    }


# -- output -------------------------------------------------------------------------------


def test_version_prints_the_installed_version(tmp_path: Path) -> None:
    result = run_est_ca("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"est-ca {importlib.metadata.version('est-ca')}"


def test_creating_with_json_prints_one_object(est_ca: Any) -> None:
    identity = billing_system(est_ca)
    assert isinstance(identity, dict)
    order = json_of(est_ca("order", "create", identity["id"], "--json"))
    assert isinstance(order, dict)
    assert set(order) >= {"reference", "one_time_code", "state"}


def test_a_listing_piped_into_head_ends_without_a_traceback(est_ca: Any, tmp_path: Path) -> None:
    staff = tmp_path / "staff.csv"
    staff.write_text(
        "external_id,type,cvr,given_name,surname,email\n"
        + "".join(f"e{n},user,99999999,Søren {n},Ærø,s{n}@example.dk\n" for n in range(400))
    )
    imported = est_ca(
        "identity", "import", str(staff), "--place-orders", "--codes-out", str(tmp_path / "c.csv")
    )
    assert imported.returncode == 0, imported.stderr
    environment = {**os.environ, "EST_CA_DATA_DIR": str(tmp_path / "data")}
    piped = subprocess.run(
        ["bash", "-c", f"{EST_CA} order list --limit 1000 --json | head -3"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )
    assert piped.returncode == 0
    assert piped.stdout.splitlines()[0] == "["
    assert piped.stderr == ""


def test_orders_are_listed_by_the_state_the_table_shows(est_ca: Any) -> None:
    identity = billing_system(est_ca)
    order = json_of(est_ca("order", "create", identity["id"], "--json"))
    pending = json_of(est_ca("order", "list", "--status", "pending", "--json"))
    assert [o["reference"] for o in pending] == [order["reference"]]
    for state in ("locked", "expired"):
        assert json_of(est_ca("order", "list", "--status", state, "--json")) == []


def test_identity_create_help_names_the_fields_each_type_needs(tmp_path: Path) -> None:
    shown = run_est_ca("identity", "create", "--help", cwd=tmp_path).stdout
    assert re.search(r"user +--given-name, --surname and --email", shown)
    assert re.search(r"organisation +--display-name", shown)
    assert re.search(r"system +--display-name", shown)


def test_an_abbreviated_option_is_refused(est_ca: Any) -> None:
    result = est_ca(
        "identity",
        "create",
        "--type",
        "system",
        "--cvr",
        "99999999",
        "--org",
        "ÆØÅ ApS",
        "--display-name",
        "billing",
    )
    assert result.returncode == 2
    assert "unrecognized arguments: --org" in result.stderr


def test_showing_one_record_prints_one_field_per_line(
    est_ca: Any, tmp_path: Path, keys: KeyPool
) -> None:
    identity = billing_system(est_ca)
    order = json_of(est_ca("order", "create", identity["id"], "--json"))
    serial = asyncio.run(enroll_in_process(tmp_path / "data", order, keys.rsa(0)))
    shown = est_ca("certificate", "show", serial)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    field, value = lines[0].split()
    assert (field, int(value, 16)) == ("serial:", int(serial, 16))
    fields = [line.split(":", 1)[0] for line in lines]
    assert fields == [*json_of(est_ca("certificate", "show", serial, "--json"))]
    assert any(re.fullmatch(r"subject: +C=DK,.+,CN=billing", line) for line in lines), lines
    assert any(re.fullmatch(r"status: +issued", line) for line in lines)


async def enroll_in_process(data_dir: Path, order: dict[str, Any], key: KeyPair) -> str:
    """A certificate for `order`, enrolled through the service's own domain code."""
    settings = load_settings(None, {}, {"data_dir": str(data_dir)})
    service = await Service.open(settings)
    try:
        assert service.authority is not None
        certificate = await service.authority.enroll_with_order(
            order["reference"], order["one_time_code"], csr_der(make_csr(key.key)), source="test"
        )
        return f"{certificate.serial_number:x}"
    finally:
        await service.close()


async def record_under_another_ca(data_dir: Path, serial: str) -> str:
    """The same serial recorded for a second CA, as a later issuing CA would; our key id."""
    settings = load_settings(None, {}, {"data_dir": str(data_dir)})
    service = await Service.open(settings)
    try:
        assert service.ca is not None
        await record_under_other_issuer(service, Serial.from_hex(serial))
        return service.ca.key_id.hex
    finally:
        await service.close()


def test_a_serial_two_cas_issued_is_shown_and_revoked_with_the_issuer_named(
    est_ca: Any, tmp_path: Path, keys: KeyPool
) -> None:
    identity = billing_system(est_ca)
    order = json_of(est_ca("order", "create", identity["id"], "--json"))
    serial = asyncio.run(enroll_in_process(tmp_path / "data", order, keys.rsa(0)))
    ours = asyncio.run(record_under_another_ca(tmp_path / "data", serial))
    ambiguous = est_ca("certificate", "show", serial)
    assert ambiguous.returncode != 0
    assert "--issuer" in ambiguous.stderr
    shown = json_of(est_ca("certificate", "show", serial, "--issuer", ours, "--json"))
    assert shown["issuer_key_id"] == ours
    revoked = est_ca(
        "certificate", "revoke", serial, "--issuer", OTHER_ISSUER.hex.upper(), "--json"
    )
    assert revoked.returncode == 0, revoked.stderr
    assert json_of(revoked)["issuer_key_id"] == OTHER_ISSUER.hex
    still = json_of(est_ca("certificate", "show", serial, "--issuer", ours, "--json"))
    assert still["status"] == "issued"


async def enroll_pending(data_dir: Path, order: dict[str, Any], key: KeyPair) -> str:
    """Enroll an order that requires approval: the answer must be 'come back later'."""
    try:
        return await enroll_in_process(data_dir, order, key)
    except ApprovalPending as pending:
        return pending.detail


def test_an_approval_order_waits_until_request_approve(
    est_ca: Any, tmp_path: Path, keys: KeyPool
) -> None:
    identity = billing_system(est_ca)
    order = json_of(est_ca("order", "create", identity["id"], "--require-approval", "--json"))
    assert order["require_approval"] is True
    waiting = asyncio.run(enroll_pending(tmp_path / "data", order, keys.rsa(0)))
    assert "awaits an administrator's approval" in waiting
    table = est_ca("request", "list", "--status", "pending")
    assert table.stdout.splitlines()[0].split() == [
        "ORDER_REFERENCE",
        "IDENTITY_ID",
        "STATUS",
        "CREATED_AT",
        "CSR_SUBJECT",
    ]
    assert order["reference"] in table.stdout
    approved = json_of(est_ca("request", "approve", order["reference"], "--json"))
    assert approved["status"] == "approved"
    serial = asyncio.run(enroll_in_process(tmp_path / "data", order, keys.rsa(0)))
    shown = json_of(est_ca("order", "show", order["reference"], "--json"))
    assert shown["certificate_serial"].lstrip("0") == serial.lstrip("0")
    actions = [e["action"] for e in json_of(est_ca("audit", "list", "--json"))]
    assert actions.index("request.submitted") < actions.index("request.approved")


def test_a_request_rejected_with_the_cli_is_refused_with_the_reason(
    est_ca: Any, tmp_path: Path, keys: KeyPool
) -> None:
    identity = billing_system(est_ca)
    created = est_ca("order", "create", identity["id"], "--require-approval")
    assert "approval:        required" in created.stdout
    fields = dict(re.split(r":\s+", line, maxsplit=1) for line in created.stdout.splitlines())
    order = {
        "reference": fields["order reference"],
        "one_time_code": fields["one-time code"].split()[0],
    }
    asyncio.run(enroll_pending(tmp_path / "data", order, keys.rsa(0)))
    rejected = est_ca("request", "reject", order["reference"], "--reason", "who is this")
    assert rejected.returncode == 0, rejected.stderr
    assert re.search(r"status: +rejected", rejected.stdout)
    with pytest.raises(NoPendingOrder, match="rejected by an administrator: who is this"):
        asyncio.run(enroll_in_process(tmp_path / "data", order, keys.rsa(0)))
    again = est_ca("request", "approve", order["reference"])
    assert again.returncode == 1
    assert "cancelled; its request cannot be approved" in again.stderr


def test_certificates_expiring_within_a_window_are_listed(
    est_ca: Any, tmp_path: Path, keys: KeyPool
) -> None:
    identity = billing_system(est_ca)
    order = json_of(est_ca("order", "create", identity["id"], "--json"))
    serial = asyncio.run(enroll_in_process(tmp_path / "data", order, keys.rsa(0)))
    listed = json_of(est_ca("certificate", "list", "--expiring-within", "3650d", "--json"))
    assert [c["serial"].lstrip("0") for c in listed] == [serial.lstrip("0")]
    assert json_of(est_ca("certificate", "list", "--expiring-within", "30d", "--json")) == []
    assert json_of(est_ca("certificate", "list", "--expiring-within", "12h", "--json")) == []
    wrong = est_ca("certificate", "list", "--expiring-within", "30x")
    assert wrong.returncode == 2
    assert "e.g. 30d or 12h" in wrong.stderr


def test_an_operator_grants_and_withdraws_a_system_identitys_administration_right(
    est_ca: Any,
) -> None:
    identity = billing_system(est_ca)
    granted = json_of(
        est_ca(
            "identity", "grant-administration", identity["id"], "--scopes", "read,order", "--json"
        )
    )
    assert granted["scopes"] == ["order", "read"]
    never_admin = est_ca("identity", "grant-administration", identity["id"], "--scopes", "admin")
    assert never_admin.returncode == 1
    assert "read, order, revoke" in never_admin.stderr
    withdrawn = est_ca("identity", "withdraw-administration", identity["id"])
    assert withdrawn.returncode == 0, withdrawn.stderr
    again = est_ca("identity", "withdraw-administration", identity["id"])
    assert again.returncode == 1
    assert "no administration right" in again.stderr
