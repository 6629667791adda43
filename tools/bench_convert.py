#!/usr/bin/env python
"""Conversion throughput against plain ``tar -xf`` of the same train archive, with peak memory.

    python tools/bench_convert.py --images 4000 --out bench-out/convert

Builds a fake ``ILSVRC2012_img_train.tar`` of ImageNet-like JPEGs (photo-like, ~100 KiB at ~440x390,
distinct bytes reused under new names so that building is fast), warms the page cache, then times:

* ``tar -xf`` of the outer archive (what the goal compares with: it writes the class tars);
* ``tar -xf`` of the outer archive plus every class tar (the full ImageFolder extraction);
* ``imagenet-pipe convert`` with 1 and all workers, ``--check decode`` (default) and ``--check header``,
  each at N and 2N images to show that memory does not grow with the dataset.

Peak memory is the largest proportional set size (PSS) of the whole process tree, sampled every
20 ms (shared pages of forked workers counted once).

    python tools/bench_convert.py --images 4000 --bombs 4 --out bench-out/convert-bombs

With ``--bombs K`` it measures only peak memory: the same archive converted with and without K
decompression bombs added (alternately a 16000x16000 PNG, 768 MB of pixels in 0.7 MB, and a 1 KB
JPEG whose header declares 30000x30000), ``--workers`` all cores, ``--check decode``.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

from imagenet_pipe.bench.machine import machine_record
from imagenet_pipe.classes import wnid_list
from imagenet_pipe.fakes import damage
from imagenet_pipe.fakes.images import ImageFactory


def build_archive(path: Path, images: int, distinct: int = 256, classes: int = 40, seed: int = 0,
                  bombs: int = 0) -> int:
    factory = ImageFactory(seed, "photo")
    pool = [factory.jpeg() for _ in range(distinct)]
    bomb_data = [damage.bomb_png(16_000, 16_000), damage.bomb_jpeg(30_000, 30_000)] if bombs else []
    wnids = wnid_list("imagenet1k")[:: 1000 // classes][:classes]
    per_class = images // classes
    rng = np.random.default_rng(seed)
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as outer:
        for c, wnid in enumerate(wnids):
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as inner:
                for n in range(per_class):
                    data = pool[int(rng.integers(distinct))]
                    if c < bombs and n == per_class // 2:  # one bomb in each of the first classes
                        data = bomb_data[c % 2]
                    info = tarfile.TarInfo(f"{wnid}_{c * 100000 + n}.JPEG")
                    info.size = len(data)
                    inner.addfile(info, io.BytesIO(data))
            info = tarfile.TarInfo(f"{wnid}.tar")
            info.size = buf.tell()
            buf.seek(0)
            outer.addfile(info, buf)
    return per_class * classes


def warm(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(16 << 20):
            pass


def tree_pss(pid: int) -> int:
    """Proportional set size (bytes) of pid and its descendants: memory shared by forked workers
    is counted once, not once per process as a sum of RSS would."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
            with open(f"/proc/{p}/task/{p}/children") as f:
                stack += [int(c) for c in f.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def timed(cmd: list[str], cwd: Path | None = None) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_pss(proc.pid))
        time.sleep(0.02)
    elapsed = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"{cmd} failed: {proc.stderr.read().decode()[-2000:]}")
    return elapsed, peak


