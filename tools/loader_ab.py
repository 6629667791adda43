#!/usr/bin/env python
"""A/B of two versions of the loaders on the same shards: wall img/s and CPU ms per image, each
version in its own process (the package imported from its own source tree), alternated round by
round so that a slow spell on a shared machine hits both. ``--backends`` picks each side's loader
(default: the DALI loader on both), so the same tree can also be compared with its baseline.

    git worktree add /tmp/before <revision>
    python tools/loader_ab.py /tmp/before . shards/bench-photo --preset train-224 --rounds 3
    python tools/loader_ab.py /tmp/before . shards/bench-photo --preset eval-224 --set pil_parity=False
    python tools/loader_ab.py . . shards/bench-photo --preset train-224-rand --backends baseline dali

Each version reads the preset from its own ``configs/``. CPU time counts every thread of the process
and of its DataLoader workers (reaped at the end of each pass), over the whole pass, and is far less
disturbed than wall time by other jobs on a shared machine; img/s leaves out 3 warm-up batches.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _cpu_seconds() -> float:
    """This process's CPU time and that of its reaped children (DataLoader workers)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _one(tree: str, root: str, preset: str, split: str, overrides: dict[str, object], passes: int,
         backend: str) -> None:
    sys.path.insert(0, str(Path(tree).resolve()))  # this version's package, before the installed one
    import torch

    from imagenet_pipe.loaders import build_loader

    torch.set_num_threads(int(overrides.get("num_threads", 2)))
    loader = build_loader(root, split, str(Path(tree) / "configs" / f"{preset}.yaml"), device="cpu",
                          backend=backend, **overrides)
    for _ in range(passes):
        cpu, total = _cpu_seconds(), 0
        it = iter(loader)
        for _ in range(3):  # warm-up
            total += next(it).images.shape[0]
        wall, n = time.perf_counter(), 0
        for batch in it:
            n += batch.images.shape[0]
        rate = n / (time.perf_counter() - wall)
        del it  # ends the pass: the workers exit and are reaped
        print(f"{rate:.1f} {(_cpu_seconds() - cpu) / (n + total) * 1e3:.3f}", flush=True)


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
    p.add_argument("--backends", nargs=2, default=["dali", "dali"], metavar=("BEFORE", "AFTER"),
                   help="loader backend of each side (dali, baseline)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--passes", type=int, default=2)
    p.add_argument("--_child", help=argparse.SUPPRESS)
    p.add_argument("--_backend", help=argparse.SUPPRESS)
    args = p.parse_args()
    overrides = {"num_threads": 2, "batch_size": 64, **{k: _value(v) for k, v in (s.split("=", 1) for s in args.set)}}
    if args._child:
        _one(args._child, args.root, args.preset, args.split, overrides, args.passes, args._backend)
        return 0
    sides = [(args.before, args.backends[0]), (args.after, args.backends[1])]
    results: dict[tuple[str, str], list[tuple[float, float]]] = {side: [] for side in sides}
    for _ in range(args.rounds):
        for version, backend in sides:
            out = subprocess.run([sys.executable, __file__, args.before, args.after, args.root, "--preset",
                                  args.preset, "--split", args.split, "--passes", str(args.passes), "--_child", version,
                                  "--_backend", backend, *[a for s in args.set for a in ("--set", s)]],
                                 capture_output=True, text=True, check=True).stdout
            results[(version, backend)] += [tuple(map(float, line.split())) for line in out.split("\n") if line.strip()]
    medians, cpus = {}, {}
    for (version, backend), rows in results.items():
        rates, cpu = [r for r, _ in rows], [c for _, c in rows]
        medians[version, backend], cpus[version, backend] = statistics.median(rates), statistics.median(cpu)
        print(f"{version + ' ' + backend:28s} {args.preset} {' '.join(args.set):20s} median "
              f"{medians[version, backend]:7.0f} img/s ({min(rates):.0f}-{max(rates):.0f}), "
              f"{cpus[version, backend]:.2f} CPU ms/img")
    before, after = sides
    print(f"after / before: {medians[after] / medians[before]:.2f}x img/s, {cpus[before] / cpus[after]:.2f}x "
          "less CPU per image")
    return 0


if __name__ == "__main__":
    sys.exit(main())
