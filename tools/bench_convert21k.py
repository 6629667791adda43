#!/usr/bin/env python
"""Benchmark: scan and convert a fake fall11-style ImageNet-21K download; project the real one.

Builds ``fall11_whole.tar`` (a tar of ``<wnid>.tar`` per class, real fall11 wnids, skewed class
sizes) of JPEGs: a pool of distinct images is encoded once and its bytes are reused under many
names; every sample is still listed, read, decoded and written separately, as in a real
conversion. Then, with the page cache warm:

* **scan** (``--scan-workers``): the scan phase alone (listing every class tar, the catalog), for
  each worker count, alternating over ``--repeats`` rounds (median reported); and the part of it
  that stays in one process however many workers list (the merge: replaying the listings in
  archive order, labels, the catalog), timed with every listing already done;
* **convert** (``--workers``): whole conversions with the local executor, the inspect + write
  phases' rate per worker from the run's own phase timings;
* **Ray** (``--ray``): the same conversion with ``--executor ray`` on a Ray started on this machine
  for the run (loopback only), as many tasks at a time as the largest ``--workers``; its shards
  are checked against the local run's.

Projection for the real fall11 (14,197,122 images, 1.31 TB) on 64 cores, storage assumed not to
limit (the read bandwidth it would need is printed): the scan at the measured per-worker rate x
64, or at the rate of its share that stays in one process (this process's CPU seconds with the
most workers) if that is lower; inspect + write at the measured per-worker rate x 64.

    python tools/bench_convert21k.py                                  # 4,000 images, workers 1 and 2
    python tools/bench_convert21k.py --images 100000 --classes 1000 --style small --workers "" \\
        --repeats 3                                                   # the scan alone, at scale
    python tools/bench_convert21k.py --images 16000 --classes 80 --workers 2 --ray --scan-workers "" \
        --convert-repeats 3                                           # local vs Ray, same machine
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from imagenet_pipe.classes import wnid_list
from imagenet_pipe.conversion import convert, resolve_options
from imagenet_pipe.conversion.scan import scan
from imagenet_pipe.conversion.workers import LocalExecutor
from imagenet_pipe.fakes.common import tar_bytes, write_tar_file
from imagenet_pipe.fakes.images import ImageFactory

FALL11_IMAGES = 14_197_122
FALL11_BYTES = 1.31e12  # fall11_whole.tar, docs/raw-layouts.md section 3.1
TARGET_CORES = 64
DONE = re.compile(r"^done in ([\d.]+) s \(scan ([\d.]+) s, inspect ([\d.]+) s, write ([\d.]+) s")


def build_fake(root: Path, images: int, classes: int, pool: int, style: str, seed: int) -> tuple[int, int]:
    """Write ``root/fall11_whole.tar``; returns (images, bytes of image data)."""
    rng = np.random.default_rng(seed)
    factory = ImageFactory(seed, style)
    photos = [factory.jpeg() for _ in range(pool)]
    fall11 = wnid_list("imagenet21k")
    wnids = sorted(fall11[int(i)] for i in rng.choice(len(fall11), classes, replace=False))
    # skewed class sizes, like the real release (most classes small, a few large)
    weights = rng.pareto(1.5, classes) + 0.2
    counts = np.maximum(1, np.round(weights / weights.sum() * images)).astype(int)
    counts[-1] = max(1, counts[-1] + images - counts.sum())
    sizes = []

    def class_tars():  # one class in memory at a time
        k = 0
        for wnid, count in zip(wnids, counts, strict=True):
            numbers = rng.choice(np.arange(1, 10 * max(count, 100)), count, replace=False)
            members = []
            for n in numbers:
                members.append((f"{wnid}_{int(n)}.JPEG", photos[k % pool]))
                sizes.append(len(photos[k % pool]))
                k += 1
            yield f"{wnid}.tar", tar_bytes(members)

    write_tar_file(root / "fall11_whole.tar", class_tars())
    return int(counts.sum()), sum(sizes)


class Replayed(LocalExecutor):
    """Hands the scan listings made beforehand: what is left is the scan's serial merge."""

    def __init__(self, listings: list[Any]) -> None:
        super().__init__(1)
        self.listings = listings

    def ordered_map(self, fn: Callable, items: Sequence) -> Any:
        return iter(self.listings)


class Recorder(LocalExecutor):
    """Lists in this process and keeps the listings for :class:`Replayed`."""

    def ordered_map(self, fn: Callable, items: Sequence) -> Any:
        self.listings = [fn(item) for item in items]
        return iter(self.listings)


