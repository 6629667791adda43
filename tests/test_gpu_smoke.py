"""tools/gpu_smoke.py on CPU, as CI runs it so that it never rots: every line PASS or INFO (the
checks that need CUDA say so), and the JSON report holds every check."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "gpu_smoke.py"
GPU_ONLY = {"nvjpeg", "eval GPU vs CPU", "host stall"}


@pytest.mark.slow
def test_gpu_smoke_runs_green_on_cpu(tmp_path):
    out = tmp_path / "smoke.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--out", str(out), "--work",
                           str(tmp_path / "work"), "--classes", "6", "--train-per-class", "8", "--val-images", "16"],
                          capture_output=True, text=True, timeout=900, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if re.match(r"^(PASS|FAIL|INFO)  ", line)]
    report = json.loads(out.read_text())
    assert report["finished"] is True and report["device"] == "cpu"
    assert len(lines) == len(report["checks"]) >= 11
    assert all(line.startswith(("PASS", "INFO")) for line in lines), "\n".join(lines)
    checks = report["checks"]
    assert report["summary"]["FAIL"] == 0 and report["summary"]["PASS"] >= 7
    for name in GPU_ONLY:
        assert checks[name]["status"] == "INFO" and checks[name]["detail"] == "skipped: no CUDA"
    assert checks["decoder backends"]["status"] == "PASS" and checks["decoder backends"]["detail"] == "ran: cpu"
    agreement = checks["eval DALI vs Pillow"]["data"]
    assert agreement["samples"] == 16 and "top1_agreement" in agreement  # EfficientNet-Lite0 ran
    assert Path(checks["quick bench"]["data"]["json"]).exists()
