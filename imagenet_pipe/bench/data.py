"""Benchmark data: an ImageNet-like fake download converted by the project's own converter, and a
large set of tiny shards for the time-to-first-batch stage.

Synthetic photos cost about 50 ms each to draw, so a pool of distinct JPEGs is drawn once (in
parallel processes) and its bytes are reused under many names; every sample is still a separate
member of a shard that the loaders read and decode on their own, so the reuse does not change the
work a loader does.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from ..format import idx_name


def _draw(args: tuple[int, int, str]) -> list[bytes]:
    from ..fakes.images import iter_photos

    seed, count, style = args
    return list(iter_photos(seed, count, style))


def photo_pool(count: int, style: str = "photo", seed: int = 0, workers: int | None = None) -> list[bytes]:
    """``count`` distinct JPEGs (ImageNet-like sizes and bytes for ``style="photo"``)."""
    workers = max(1, min(workers or os.cpu_count() or 1, count))
    per = [count // workers + (i < count % workers) for i in range(workers)]
    jobs = [(seed * 1000 + i, n, style) for i, n in enumerate(per) if n]
    if len(jobs) == 1:
        return _draw(jobs[0])
    with ProcessPoolExecutor(len(jobs)) as pool:
        return [jpeg for chunk in pool.map(_draw, jobs) for jpeg in chunk]


def make_bench_shards(out: str | Path, *, train: int = 2560, val: int = 1280, classes: int = 100, pool: int = 800,
                      style: str = "photo", shard_size: int = 128, workers: int | None = None, seed: int = 0,
                      log: Callable[[str], None] = print) -> Path:
    """Fake ImageNet-1K (official layout, ``train`` + ``val`` images, ``pool`` distinct JPEGs) ->
    ``imagenet-pipe convert`` -> shards in ``out``. Returns ``out``; reuses a finished conversion."""
    from ..conversion import convert
    from ..fakes.imagenet1k import make_imagenet1k, plan

    out = Path(out)
    if (out / "_info.json").exists() and (out / "manifest.json").exists():
        log(f"reusing the shards in {out}")
        return out
    per_class = max(1, train // classes)
    # the plan is drawn with tiny images (fast), then every sample gets a pooled photo's bytes
    fake = plan(num_classes=classes, train_per_class=per_class, val_images=val, style="small", seed=seed,
                quirks=False)
    photos = photo_pool(pool, style, seed, workers)
    for i, key in enumerate(sorted(fake.data)):
        fake.data[key] = photos[i % len(photos)]
    raw = out.parent / f".{out.name}-raw"
    shutil.rmtree(raw, ignore_errors=True)
    make_imagenet1k(raw, "official", fake=fake)
    log(f"fake download ({len(fake.data)} images, {len(photos)} distinct) written; converting")
    convert("imagenet1k", raw, out, workers=workers, shard_size=shard_size, progress=False,
            real_labels=False, log=lambda _m: None)
    shutil.rmtree(raw, ignore_errors=True)
    return out


def make_many_shards(out: str | Path, source: str | Path, split: str = "validation", count: int = 1024,
                     per_shard: int = 4, image: bytes | None = None) -> tuple[list[str], list[str]]:
    """``count`` tiny shards of ``per_shard`` samples each, copied from the first samples of a
    converted split (bytes shared; ``image``: these JPEG bytes instead), with a DALI ``.idx``
    beside each. Returns (tar paths, idx paths)."""
    from ..conversion.writer import ShardWriter
    from ..format import iter_samples
    from ..loaders.shardset import ShardSet

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    src = ShardSet.open(source, split)
    samples: list[tuple[str, dict[str, bytes]]] = []
    try:
        for shard in list(range(len(src.names))) * per_shard:  # a split smaller than one shard's worth is cycled
            try:
                for key, sample in iter_samples(src.shard_path(shard)):
                    samples.append((key, sample))
                    if len(samples) >= per_shard:
                        break
            finally:
                src.release(shard)
            if len(samples) >= per_shard:
                break
    finally:
        src.close()
    tars, idxs = [], []
    for i in range(count):
        name = f"ttfb-{i:06d}.tar"
        if not ((out / name).exists() and (out / idx_name(name)).exists()):
            writer = ShardWriter(out, name, split)
            for j, (_, sample) in enumerate(samples):
                members = {ext: sample[ext] for ext in ("jpg", "cls") if ext in sample}
                if image is not None:
                    members["jpg"] = image
                writer.write(f"s{i:06d}_{j}", members)
            writer.close()
        tars.append(str(out / name))
        idxs.append(str(out / idx_name(name)))
    return tars, idxs


def main(argv: list[str] | None = None) -> int:
    """``python -m imagenet_pipe.bench.data OUT``: ImageNet-like benchmark shards (see tools/gpu_bench.sh)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m imagenet_pipe.bench.data", description=main.__doc__)
    p.add_argument("out", type=Path)
    p.add_argument("--train", type=int, default=2560, help="train images")
    p.add_argument("--val", type=int, default=1280, help="validation images")
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--pool", type=int, default=800, help="distinct photos (about 50 ms each to draw)")
    p.add_argument("--shard-size", type=int, default=128)
    p.add_argument("--style", default="photo")
    p.add_argument("--workers", type=int, default=os.cpu_count())
    args = p.parse_args(argv)
    make_bench_shards(args.out, train=args.train, val=args.val, classes=args.classes, pool=args.pool,
                      style=args.style, shard_size=args.shard_size, workers=args.workers)
    print(f"benchmark shards in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
