"""tools.bench runs end to end and writes the JSON that compares commits (never a figure)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATHS = (
    "simpleenroll_basic_new_connection",
    "simpleenroll_basic_keep_alive",
    "simplereenroll_mtls_new_connection",
    "cacerts_https_new_connection",
    "cacerts_https_keep_alive",
    "ocsp_get_preproduced",
    "ocsp_post_nonce",
)
CEILINGS = ("sign_1_thread", "sign_2_threads", "sign_2_processes")


def test_the_quick_benchmark_writes_every_path_with_its_ceiling_and_ratio(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    # The smallest run that still crosses every path: a P-256 CA (no RSA-3072 issuing key to
    # make), few requests, short timed measurements, a small CRL.
    result = subprocess.run(
        [sys.executable, "-m", "tools.bench", "--quick", "--json", str(out),
         "--ca-key", "p256", "--enrollments", "4", "--seconds", "0.2", "--clients", "4",
         "--client-processes", "1", "--crl-entries", "200"],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    paths = report["paths"]
    for path in PATHS:
        entry = paths[path]
        assert entry["ceiling"] in paths, path
        for key in ("rate", "ratio", "cpu_ratio", "p50_ms", "p99_ms", "server_cpu_ms_per_request"):
            assert set(entry[key]) == {"min", "median", "max"}, (path, key)
            assert all(isinstance(v, float) for v in entry[key].values()), (path, key)
    for ceiling in CEILINGS:
        assert isinstance(paths[ceiling]["rate"]["median"], float)
    crl = report["crl"]
    for key in ("regeneration_seconds", "ocsp_rate_during", "ocsp_p99_ms_during"):
        assert isinstance(crl[key], float), key
    assert report["peak_rss_mb"]
    assert all(isinstance(v, float) for v in report["peak_rss_mb"])
    assert (
        "| path | est-ca /s | ceiling | ceiling /s | ratio | CPU/request ratio |" in result.stdout
    )


def test_the_ocsp_only_benchmark_writes_the_ocsp_paths_and_their_flame_graphs(
    tmp_path: Path,
) -> None:
    out = tmp_path / "bench.json"
    profiles = tmp_path / "profiles"
    result = subprocess.run(
        [sys.executable, "-m", "tools.bench", "--only-ocsp", "--quick", "--json", str(out),
         "--ca-key", "p256", "--enrollments", "2", "--seconds", "0.2", "--clients", "4",
         "--client-processes", "1", "--profile-ocsp", str(profiles)],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    paths = report["paths"]
    for path in ("ocsp_get_preproduced", "ocsp_post_nonce"):
        assert set(paths[path]["cpu_ratio"]) == {"min", "median", "max"}
    assert not set(CEILINGS) & set(paths)
    assert "cacerts_https_keep_alive" not in paths
    assert report["crl"] is None
    assert {p.name for p in profiles.glob("*.svg")} == {
        "ocsp-get-p256.svg",
        "ocsp-post-nonce-p256.svg",
    }