def time_scan(root: Path, work: Path, executor: LocalExecutor) -> tuple[float, float, float]:
    """Seconds for the scan phase (listings and catalog) into a fresh work folder: wall clock, CPU
    of this process, CPU of its worker processes (on a shared machine the wall clock also counts
    the time other jobs held the cores)."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    opts = resolve_options("imagenet21k", root)
    before, start = os.times(), time.perf_counter()
    scan(opts, work, "imagenet21k", executor=executor, log=lambda _msg: None)
    wall, after = time.perf_counter() - start, os.times()
    return (wall, after.user + after.system - before.user - before.system,
            max(0.0, after.children_user + after.children_system - before.children_user - before.children_system))


def bench_scan(base: Path, images: int, workers: list[int], repeats: int) -> tuple[dict[int, float], float]:
    """Median scan seconds per worker count, and the median CPU seconds of this process with the
    most workers (the share that does not spread over workers: receiving and merging listings)."""
    recorder = Recorder(1)
    time_scan(base / "raw", base / "scan-work", recorder)  # also warms the page cache
    runs: dict[int, list[tuple[float, float, float]]] = {w: [] for w in workers}
    merge = []
    for r in range(repeats):
        for w in workers if r % 2 == 0 else workers[::-1]:
            runs[w].append(time_scan(base / "raw", base / "scan-work", LocalExecutor(w)))
        merge.append(time_scan(base / "raw", base / "scan-work", Replayed(recorder.listings))[0])
    medians = {w: statistics.median(r[0] for r in rs) for w, rs in runs.items()}
    for w, rs in runs.items():
        cpu = ", ".join(f"{main:.2f} + {pool:.2f}" for _, main, pool in rs)
        print(f"scan, {w} worker(s): median {medians[w]:.2f} s = {images / medians[w]:,.0f} images/s (wall: "
              f"{', '.join(f'{x[0]:.2f}' for x in rs)} s; CPU this process + workers: {cpu} s)")
    print(f"  its serial merge (listings done beforehand): median {statistics.median(merge):.2f} s = "
          f"{images / statistics.median(merge):,.0f} images/s")
    if len(workers) > 1:
        w1, w2 = min(workers), max(workers)
        print(f"  speed-up {w1} -> {w2} workers: {medians[w1] / medians[w2]:.2f}x")
    return medians, statistics.median(main for _, main, _ in runs[max(workers)])


def run_convert(base: Path, out: Path, workers: int, shard_size: int, **how: Any) -> tuple[dict[str, float], dict]:
    """One conversion; its phase seconds (from its own log) and its manifest."""
    lines: list[str] = []
    shutil.rmtree(out, ignore_errors=True)
    manifest = convert("imagenet21k", base / "raw", out, workers=workers, shard_size=shard_size, progress=False,
                       log=lines.append, **how)
    done = next(m for m in (DONE.match(line) for line in lines) if m)
    phases = dict(zip(("total", "scan", "inspect", "write"), map(float, done.groups()), strict=True))
    return phases, manifest


def report(name: str, runs: list[dict[str, float]], images: int, workers: int) -> float:
    """Print one configuration's conversions; the median inspect + write rate per worker."""
    rates = [images / (r["inspect"] + r["write"]) / workers for r in runs]
    phases = "; ".join(f"{r['total']:.1f} s (scan {r['scan']:.1f}, inspect {r['inspect']:.1f}, write {r['write']:.1f})"
                       for r in runs)
    print(f"{name}: inspect+write {statistics.median(rates):,.0f} images/s per worker, median of "
          f"{', '.join(f'{x:,.0f}' for x in rates)}; runs: {phases}")
    return statistics.median(rates)


