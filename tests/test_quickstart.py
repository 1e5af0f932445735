"""The README's first command: `est-ca serve` on the embedded default prints a recipe that works.

The service runs as a real process in an empty directory; the recipe it prints is executed
with bash exactly as a new user would paste it (openssl, curl, base64).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

from cryptography import x509

from tests.conftest import free_port
from tests.helpers import require_tool, run


def commands_in(recipe: str, after: str, before: str) -> str:
    """The indented command lines between two headings, continuation lines kept."""
    block = recipe.split(after, 1)[1].split(before, 1)[0]
    return "\n".join(line[2:] for line in block.splitlines() if line.startswith("  "))


async def test_serve_on_an_empty_directory_prints_a_recipe_that_enrolls_and_renews(
    tmp_path: Path,
) -> None:
    for tool in ("openssl", "curl", "base64", "bash"):
        require_tool(tool)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "est_ca",
        "serve",
        "--port",
        "0",
        "--http-port",
        str(free_port()),
        "--admin-port",
        "0",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.startswith("EST_CA_")},
    )
    assert process.stdout is not None
    try:
        recipe = ""
        while "Stop with Ctrl-C" not in recipe:
            line = await asyncio.wait_for(process.stdout.readline(), timeout=120)
            assert line, "the service exited before printing its recipe"
            recipe += line.decode()
        assert "DEMO CA (Test - not for production)" in recipe
        assert re.search(r"demo order:\s+[0-9A-Z]{12}, valid until", recipe)

        enroll = commands_in(recipe, "Enroll from another terminal", "Renew with")
        result = await run("bash", "-euo", "pipefail", "-c", enroll, cwd=tmp_path)
        assert result.returncode == 0, result.stderr.decode()
        assert result.stdout.decode().splitlines()[0] == "demo.pem: OK"
        assert "CN=Søren Ærø Ålborg" in result.stdout.decode()

        renew = commands_in(recipe, "Renew with", "Stop with Ctrl-C")
        result = await run("bash", "-euo", "pipefail", "-c", renew, cwd=tmp_path)
        assert result.returncode == 0, result.stderr.decode()
        first = x509.load_pem_x509_certificate((tmp_path / "demo.pem").read_bytes())
        renewed = x509.load_pem_x509_certificate((tmp_path / "renewed.pem").read_bytes())
        assert renewed.subject == first.subject
        assert renewed.serial_number != first.serial_number

        data = tmp_path / "est-ca-data"
        assert (data / "est-ca.db").is_file()
        assert (data / "ca" / "root.pem").is_file()
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, stderr.decode()
    assert b"Traceback" not in stderr
