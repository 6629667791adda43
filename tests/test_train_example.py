"""tools/train_example.py runs a few steps on the CPU, alone and as two processes under torchrun."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
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


@pytest.mark.slow
def test_killed_run_resumes_with_the_same_remaining_batches(shards1k, tmp_path):
    """kill -9 mid-epoch, then --resume: the keys of every step after the last checkpoint are
    those an uninterrupted run sees (same seed, same plan), across the epoch boundary."""
    base = [sys.executable, str(SCRIPT), "--shards", str(shards1k), "--batch-size", "4", "--device", "cpu",
            "--epochs", "3", "--size", "64"]
    _run([*base, "--log-keys", str(tmp_path / "reference.txt")])
    reference = (tmp_path / "reference.txt").read_text().splitlines()

    log, ckpt = tmp_path / "run.txt", tmp_path / "ckpt.pt"
    cmd = [*base, "--log-keys", str(log), "--checkpoint", str(ckpt), "--save-every", "1", "--resume"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    deadline = time.monotonic() + 300
    while (not log.exists() or len(log.read_text().splitlines()) < 5) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode()
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = log.read_text().splitlines()
    assert 5 <= len(before) < len(reference), "the run was not killed mid-way"

    out = _run(cmd)
    step = int(re.search(r"resumed at epoch \d+ \(global step (\d+)\)", out).group(1))
    after = log.read_text().splitlines()[len(before):]
    assert 1 <= step <= len(before)  # a step may have run after the last checkpoint: it is redone
    assert before[:step] + after == reference