def _record(runs: list, n: int, size: int, name: str, seconds: list[float], peak: int, **extra) -> None:
    med = float(np.median(seconds))
    runs.append({"what": name, "images": n, "bytes": size, "seconds_median": med, "seconds": seconds,
                 "images_per_s": n / med, "mb_per_s": size / med / 1e6, "peak_pss_mb": peak / 1e6, **extra})
    print(f"  {name:46s} {med:7.2f} s  {n / med:7.0f} img/s  {size / med / 1e6:6.0f} MB/s  "
          f"peak {peak / 1e6:6.0f} MB", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=4000)
    p.add_argument("--out", type=Path, default=Path("bench-out/convert"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--bombs", type=int, default=0, help="only compare peak memory with and without K bombs")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cores = os.cpu_count() or 1
    results: dict = {"machine": machine_record(args.out, cores), "runs": []}
    if args.bombs:
        bomb_memory(args, cores, results)
        return

    for scale in (1, 2):
        n_req = args.images * scale
        src = args.out / f"raw-{n_req}"
        src.mkdir(exist_ok=True)
        archive = src / "ILSVRC2012_img_train.tar"
        n = build_archive(archive, n_req) if not archive.exists() else n_req // 40 * 40
        size = archive.stat().st_size
        print(f"archive: {n} images, {size / 1e6:.0f} MB ({size / n / 1024:.1f} KiB/image)", flush=True)

        record = functools.partial(_record, results["runs"], n, size)

        if scale == 1:
            for name, full in (("tar -xf (outer archive)", False), ("tar -xf + every class tar (ImageFolder)", True)):
                times, peak = [], 0
                for _ in range(args.repeats):
                    warm(archive)
                    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
                        t, pk = timed(["tar", "-xf", str(archive.resolve())], cwd=Path(tmp))
                        if full:
                            start = time.perf_counter()
                            for inner in sorted(Path(tmp).glob("*.tar")):
                                d = Path(tmp) / inner.stem
                                d.mkdir()
                                subprocess.run(["tar", "-xf", str(inner), "-C", str(d)], check=True)
                                inner.unlink()
                            t += time.perf_counter() - start
                        times.append(t)
                        peak = max(peak, pk)
                record(name, times, peak)

        for workers in (1, cores):
            for check in ("decode", "header"):
                if scale == 2 and (workers, check) != (cores, "decode"):
                    continue
                times, peak = [], 0
                for _ in range(args.repeats):
                    warm(archive)
                    t, pk = convert_run(src, args.out / "shards", workers, check)
                    times.append(t)
                    peak = max(peak, pk)
                record(f"imagenet-pipe convert --workers {workers} --check {check}", times, peak,
                       workers=workers, check=check)
        shutil.rmtree(args.out / "shards", ignore_errors=True)

    (args.out / "convert-bench.json").write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out / 'convert-bench.json'}")


def convert_run(src: Path, dest: Path, workers: int, check: str = "decode") -> tuple[float, int]:
    shutil.rmtree(dest, ignore_errors=True)
    return timed([sys.executable, "-m", "imagenet_pipe", "convert", "imagenet1k", str(src), "--out", str(dest),
                  "--splits", "train", "--workers", str(workers), "--check", check, "--quiet"])


def bomb_memory(args: argparse.Namespace, cores: int, results: dict) -> None:
    """Peak PSS of the same conversion without and with decompression bombs in the archive."""
    for bombs in (0, args.bombs):
        src = args.out / f"raw-{args.images}-bombs{bombs}"
        src.mkdir(exist_ok=True)
        archive = src / "ILSVRC2012_img_train.tar"
        n = build_archive(archive, args.images, bombs=bombs) if not archive.exists() else args.images // 40 * 40
        size = archive.stat().st_size
        times, peak = [], 0
        for _ in range(args.repeats):
            warm(archive)
            t, pk = convert_run(src, args.out / "shards", cores)
            times.append(t)
            peak = max(peak, pk)
        manifest = json.loads((args.out / "shards" / "manifest.json").read_text())
        quarantined = [q["reason"][:60] for q in manifest["quarantine"]]
        _record(results["runs"], n, size, f"convert --workers {cores}, {bombs} bombs", times, peak,
                bombs=bombs, quarantined=quarantined)
    shutil.rmtree(args.out / "shards", ignore_errors=True)
    (args.out / "convert-bombs.json").write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out / 'convert-bombs.json'}")


if __name__ == "__main__":
    main()
