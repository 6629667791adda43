#!/usr/bin/env python
"""A/B of two versions of the loaders on the same shards: wall img/s and process CPU ms per image
of the DALI loader, each version in its own process (the package imported from its own source
tree), alternated round by round so that a slow spell on a shared machine hits both.

    git worktree add /tmp/before <revision>
    python tools/loader_ab.py /tmp/before . shards/bench-photo --preset train-224 --rounds 3
    python tools/loader_ab.py /tmp/before . shards/bench-photo --preset eval-224 --set pil_parity=False

Each version reads the preset from its own ``configs/``. CPU time counts every thread and is far
less disturbed than wall time by other jobs on a shared machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _one(tree: str, root: str, preset: str, split: str, overrides: dict[str, object], passes: int) -> None:
    sys.path.insert(0, str(Path(tree).resolve()))  # this version's package, before the installed one
    import torch

    from imagenet_pipe.loaders import build_loader

    torch.set_num_threads(int(overrides.get("num_threads", 2)))
    loader = build_loader(root, split, str(Path(tree) / "configs" / f"{preset}.yaml"), device="cpu", **overrides)
    for _ in range(passes):
        it = iter(loader)
        for _ in range(3):  # warm-up
            next(it)
        cpu, wall, n = time.process_time(), time.perf_counter(), 0
        for batch in it:
            n += batch.images.shape[0]
        print(f"{n / (time.perf_counter() - wall):.1f} {(time.process_time() - cpu) / n * 1e3:.3f}", flush=True)


def _value(text: str) -> object:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"True": True, "False": False}.get(text, text)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("before", help="source tree of the first version (a checkout of the repository)")
    p.add_argument("after", help="source tree of the second version ('.' for the working tree)")
    p.add_argument("root", help="shard folder")
    p.add_argument("--preset", default="train-224")
    p.add_argument("--split", default="train")
    p.add_argument("--set", action="append", default=[], help="loader option, e.g. pil_parity=False")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--passes", type=int, default=2)
    p.add_argument("--_child", help=argparse.SUPPRESS)
    args = p.parse_args()
    overrides = {"num_threads": 2, "batch_size": 64, **{k: _value(v) for k, v in (s.split("=", 1) for s in args.set)}}
    if args._child:
        _one(args._child, args.root, args.preset, args.split, overrides, args.passes)
        return 0
    results: dict[str, list[tuple[float, float]]] = {args.before: [], args.after: []}
    for _ in range(args.rounds):
        for version in (args.before, args.after):
            out = subprocess.run([sys.executable, __file__, args.before, args.after, args.root, "--preset",
                                  args.preset, "--split", args.split, "--passes", str(args.passes), "--_child", version,
                                  *[a for s in args.set for a in ("--set", s)]],
                                 capture_output=True, text=True, check=True).stdout
            results[version] += [tuple(map(float, line.split())) for line in out.split("\n") if line.strip()]
    medians = {}
    for version, rows in results.items():
        rates, cpu = [r for r, _ in rows], [c for _, c in rows]
        medians[version] = statistics.median(rates)
        print(f"{version:28s} {args.preset} {' '.join(args.set):20s} median {medians[version]:7.0f} img/s "
              f"({min(rates):.0f}-{max(rates):.0f}), {statistics.median(cpu):.2f} CPU ms/img")
    print(f"after / before: {medians[args.after] / medians[args.before]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
