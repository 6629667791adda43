"""tools/train_example.py runs a few steps on the CPU, alone and as two processes under torchrun."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "train_example.py"


def _validation_count(shards: Path) -> int:
    return json.loads((shards / "_info.json").read_text())["splits"]["validation"]["num_samples"]


def _run(cmd: list[str]) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_training_example_single_process(shards1k):
    out = _run([sys.executable, str(SCRIPT), "--shards", str(shards1k), "--steps", "3", "--batch-size", "8",
                "--device", "cpu"])
    losses = [float(x) for x in re.findall(r"loss (\d+\.\d+)", out)]
    assert len(losses) >= 2 and all(0 < x < 20 for x in losses)
    assert f"on {_validation_count(shards1k)} images" in out  # evaluation covered every sample once


@pytest.mark.slow
def test_training_example_under_torchrun_gloo(shards1k):
    out = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                str(SCRIPT), "--shards", str(shards1k), "--steps", "2", "--batch-size", "4", "--device", "cpu"])
    assert "step 2/2" in out
    # two ranks, each its exact-once share, summed by all_reduce
    assert f"on {_validation_count(shards1k)} images" in out
