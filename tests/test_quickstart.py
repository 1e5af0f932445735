"""The README's first command: `est-ca serve` on the embedded default prints a recipe that works.

The service runs as the real `est-ca` command in an empty directory; the recipe it prints is
executed with bash exactly as a new user would paste it (openssl, curl, base64, sed).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import shlex
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.conftest import free_port
from tests.helpers import require_tool, run
from tests.test_cli import EST_CA, run_est_ca

PEM_ONLY = re.compile(
    r"\A(-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE-----\n)+\Z"
)


def commands_in(recipe: str, after: str, before: str) -> str:
    """The indented command lines between two headings, continuation lines kept."""
    block = recipe.split(after, 1)[1].split(before, 1)[0]
    return "\n".join(line[2:] for line in block.splitlines() if line.startswith("  "))


def clean_environment(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("EST_CA_")}, **extra}


class Serving:
    """A running `est-ca serve`: its recipe (stdout up to the last line) and its log."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.recipe = ""
        self.log = ""

    async def read_recipe(self) -> str:
        assert self.process.stdout is not None
        while "Stop with Ctrl-C" not in self.recipe:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout=120)
            if not line:
                await self.stop()
                raise AssertionError(f"the service exited before its recipe:\n{self.log}")
            self.recipe += line.decode()
        return self.recipe

    async def stop(self) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(self.process.communicate(), timeout=30)
        self.log += stderr.decode()
        assert self.process.returncode is not None
        return self.process.returncode


@contextlib.asynccontextmanager
async def serving(
    directory: Path, *options: str, environment: dict[str, str] | None = None
) -> AsyncIterator[Serving]:
    if not EST_CA.is_file():
        pytest.skip("the est-ca command is not installed next to this Python")
    process = await asyncio.create_subprocess_exec(
        str(EST_CA),
        "serve",
        *(options or ("--port", "0", "--http-port", str(free_port()), "--admin-port", "0")),
        cwd=directory,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment or clean_environment(),
    )
    served = Serving(process)
    try:
        yield served
    finally:
        returncode = await served.stop()
        assert returncode == 0, served.log
        assert "Traceback" not in served.log


@dataclasses.dataclass
class RecipeRun:
    """`est-ca serve` started in an empty directory and its recipe pasted into bash."""

    directory: Path
    recipe: str
    enrolled: str
    renewed: str


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory: pytest.TempPathFactory) -> RecipeRun:
    for tool in ("openssl", "curl", "base64", "bash", "sed"):
        require_tool(tool)
    directory = tmp_path_factory.mktemp("newcomer")

    async def paste() -> RecipeRun:
        async with serving(directory) as served:
            recipe = await served.read_recipe()
            outputs = []
            for heading, following in (
                ("Enroll from another terminal", "Renew with"),
                ("Renew with", "Stop with Ctrl-C"),
            ):
                commands = commands_in(recipe, heading, following)
                result = await run("bash", "-euo", "pipefail", "-c", commands, cwd=directory)
                assert result.returncode == 0, result.stderr.decode()
                outputs.append(result.stdout.decode())
        return RecipeRun(directory, recipe, *outputs)

    return asyncio.run(paste())


