"""tools.bench_soak runs rounds of mixed load and reports memory per round (never a figure)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_short_soak_samples_memory_descriptors_and_work_every_round(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    result = subprocess.run(
        [sys.executable, "-m", "tools.bench_soak", "--minutes", "0.15", "--warm-up", "0",
         "--per-round", "4", "--ocsp-seconds", "0.5", "--clients", "4",
         "--ca-key", "p256", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    samples = report["samples"]
    assert len(samples) >= 2
    assert samples[-1]["enrollments"] > samples[0]["enrollments"]
    assert samples[-1]["ocsp_requests"] > samples[0]["ocsp_requests"]
    assert samples[-1]["errors"] == 0
    assert all(s["rss_mb"] > 0 and s["fds"] > 0 and s["threads"] > 0 for s in samples)
    assert isinstance(report["slope_after_warm_up_mb_per_minute"], float)
    assert "slope after warm-up" in result.stdout
