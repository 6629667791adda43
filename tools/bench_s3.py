#!/usr/bin/env python
"""Download throughput from an S3 server into the shard cache, against a local file copy.

    python -m tools.bench_s3 --out bench-out/s3 --repeats 3

Builds ImageNet-like shards with the project's converter (``imagenet_pipe.bench.data``), starts a
SeaweedFS server (``weed`` from the test extra) on free loopback ports with its data in ``--out``,
uploads the shards with ``imagenet-pipe sync``, then times, with the page cache warm for both
sides (the server's volumes and the local shards are read once first):

* ``copy``: ``shutil.copyfile`` of every shard into a fresh folder (the local-disk baseline);
* ``GET into memory``: one plain GET per shard, bytes dropped (what the server and HTTP give);
* ``cache, one stream``: ``ShardCache.path()`` of every shard in turn into a fresh cache folder;
* ``cache, prefetch N``: ``ShardCache.prefetch(all)`` with N threads, then ``path()`` of each;
* ``sync bucket -> local``: ``imagenet-pipe sync`` with 8 threads (also checks every sha256);
* ``cache, second pass``: ``path()`` of every shard again, all in the cache (no download);
* the DALI loader (train-224, CPU, one epoch each) from the local folder, from the bucket with a
  fresh cache folder (downloads on the way), and from the bucket again with that cache filled;
  and the time to its first batch from the local folder and from the bucket with an empty cache.

Writes ``results.json`` (machine record + every timing) in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from pathlib import Path

from imagenet_pipe.bench.data import make_bench_shards
from imagenet_pipe.bench.machine import machine_record
from imagenet_pipe.storage import S3Client, ShardCache, sync
from tests.s3server import SeaweedServer, find_weed, weed_unusable  # run from the repository root (python -m)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def read_all(paths: list[Path]) -> None:
    for p in paths:
        with open(p, "rb") as f:
            while f.read(8 << 20):
                pass


def copy_all(tars: list[Path], dst: Path) -> None:
    dst = fresh(dst)
    for p in tars:
        shutil.copyfile(p, dst / p.name)


def read_pass(cache: ShardCache, names: list[str]) -> None:
    for name in names:
        with cache.open(name):
            pass


def through_cache(url: str, cache_dir: Path, names: list[str], prefetch: int = 0) -> None:
    """A fresh cache folder, every shard through ``path()`` (after ``prefetch(all)`` if asked)."""
    with ShardCache(url, fresh(cache_dir), threads=max(prefetch, 1)) as cache:
        if prefetch:
            cache.prefetch(names)
        read_pass(cache, names)


def loader_epoch(root: str | Path, **kw) -> tuple[float, float, int]:
    """(seconds to the first batch, seconds for the whole epoch, images) of a fresh DALI loader."""
    from imagenet_pipe.loaders import build_loader

    start = time.perf_counter()
    with build_loader(root, "train", "train-224", device="cpu", batch_size=64, **kw) as loader:
        images, first = 0, None
        for batch in loader:
            first = first or time.perf_counter() - start
            images += batch.images.shape[0]
    return first, time.perf_counter() - start, images


def loader_runs(url: str, shards: Path, out: Path) -> dict[str, tuple[float, float, int]]:
    filled = fresh(out / "loader-cache")
    return {"loader, local folder": loader_epoch(shards),
            "loader, bucket, empty cache": loader_epoch(url, cache_dir=filled),
            "loader, bucket, cache filled": loader_epoch(url, cache_dir=filled)}


def run(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    shards = make_bench_shards(out / "shards", train=args.train, val=args.val, pool=args.pool,
                               shard_size=args.shard_size, workers=2)
    tars = sorted(shards.glob("*.tar"))
    total = sum(p.stat().st_size for p in tars)
    weed = find_weed()
    reason = weed_unusable(weed)
    if reason:
        raise SystemExit(reason)
    server = SeaweedServer(weed, fresh(out / "seaweedfs"))
    server.start()
    os.environ.update(server.env())
    try:
        S3Client().make_bucket("bench")
        url = "s3://bench/shards"
        sync(shards, url, progress=False)
        names = [p.name for p in tars]
        read_all(tars)
        timings: dict[str, list[float]] = {}
        loaders: dict[str, list[tuple[float, float, int]]] = {}
        client = S3Client()
        for _ in range(args.repeats):
            through_cache(url, out / "warm", names)  # the server's volumes into the page cache
            runs = {"copy": lambda: copy_all(tars, out / "copy"),
                    "GET into memory": lambda: [client.get(f"{url}/{n}") for n in names],
                    "cache, one stream": lambda: through_cache(url, out / "cache1", names),
                    f"cache, prefetch {args.threads}": lambda: through_cache(url, out / "cacheN", names, args.threads),
                    "sync bucket -> local": lambda: sync(url, fresh(out / "synced"), progress=False)}
            for what, fn in runs.items():
                timings.setdefault(what, []).append(timed(fn))
            with ShardCache(url, out / "cache1") as cache:
                timings.setdefault("cache, second pass", []).append(timed(lambda c=cache: read_pass(c, names)))
            for what, row in loader_runs(url, shards, out).items():
                loaders.setdefault(what, []).append(row)
    finally:
        server.stop()
    return {"machine": machine_record(shards), "shards": len(tars), "bytes": total, "timings_s": timings,
            "loader_first_s_epoch_s_images": loaders}


def report(result: dict) -> None:
    total, shards = result["bytes"], result["shards"]
    print(f"{shards} shards, {total / 1e6:.0f} MB; median of {len(next(iter(result['timings_s'].values())))}; "
          f"load average at the start {result['machine']['load_average_start']}")
    print(f"{'what':28s} {'seconds':>8s} {'MB/s':>8s}  (min-max MB/s)")
    for what, runs in result["timings_s"].items():
        med = statistics.median(runs)
        if what == "cache, second pass":  # nothing moves: the cost of path() on a cached shard
            print(f"{what:28s} {med:8.4f}  {med / shards * 1e3:.2f} ms per shard")
            continue
        print(f"{what:28s} {med:8.3f} {total / med / 1e6:8.0f}  ({total / max(runs) / 1e6:.0f}-"
              f"{total / min(runs) / 1e6:.0f})")
    print(f"{'loader (train-224, CPU)':28s} {'img/s':>8s} {'first batch s':>14s}")
    for what, runs in result.get("loader_first_s_epoch_s_images", {}).items():
        rates = [images / epoch for _, epoch, images in runs]
        print(f"{what:28s} {statistics.median(rates):8.0f} {statistics.median(r[0] for r in runs):14.2f}"
              f"  ({min(rates):.0f}-{max(rates):.0f} img/s)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="bench-out/s3")
    p.add_argument("--train", type=int, default=2560)
    p.add_argument("--val", type=int, default=640)
    p.add_argument("--pool", type=int, default=400, help="distinct photos drawn (bytes reused)")
    p.add_argument("--shard-size", type=int, default=640, help="samples per shard (640 -> about 64 MB)")
    p.add_argument("--threads", type=int, default=4, help="prefetch threads")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    result = run(args)
    Path(args.out, "results.json").write_text(json.dumps(result, indent=1) + "\n")
    report(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
