"""``imagenet-pipe demo``: the whole product on an embedded default, end to end.

A fake ImageNet-1K download in the official layout (photo-like JPEGs at ImageNet sizes, with the
real quirks: CMYK, PNG named .JPEG, grayscale, EXIF-rotated, truncated) -> converted to shards ->
verified -> read by the DALI loader for training and evaluation -> profiled against the baseline.
"""

from __future__ import annotations

import time
from pathlib import Path

from .conversion import convert
from .fakes.imagenet1k import make_imagenet1k
from .verification import verify


def _step(title: str) -> None:
    print(f"\n== {title} ==", flush=True)


def run_demo(out: Path, workers: int | None = None, device: str = "auto", scale: float = 1.0) -> int:
    out = Path(out)
    raw, shards, bench = out / "raw", out / "shards", out / "bench"

    _step(f"1/5 fake ImageNet-1K download (official layout) in {raw}")
    if not (raw / "ILSVRC2012_img_train.tar").exists():
        t = time.perf_counter()
        # at scale 1, enough training images (1,600) for the profiler's steady-state windows at batch 64
        fake = make_imagenet1k(raw, "official", num_classes=max(6, round(20 * scale)),
                               train_per_class=max(4, round(80 * scale)), val_images=max(10, round(100 * scale)))
        print(f"{len(fake.samples)} images written in {time.perf_counter() - t:.1f} s")
    for f in sorted(raw.iterdir()):
        print(f"  {f.name:40s} {f.stat().st_size / 1e6:8.1f} MB")

    _step(f"2/5 convert -> {shards}")
    manifest = convert("imagenet1k", raw, shards, workers=workers, shard_size={"train": 32, "validation": 16},
                       log=print)
    print(f"{len(manifest['shards'])} shards; indexes: _info.json, info.json, *.idx, imagenet1k-*.json (wids), "
          "sizes.json, classes.tsv, manifest.json")

    _step("3/5 verify (checksums, .idx against tars, counts, every image decoded)")
    report = verify(shards, decode=True, workers=workers, progress=False, log=print)
    for problem in report.problems:
        print(f"  {problem}")
    if not report.ok:
        return 1

    _step("4/5 DALI loader: one training epoch and one exact-once evaluation pass")
    from .loaders import build_loader

    for split, preset in (("train", "train-224"), ("validation", "eval-224")):
        loader = build_loader(shards, split, preset, batch_size=32, device=device, return_keys=True)
        t, seen, first = time.perf_counter(), 0, None
        for batch in loader:
            first = first or batch
            seen += len(batch.keys)
        elapsed = time.perf_counter() - t
        where = "GPU (mixed nvJPEG)" if loader.device_id is not None else "CPU (DALI CPU operators)"
        print(f"{split:10s} {preset}: {seen} samples in {len(loader)} batches on {where}, "
              f"{seen / elapsed:.0f} img/s; first batch {tuple(first.images.shape)} {first.images.dtype}, "
              f"labels {first.labels[:4].tolist()}, keys {first.keys[:2]}")
        loader.close()

    _step(f"5/5 profile: images/s per stage, DALI vs baseline -> {bench}")
    from .bench import BenchOptions, run_bench

    options = BenchOptions(presets=("train-224",), device=device, batch_size=64, out_dir=bench).quick()
    result = run_bench(shards, options)
    written = ", ".join(Path(v).name for k, v in result["outputs"].items() if k != "png_skipped")
    if result["errors"]:
        print(f"\n{len(result['errors'])} profiler stage(s) failed (listed above and in {bench / 'bench.json'})")
        return 1
    print(f"\ndone: shards in {shards}, profile in {bench} ({written})")
    return 0
