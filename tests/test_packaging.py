"""The wheel carries what the installed package needs: the presets are package data of
``imagenet_pipe.configs``, found through ``importlib.resources`` with no source tree around."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHECK = """
import sys
from pathlib import Path
import imagenet_pipe
from imagenet_pipe.config import config_root, list_presets, load_preset
from imagenet_pipe.loaders import resolve_config

site = Path(sys.argv[1])
assert Path(imagenet_pipe.__file__).is_relative_to(site), imagenet_pipe.__file__
assert Path(str(config_root())).is_relative_to(site), config_root()
assert resolve_config("train-224").mode == "train" and resolve_config("eval-384").size == 384
datasets = list_presets("datasets")
assert "imagenet1k" in datasets and "imagenet-c" in datasets, datasets
for name in datasets:
    assert load_preset(name, "datasets")["dataset"] == name
print("ok", len(list_presets()), len(datasets))
"""


def test_presets_load_from_the_installed_wheel(tmp_path):
    # built from a clean copy: setuptools reuses a build/ folder, where files since moved would linger
    source, wheels = tmp_path / "source", tmp_path / "wheels"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", "demo", "bench-out", "shards"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w",
                    str(wheels), str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("imagenet_pipe-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "imagenet_pipe/configs/train-224.yaml" in names and "imagenet_pipe/configs/datasets/imagenet1k.yaml" in names
    assert not any(n.startswith(("tools/", "tests/", "configs/")) for n in names)  # only the package is installed
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)  # what pip install puts into site-packages
    # run outside the repository, the wheel's copy first on the path (before this venv's editable install)
    proc = subprocess.run([sys.executable, "-c", CHECK, str(site)], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("ok ")
