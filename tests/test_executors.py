"""Choosing the executor: local processes by default, Ray only when asked for, and everything but
``--executor ray`` working where Ray is not installed (it is an optional extra)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from imagenet_pipe.conversion.executors import make_executor
from imagenet_pipe.conversion.workers import LocalExecutor
from imagenet_pipe.errors import OptionsError

ROOT = Path(__file__).resolve().parents[1]

# the command line in a process where `import ray` fails, as it does without the extra installed
WITHOUT_RAY = """
import sys
sys.modules["ray"] = None
from imagenet_pipe.cli import main
code = main(sys.argv[1:])
assert not any(m == "ray" or m.startswith("ray.") for m in sys.modules if sys.modules[m] is not None)
sys.exit(code)
"""


def cli_without_ray(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_RAY, *argv], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)


def test_without_ray_conversion_runs_locally_and_the_ray_executor_is_refused_in_one_line(tmp_path, raw1k):
    src = raw1k("official")
    done = cli_without_ray("convert", "imagenet1k", str(src), "--out", str(tmp_path / "out"), "--workers", "2",
                           "--quiet")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "manifest.json").exists()
    refused = cli_without_ray("convert", "imagenet1k", str(src), "--out", str(tmp_path / "ray"), "--executor", "ray")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "imagenet-pipe convert: error: the ray executor needs Ray, here and on every node: "
        "pip install 'imagenet-pipe[ray]'"]


def test_executor_options_are_checked():
    chosen = make_executor("local", workers=3)
    assert isinstance(chosen, LocalExecutor) and chosen.workers == 3
    mine = LocalExecutor(2)
    assert make_executor(mine) is mine
    with pytest.raises(OptionsError, match="unknown executor 'spark'; known: local, ray"):
        make_executor("spark")
    with pytest.raises(OptionsError, match="applies to the ray executor only"):
        make_executor("local", address="127.0.0.1:6379")


def test_local_workers_are_not_forked_from_a_process_that_loaded_ray():
    """A fork of a process holding Ray's gRPC threads can hang on a lock one of them held (it did,
    in this suite, before the Ray cluster moved into a process of its own)."""
    code = ("from imagenet_pipe.conversion.workers import default_start_method as d\n"
            "before = d()\nimport ray\nprint(before, d())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["fork", "forkserver"]
