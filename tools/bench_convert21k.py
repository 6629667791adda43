#!/usr/bin/env python
"""Benchmark: convert a fake fall11-style ImageNet-21K download, project the time for the real one.

Builds ``fall11_whole.tar`` (a tar of ``<wnid>.tar`` per class, real fall11 wnids) holding a few
thousand photo-like JPEGs at ImageNet sizes. Generating photos is slow, so a pool of distinct
images is encoded once and its bytes are reused under many names; every sample is still read,
decoded and written separately, as in a real conversion. The download is then converted with
each ``--workers`` value and the rates are printed.

Projection for the real fall11 (14,197,122 images): the scan (tar header listing and catalog
build) runs in the parent process, so its measured per-image time is projected serially; the
inspection and writing phases are projected from the measured per-worker rate of the largest
worker count, assuming linear scaling over 64 workers (one per core) and storage fast enough
not to limit (the required read bandwidth is printed so that this assumption can be checked).

    python tools/bench_convert21k.py                 # 4,000 images, workers 1 and 2
    python tools/bench_convert21k.py --images 20000 --workers 1,2,4
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from imagenet_pipe.classes import wnid_list
from imagenet_pipe.conversion import convert
from imagenet_pipe.conversion.catalog import Catalog
from imagenet_pipe.fakes.common import tar_bytes, write_tar_file
from imagenet_pipe.fakes.images import ImageFactory
from imagenet_pipe.sources import open_source
from imagenet_pipe.sources.archive import Containers

FALL11_IMAGES = 14_197_122
FALL11_BYTES = 1.31e12  # fall11_whole.tar, docs/raw-layouts.md section 3.1
TARGET_CORES = 64


def build_fake(root: Path, images: int, classes: int, pool: int, seed: int) -> tuple[int, int]:
    """Write ``root/fall11_whole.tar``; returns (images, bytes of image data)."""
    rng = np.random.default_rng(seed)
    factory = ImageFactory(seed, "photo")
    photos = [factory.jpeg() for _ in range(pool)]
    fall11 = wnid_list("imagenet21k")
    wnids = sorted(fall11[int(i)] for i in rng.choice(len(fall11), classes, replace=False))
    # skewed class sizes, like the real release (most classes small, a few large)
    weights = rng.pareto(1.5, classes) + 0.2
    counts = np.maximum(1, np.round(weights / weights.sum() * images)).astype(int)
    counts[-1] += images - counts.sum()
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


def time_scan(root: Path, work: Path) -> float:
    """Seconds for the serial part: listing the tar of tars and building the sorted catalog."""
    start = time.perf_counter()
    containers = Containers()
    src = open_source("imagenet21k", root, work, "fall11")
    Catalog.build(src.scan(["train", "validation"], containers), containers, ["train", "validation"])
    return time.perf_counter() - start


def fmt_duration(seconds: float) -> str:
    h, rem = divmod(round(seconds), 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=4000)
    p.add_argument("--classes", type=int, default=40)
    p.add_argument("--pool", type=int, default=64, help="distinct JPEGs whose bytes are reused")
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts to run")
    p.add_argument("--shard-size", type=int, default=250)
    p.add_argument("--dir", type=Path, help="working folder (default: a temporary one, removed)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    workers = [int(w) for w in args.workers.split(",")]

    base = args.dir or Path(tempfile.mkdtemp(prefix="bench21k-"))
    try:
        t0 = time.perf_counter()
        images, nbytes = build_fake(base / "raw", args.images, args.classes, args.pool, args.seed)
        mean_kib = nbytes / images / 1024
        print(f"fake fall11_whole.tar: {images:,} images in {args.classes} classes, mean {mean_kib:.1f} KiB/image "
              f"({args.pool} distinct photo-like JPEGs at ImageNet sizes, bytes reused), "
              f"{(base / 'raw' / 'fall11_whole.tar').stat().st_size / 1e6:.0f} MB, built in "
              f"{time.perf_counter() - t0:.1f} s")
        print(f"machine: {os.cpu_count()} CPUs; default hygiene (check=decode: every image decoded at 1/8 scale)")

        scan_s = time_scan(base / "raw", base / "scan-work")
        print(f"scan (serial: tar headers + catalog): {scan_s:.2f} s = {images / scan_s:,.0f} images/s")
        results = {}
        for w in workers:
            out = base / f"out-w{w}"
            start = time.perf_counter()
            convert("imagenet21k", base / "raw", out, workers=w, shard_size=args.shard_size, progress=False,
                    log=lambda _msg: None, overwrite=True)
            total = time.perf_counter() - start
            parallel = max(total - scan_s, 1e-9)
            results[w] = (total, parallel)
            print(f"workers={w}: {total:.2f} s total = {images / total:,.0f} images/s "
                  f"({images / total / w:,.0f} per worker); inspect+write phases {parallel:.2f} s = "
                  f"{images / parallel / w:,.0f} images/s per worker")
            shutil.rmtree(out)
        w = max(results)
        per_worker = images / results[w][1] / w
        if len(results) > 1:
            w1 = min(results)
            eff = (images / results[w][1] / w) / (images / results[w1][1] / w1)
            print(f"scaling {w1} -> {w} workers: {eff:.0%} per-worker efficiency (inspect+write)")
        serial = FALL11_IMAGES / (images / scan_s)
        parallel = FALL11_IMAGES / (per_worker * TARGET_CORES)
        bandwidth = FALL11_BYTES / FALL11_IMAGES * per_worker * TARGET_CORES
        print(f"projection, fall11 ({FALL11_IMAGES:,} images, 1.31 TB) on {TARGET_CORES} cores: "
              f"scan {fmt_duration(serial)} (serial) + inspect/write {fmt_duration(parallel)} "
              f"({per_worker:,.0f} images/s/worker x {TARGET_CORES}, linear) = {fmt_duration(serial + parallel)}")
        print(f"  assumptions: per-worker rate of the {w}-worker run scales linearly to {TARGET_CORES} workers; "
              f"storage not limiting: it must read ~{bandwidth / 1e9:.1f} GB/s (and write as much) at that rate; "
              f"real images average {FALL11_BYTES / FALL11_IMAGES / 1024:.0f} KiB vs {mean_kib:.0f} KiB here")
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
