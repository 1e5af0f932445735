"""The administrator's command line, run as a real process against a data directory."""

from __future__ import annotations

import csv
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from est_ca.cli import spreadsheet_safe


@pytest.fixture
def est_ca(tmp_path: Path) -> Any:
    """The real `est-ca` command on a data directory of its own, where the organisations the
    tests use are registered (by importing them, as an operator would)."""
    environment = {**os.environ, "EST_CA_DATA_DIR": str(tmp_path / "data")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "est_ca", *args],
            capture_output=True,
            text=True,
            env=environment,
            timeout=60,
            check=False,
        )

    organisations = tmp_path / "organisations.csv"
    organisations.write_text(
        "cvr,name,email_domains\n99999999,ÆØÅ ApS,example.dk\n34051178,Digitaliseringsstyrelsen,\n"
    )
    registered = run("organisation", "import", str(organisations))
    assert registered.returncode == 0, registered.stderr
    return run


def json_of(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def billing_system(est_ca: Any) -> Any:
    """A system identity made with the CLI, as its --json record."""
    [identity] = json_of(
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
    return identity


def test_an_administrator_creates_an_identity_orders_and_lists(est_ca: Any) -> None:
    [identity] = json_of(
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
    [order] = json_of(est_ca("order", "create", identity["id"], "--json"))
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
    [order] = json_of(est_ca("order", "create", identity["id"], "--json"))
    [cancelled] = json_of(est_ca("order", "cancel", order["reference"], "--json"))
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
    [order] = json_of(est_ca("order", "create", identity["id"], "--json"))
    disabled = est_ca("identity", "disable", identity["id"], "--reason", "affiliationChanged")
    assert disabled.returncode == 0, disabled.stderr
    assert disabled.stdout.startswith(f"identity {identity['id']} disabled; 0 certificate(s)")
    [shown] = json_of(est_ca("order", "show", order["reference"], "--json"))
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
    [created] = json_of(
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
    [changed] = json_of(
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
