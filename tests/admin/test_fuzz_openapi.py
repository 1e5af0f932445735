"""Schemathesis against the served OpenAPI document of a running admin listener: no input,
valid or not, gets a 5xx, and what the API answers is what the document says (status codes,
content types, schemas).

Schemathesis runs as its command-line tool, in a process of its own: the listener stays on the
test's event loop, and a failure prints what to replay (a curl command per failing case).
Every operation gets the examples, coverage (boundary values, each kind of invalid input) and
fuzzing phases, positive and negative; `EST_CA_FUZZ=long` runs many more fuzzing examples.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from tests.admin.conftest import AdminSetup
from tests.conftest import CaMaterial

LONG = os.environ.get("EST_CA_FUZZ") == "long"
EXAMPLES = "1000" if LONG else "60"
TIME_LIMIT = 3600 if LONG else 300
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))
INSTALLED = Path(SCHEMATHESIS).is_file()


async def test_no_input_gets_a_server_error_and_every_answer_is_documented(
    admin_on_each_database: AdminSetup, ca_material: CaMaterial, tmp_path: Path
) -> None:
    admin = admin_on_each_database
    assert INSTALLED, "schemathesis is a test dependency: pip install '.[test]'"
    arguments = [
        SCHEMATHESIS,
        "run",
        f"{admin.server.admin_url}/admin/v1/openapi.json",
        "--tls-verify",
        str(ca_material.tls_cert),
        "--header",
        f"Authorization: Bearer {admin.admin_token}",
        "--checks",
        ",".join(CHECKS),
        "--phases",
        "examples,coverage,fuzzing",
        "--mode",
        "all",
        "--max-examples",
        EXAMPLES,
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
        "--generation-database",
        "none",
        "--generation-with-security-parameters",
        "false",
        "--no-color",
    ]
    if not LONG:
        arguments += ["--seed", "1"]  # the same cases on every CI run
    process = await asyncio.create_subprocess_exec(
        *arguments, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path
    )
    output, _ = await asyncio.wait_for(process.communicate(), TIME_LIMIT)
    assert process.returncode == 0, output.decode(errors="replace")
