#!/usr/bin/env python
"""A/B of two versions of ``imagenet_pipe/loaders/dali.py`` on the same shards: wall img/s and
process CPU ms per image of the DALI loader, each version in its own process, alternated.

    git show HEAD:imagenet_pipe/loaders/dali.py > /tmp/dali_before.py
    python tools/loader_ab.py /tmp/dali_before.py shards/bench-photo --preset train-224 --rounds 3
    python tools/loader_ab.py /tmp/dali_before.py shards/bench-photo --preset eval-224 --set pil_parity=False

``live`` as a version means the working tree's file. CPU time counts every DALI thread and is far
less disturbed than wall time by other jobs on a shared machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path


def _one(version: str, root: str, preset: str, split: str, overrides: dict[str, object], passes: int) -> None:
    if version != "live":  # load the other version under the real module name, before anything imports it
        import imagenet_pipe.loaders.dali  # noqa: F401 - parent packages first

        mod = types.ModuleType("imagenet_pipe.loaders.dali")
        mod.__package__ = "imagenet_pipe.loaders"
        exec(compile(Path(version).read_text(), version, "exec"), mod.__dict__)
        sys.modules["imagenet_pipe.loaders.dali"] = mod
    import torch

    from imagenet_pipe.loaders import build_loader

    torch.set_num_threads(int(overrides.get("num_threads", 2)))
    loader = build_loader(root, split, preset, device="cpu", **overrides)
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
    p.add_argument("before", help="path of the other dali.py (or 'live')")
    p.add_argument("root")
    p.add_argument("--after", default="live")
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
            out = subprocess.run([sys.executable, __file__, args.before, args.root, "--preset", args.preset, "--split",
                                  args.split, "--passes", str(args.passes), "--_child", version,
                                  *[a for s in args.set for a in ("--set", s)]],
                                 capture_output=True, text=True, check=True).stdout
            results[version] += [tuple(map(float, line.split())) for line in out.split("\n") if line.strip()]
    for version, rows in results.items():
        rates, cpu = [r for r, _ in rows], [c for _, c in rows]
        print(f"{version:28s} {args.preset} {' '.join(args.set):20s} median {statistics.median(rates):7.0f} img/s "
              f"({min(rates):.0f}-{max(rates):.0f}), {statistics.median(cpu):.2f} CPU ms/img")
    return 0


if __name__ == "__main__":
    sys.exit(main())
