"""`est-ca serve --workers 2`: two worker processes serve the same listeners, periodic work
runs once, a worker that dies is replaced, and SIGTERM stops them all with status 0.

The real `est-ca` command runs on the embedded default (SQLite, the demo CA) in an empty
directory; requests are made with curl and openssl, as a client would.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.helpers import require_tool
from tests.test_cli import EST_CA
from tests.test_quickstart import clean_environment, commands_in

STARTUP_SECONDS = 120


@dataclasses.dataclass
class Running:
    process: subprocess.Popen[bytes]
    directory: Path
    recipe: str
    http_port: int
    admin_port: int
    log_file: Path

    def workers(self) -> list[int]:
        """The pids of the serving process's children (from /proc)."""
        return children_of(self.process.pid)

    def log_lines(self) -> list[dict[str, object]]:
        lines = self.log_file.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]


def children_of(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after its parenthesis.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            children.append(int(entry.name))
    return sorted(children)


def wait_for(condition: object, what: str, timeout: float = 30) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def curl_status(url: str, *options: str) -> str:
    result = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", *options, url],
        capture_output=True,
        check=False,
        timeout=30,
    )
    return result.stdout.decode()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    for tool in ("openssl", "curl", "base64", "bash", "sed"):
        require_tool(tool)
    if not EST_CA.is_file():
        pytest.skip("the est-ca command is not installed next to this Python")
    directory = tmp_path_factory.mktemp("workers")
    http_port, admin_port = free_port(), free_port()
    log_file = directory / "serve.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [
                str(EST_CA),
                "serve",
                "--workers",
                "2",
                "--port",
                "0",
                "--http-port",
                str(http_port),
                "--admin-port",
                str(admin_port),
            ],
            cwd=directory,
            stdout=subprocess.PIPE,
            stderr=log,
            env=clean_environment(),
        )
    try:
        assert process.stdout is not None
        recipe = ""
        while "Stop with Ctrl-C" not in recipe:
            line = process.stdout.readline()
            if not line:
                raise AssertionError(f"serve exited before its recipe:\n{log_file.read_text()}")
            recipe += line.decode()
        served = Running(process, directory, recipe, http_port, admin_port, log_file)
        wait_for(
            lambda: sum(line.get("event") == "listening" for line in served.log_lines()) == 2,
            "both workers listening",
            STARTUP_SECONDS,
        )
        yield served
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)


def test_serve_with_two_workers_runs_two_worker_processes(running: Running) -> None:
    assert len(running.workers()) == 2


def test_the_log_lines_name_the_worker_that_wrote_them(running: Running) -> None:
    listening = [line for line in running.log_lines() if line.get("event") == "listening"]
    assert sorted(line["worker"] for line in listening) == [0, 1]  # type: ignore[type-var]


def test_an_enrollment_over_est_succeeds_through_the_workers(running: Running) -> None:
    commands = commands_in(running.recipe, "Enroll from another terminal", "Renew with")
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", commands],
        cwd=running.directory,
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert "demo.pem: OK" in result.stdout.decode()  # openssl verify, against the demo root


def test_ocsp_answers_good_for_the_enrolled_certificate(running: Running) -> None:
    enrolled = running.directory / "demo.pem"
    if not enrolled.is_file():
        test_an_enrollment_over_est_succeeds_through_the_workers(running)
    ca = running.directory / "est-ca-data" / "ca"
    ocsp_url = subprocess.run(
        ["openssl", "x509", "-noout", "-ocsp_uri", "-in", str(enrolled)],
        capture_output=True,
        check=True,
    ).stdout.decode()
    assert ocsp_url.startswith(f"http://127.0.0.1:{running.http_port}/")
    result = subprocess.run(
        [
            "openssl",
            "ocsp",
            "-issuer",
            str(ca / "issuing.pem"),
            "-cert",
            str(enrolled),
            "-url",
            ocsp_url.strip(),
            "-CAfile",
            str(ca / "root.pem"),
            "-verify_other",
            str(ca / "issuing-chain.pem"),
        ],
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert f"{enrolled}: good" in result.stdout.decode()


def test_the_admin_listener_answers_on_every_worker(running: Running) -> None:
    url = f"https://127.0.0.1:{running.admin_port}/admin/v1/ready"
    statuses = {curl_status(url, "-k") for _ in range(6)}
    assert statuses == {"200"}


def test_each_crl_is_published_once_and_one_worker_holds_the_maintenance_lease(
    running: Running,
) -> None:
    wait_for(
        lambda: any(line.get("event") == "lease taken" for line in running.log_lines()),
        "the maintenance lease taken",
    )
    time.sleep(6)  # another maintenance round: the other worker asks for the lease again
    lines = running.log_lines()
    published = [(line["ca"], line["number"]) for line in lines if line["event"] == "CRL published"]
    assert sorted(published) == [("issuing", 1), ("root", 1)]
    assert [line["lease"] for line in lines if line["event"] == "lease taken"] == ["maintenance"]


def test_a_killed_worker_is_replaced_and_the_service_keeps_answering(running: Running) -> None:
    before = running.workers()
    os.kill(before[0], signal.SIGKILL)
    wait_for(
        lambda: len(running.workers()) == 2 and before[0] not in running.workers(),
        "a replacement worker",
    )
    wait_for(
        lambda: sum(line.get("event") == "listening" for line in running.log_lines()) == 3,
        "the replacement listening",
        STARTUP_SECONDS,
    )
    crl = f"http://127.0.0.1:{running.http_port}/crl/issuing.crl"
    assert {curl_status(crl) for _ in range(6)} == {"200"}


def test_sigterm_stops_every_worker_and_exits_0(running: Running) -> None:
    workers = running.workers()
    running.process.send_signal(signal.SIGTERM)
    assert running.process.wait(timeout=60) == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    assert "Traceback" not in running.log_file.read_text()