def certificate(run: RecipeRun, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((run.directory / name).read_bytes())


def test_serve_on_an_empty_directory_makes_a_demo_ca_and_places_one_order(
    recipe_run: RecipeRun,
) -> None:
    assert "DEMO CA (Test - not for production)" in recipe_run.recipe
    assert re.search(r"demo order:\s+[0-9A-Z]{12}, valid until", recipe_run.recipe)
    assert (recipe_run.directory / "est-ca-data" / "est-ca.db").is_file()
    assert (recipe_run.directory / "est-ca-data" / "ca" / "root.pem").is_file()


def test_the_recipe_enrolls_a_certificate_that_verifies_with_the_demo_identity(
    recipe_run: RecipeRun,
) -> None:
    assert recipe_run.enrolled.splitlines()[0] == "demo.pem: OK"
    assert "CN=Søren Ærø Ålborg" in recipe_run.enrolled


def test_the_recipe_trusts_the_demo_root_alone(recipe_run: RecipeRun) -> None:
    """The listener's certificate is issued by the demo CA: the root every client needs anyway
    is its one trust anchor (no `-k`, no second file)."""
    root = (recipe_run.directory / "est-ca-data" / "ca" / "root.pem").resolve()
    anchors = set(re.findall(r"--cacert (\S+)", recipe_run.recipe))
    assert anchors == {shlex.quote(str(root))}, recipe_run.recipe
    assert " -k " not in recipe_run.recipe
    assert "--insecure" not in recipe_run.recipe


def test_the_recipe_renews_with_the_same_subject_and_a_new_key(recipe_run: RecipeRun) -> None:
    first = certificate(recipe_run, "demo.pem")
    renewed = certificate(recipe_run, "renewed.pem")
    assert renewed.subject == first.subject
    assert renewed.serial_number != first.serial_number
    assert renewed.public_key() != first.public_key()


def test_the_recipe_saves_certificates_as_pem_with_nothing_around_them(
    recipe_run: RecipeRun,
) -> None:
    for name in ("demo.pem", "chain.pem", "renewed.pem"):
        assert PEM_ONLY.match((recipe_run.directory / name).read_text()), name


async def test_the_recipe_names_the_est_ca_command_by_its_absolute_path(
    recipe_run: RecipeRun,
) -> None:
    administer = re.search(r"Administer with `(.+) --help`", recipe_run.recipe)
    assert administer is not None, recipe_run.recipe
    words = shlex.split(administer.group(1))
    assert Path(words[0]) == EST_CA.absolute()
    elsewhere = recipe_run.directory / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    result = await run(*words, "status", "--json", cwd=elsewhere)
    assert result.returncode == 0, result.stderr.decode()
    data_dir = (recipe_run.directory / "est-ca-data").resolve()
    assert json.loads(result.stdout)["data_dir"] == str(data_dir)


async def test_a_second_start_places_no_new_demo_order_and_says_how_to_place_one(
    recipe_run: RecipeRun,
) -> None:
    async with serving(recipe_run.directory) as served:
        second = await served.read_recipe()
    assert not re.search(r"-u [0-9A-Z]{12}:", second), second
    assert "placed at the first start" in second
    place_another = commands_in(second, "Place another demo order", "Enroll from another")
    result = await run("bash", "-euo", "pipefail", "-c", place_another, cwd=Path("/"))
    assert result.returncode == 0, result.stderr.decode()
    assert "one-time code:" in result.stdout.decode()
    events = run_est_ca(
        "audit", "list", "--action", "order.created", "--json", cwd=recipe_run.directory
    )
    actors = [event["actor"] for event in json.loads(events.stdout)]
    assert actors[0] == "service:demo"
    assert [actor.split(":")[0] for actor in actors] == ["service", "admin"]


async def test_a_serve_on_a_port_in_use_names_the_port_and_how_to_change_it(
    recipe_run: RecipeRun,
) -> None:
    ports = [str(free_port()) for _ in range(3)]
    options = ("--port", ports[0], "--http-port", ports[1], "--admin-port", ports[2])
    async with serving(recipe_run.directory, *options) as served:
        await served.read_recipe()
        second = await run(EST_CA, "serve", *options, cwd=recipe_run.directory)
    assert second.returncode == 2
    # Besides structured log lines (JSON: here the warning that the CA certificates name the
    # first start's HTTP port), one line.
    [line] = [text for text in second.stderr.decode().splitlines() if not text.startswith("{")]
    assert "Traceback" not in second.stderr.decode()
    assert line.startswith(f"est-ca: port {ports[0]} on 127.0.0.1 (EST over HTTPS) is in use")
    for way_to_change in ("service.port in the configuration", "EST_CA_SERVICE_PORT", "--port"):
        assert way_to_change in line


async def test_a_start_warns_when_the_ca_certificates_name_another_base_url(
    recipe_run: RecipeRun,
) -> None:
    moved = clean_environment(EST_CA_PUBLICATION_BASE_URL="http://ca.example.net")
    async with serving(recipe_run.directory, environment=moved) as served:
        await served.read_recipe()
    warnings = [
        json.loads(line) for line in served.log.splitlines() if '"level": "warning"' in line
    ]
    named = {url for w in warnings if "does not publish" in w["event"] for url in w["urls"]}
    assert any(url.startswith("http://127.0.0.1:") for url in named), served.log
    assert all(w["base_url"] == "http://ca.example.net" for w in warnings if "urls" in w)