def bench_convert(base: Path, images: int, args: argparse.Namespace, workers: list[int]) -> float | None:
    """Local conversions per worker count and, with --ray, Ray, alternating over --convert-repeats
    rounds; the median per-worker rate of the largest local run."""
    configs = [("local", w) for w in workers]
    if args.ray:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # a Ray of this machine: loopback only
        configs.append(("ray", max(workers, default=os.cpu_count() or 1)))
    runs: dict[tuple[str, int], list[dict[str, float]]] = {c: [] for c in configs}
    shards: dict[tuple[str, int], list[str]] = {}
    for r in range(args.convert_repeats):
        for kind, w in configs if r % 2 == 0 else configs[::-1]:
            phases, manifest = run_convert(base, base / "out", w, args.shard_size, executor=kind)
            runs[kind, w].append(phases)
            shards[kind, w] = [s["sha256"] for s in manifest["shards"]]
    rates = {}
    for (kind, w), got in runs.items():
        name = f"convert, local executor, workers={w}" if kind == "local" else \
            f"convert, ray executor (Ray started here for each run, in its scan phase), {w} tasks at a time"
        rates[kind, w] = report(name, got, images, w)
    print(f"shards identical across all runs: {len({tuple(v) for v in shards.values()}) == 1}")
    local = sorted(w for kind, w in rates if kind == "local")
    if len(local) > 1:
        print(f"scaling {local[0]} -> {local[-1]} workers: {rates['local', local[-1]] / rates['local', local[0]]:.0%} "
              "per-worker efficiency (inspect+write)")
    if args.ray and local:
        w = configs[-1][1]
        if ("local", w) in rates:
            print(f"ray / local per worker at {w}: {rates['ray', w] / rates['local', w]:.0%}")
    return rates["local", local[-1]] if local else None


def fmt_duration(seconds: float) -> str:
    h, rem = divmod(round(seconds), 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def project(images: int, scan_s: dict[int, float], main_cpu_s: float, per_worker: float | None,
            mean_kib: float) -> None:
    print(f"projection, fall11 ({FALL11_IMAGES:,} images, 1.31 TB) on {TARGET_CORES} cores:")
    if scan_s:
        w = max(scan_s)
        listed = images / scan_s[w] / w * TARGET_CORES
        rate = min(listed, images / main_cpu_s)
        print(f"  scan {fmt_duration(FALL11_IMAGES / rate)}: the listing at {listed:,.0f} images/s ({w}-worker rate "
              f"per worker x {TARGET_CORES}, linear), capped by this process's share at {images / main_cpu_s:,.0f} "
              f"images/s (its CPU seconds with {w} workers: receiving and merging the listings, the catalog)")
    if per_worker:
        parallel = FALL11_IMAGES / (per_worker * TARGET_CORES)
        bandwidth = FALL11_BYTES / FALL11_IMAGES * per_worker * TARGET_CORES
        print(f"  inspect/write {fmt_duration(parallel)} ({per_worker:,.0f} images/s/worker x {TARGET_CORES}, "
              f"linear; storage must read ~{bandwidth / 1e9:.1f} GB/s and write as much; real images average "
              f"{FALL11_BYTES / FALL11_IMAGES / 1024:.0f} KiB vs {mean_kib:.0f} KiB here)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=4000)
    p.add_argument("--classes", type=int, default=40)
    p.add_argument("--pool", type=int, default=64, help="distinct JPEGs whose bytes are reused")
    p.add_argument("--style", default="photo", help="photo (ImageNet-like sizes) or small (64-160 px)")
    p.add_argument("--scan-workers", default="1,2", help="comma-separated worker counts for the scan ('' to skip)")
    p.add_argument("--repeats", type=int, default=3, help="scan rounds (worker counts alternate)")
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts to convert with ('' to skip)")
    p.add_argument("--ray", action="store_true", help="also convert with --executor ray (a Ray started here)")
    p.add_argument("--convert-repeats", type=int, default=1, help="conversion rounds (configurations alternate)")
    p.add_argument("--shard-size", type=int, default=250)
    p.add_argument("--dir", type=Path, help="working folder (default: a temporary one, removed)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    scan_workers = [int(w) for w in args.scan_workers.split(",") if w]
    workers = [int(w) for w in args.workers.split(",") if w]

    base = args.dir or Path(tempfile.mkdtemp(prefix="bench21k-"))
    try:
        t0 = time.perf_counter()
        images, nbytes = build_fake(base / "raw", args.images, args.classes, args.pool, args.style, args.seed)
        mean_kib = nbytes / images / 1024
        print(f"fake fall11_whole.tar: {images:,} images in {args.classes} classes, mean {mean_kib:.1f} KiB/image "
              f"({args.pool} distinct {args.style} JPEGs, bytes reused), "
              f"{(base / 'raw' / 'fall11_whole.tar').stat().st_size / 1e6:.0f} MB, built in "
              f"{time.perf_counter() - t0:.1f} s")
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start; default hygiene "
              "(check=decode: every image decoded at 1/8 scale)")
        scan_s, main_cpu_s = bench_scan(base, images, scan_workers, args.repeats) if scan_workers else ({}, 0.0)
        per_worker = bench_convert(base, images, args, workers) if workers or args.ray else None
        project(images, scan_s, main_cpu_s, per_worker, mean_kib)
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
