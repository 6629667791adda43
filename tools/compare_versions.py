#!/usr/bin/env python
"""Do two versions of the converter write the same bytes? Converts a set of fake downloads with
the checkout given by ``--old`` and with this one (each through its own command line, in its own
process) and compares the sha256 of every file of every output folder, manifests included.

    git archive <commit> | tar -x -C /tmp/old
    python tools/compare_versions.py --old /tmp/old
    python tools/compare_versions.py --old /tmp/old --ray        # this version also with --executor ray

Each case runs the old version with one worker and this one with every ``--workers`` value (and
the Ray executor, a Ray started on this machine for the run, loopback only): one reference per
case, so a difference between worker counts or executors shows up too.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (name, dataset, fake layout, extra convert options)
CASES = [
    ("1k-official", "imagenet1k", "official", []),
    ("1k-folder", "imagenet1k", "folder", []),
    ("21k-fall11", "imagenet21k", "fall11", ["--holdout-per-class", "2"]),
    ("21k-winter21", "imagenet21k", "winter21", []),
]


def cli(code: Path, *argv: str, env: dict[str, str] | None = None) -> None:
    """The command line of the checkout at ``code``."""
    subprocess.run([sys.executable, "-m", "imagenet_pipe", *argv], check=True, capture_output=True, timeout=600,
                   cwd=code, env={**os.environ, "PYTHONPATH": str(code), **(env or {})})


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--old", type=Path, required=True, help="the other checkout (its imagenet_pipe/ folder inside)")
    p.add_argument("--workers", default="1,2", help="worker counts this version converts with")
    p.add_argument("--ray", action="store_true", help="this version also with --executor ray")
    p.add_argument("--scale", default="3", help="fake size (imagenet-pipe fake --scale)")
    args = p.parse_args()
    base = Path(tempfile.mkdtemp(prefix="compare-"))
    runs = [(f"workers={w}", ["--workers", w], {}) for w in args.workers.split(",")]
    if args.ray:
        runs.append(("ray", ["--executor", "ray", "--workers", "2"], {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}))
    failures = 0
    for name, dataset, layout, extra in CASES:
        raw = base / name / "raw"
        cli(ROOT, "fake", dataset, str(raw), "--layout", layout, "--style", "small", "--scale", args.scale)
        common = ["convert", dataset, str(raw), "--shard-size", "7", "--quiet", *extra]
        cli(args.old.resolve(), *common, "--out", str(base / name / "old"), "--workers", "1")
        want = digests(base / name / "old")
        for run, options, env in runs:
            out = base / name / run
            cli(ROOT, *common, "--out", str(out), *options, env=env)
            got = digests(out)
            differ = sorted(f for f in want.keys() | got.keys() if want.get(f) != got.get(f))
            failures += bool(differ)
            print(f"{name}, this version {run}: {len(got)} files, "
                  + (f"DIFFERENT: {differ[:5]}" if differ else "identical to the old version's"))
    print(f"{failures} case(s) differ; folders in {base}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
