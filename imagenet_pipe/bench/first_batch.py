"""Time to first batch over a large shard set, with and without DALI ``.idx`` files.

Without indexes DALI's webdataset reader walks every tar's headers while the pipeline is built;
with them it only parses small text files. The shard set is made of ``count`` tiny shards (a few
samples each, bytes shared) so that the per-shard start-up cost dominates, as it does for a real
1,024-shard ImageNet. Timed: loader construction (pipeline definition and build) + first batch,
in a process where DALI is already imported (its import is reported separately).
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..loaders.config import LoaderConfig
from ..loaders.shardset import ShardSet
from .data import make_many_shards
from .stages import SINGLE
from .timing import summary


def _shardset(root: Path, tars: list[str], per_shard: int) -> ShardSet:
    return ShardSet(root, "validation", tuple(Path(t).name for t in tars), tuple(per_shard for _ in tars))


def prepare(work: str | Path, source: str | Path, split: str, count: int, per_shard: int,
            tiny_images: bool = False) -> tuple[ShardSet, ShardSet]:
    """(with .idx, without .idx) shard sets over the same ``count`` tars (hard links where possible)."""
    from ..loaders.reader import placeholder_jpeg

    work = Path(work)
    image = placeholder_jpeg() if tiny_images else None
    tars, _ = make_many_shards(work / f"idx-{count}x{per_shard}", source, split, count, per_shard, image=image)
    bare = work / f"noidx-{count}x{per_shard}"
    bare.mkdir(parents=True, exist_ok=True)
    for t in tars:
        target = bare / Path(t).name
        if not target.exists():
            try:
                os.link(t, target)
            except OSError:  # another filesystem
                target.write_bytes(Path(t).read_bytes())
    with_idx = _shardset(Path(tars[0]).parent, tars, per_shard)
    without = _shardset(bare, [str(bare / Path(t).name) for t in tars], per_shard)
    assert with_idx.index_paths is not None and without.index_paths is None
    return with_idx, without


def _first_batch(shards: ShardSet, cfg: LoaderConfig, backend: str) -> float:
    start = time.perf_counter()
    from ..loaders import make_loader

    ldr = make_loader(shards, cfg, backend, SINGLE)
    it = iter(ldr)
    batch = next(it)
    if batch.images.is_cuda:
        import torch

        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    close = getattr(it, "close", None)
    if close:
        close()
    ldr.close()
    return elapsed


def time_to_first_batch(work: str | Path, source: str | Path, split: str, cfg: LoaderConfig, *, count: int = 1024,
                        per_shard: int = 4, repeats: int = 3, baseline: bool = True,
                        tiny_images: bool = False) -> dict[str, Any]:
    """Seconds from nothing to the first batch, median of ``repeats`` fresh loaders each way.
    The batch size is capped at the shard set's size."""
    t0 = time.perf_counter()
    import nvidia.dali  # noqa: F401 - the one-off import, reported apart from the per-loader time

    dali_import_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with_idx, without = prepare(work, source, split, count, per_shard, tiny_images)
    prepare_s = time.perf_counter() - t0
    total = count * per_shard
    cfg = replace(cfg, batch_size=min(cfg.batch_size, total))
    _first_batch(with_idx, cfg, "dali")  # untimed: first pipeline of the process (plugin and thread set-up)
    out: dict[str, Any] = {"shards": count, "samples_per_shard": per_shard, "mode": cfg.mode,
                           "images": "16x16 JPEGs" if tiny_images else f"copies of {split} samples",
                           "batch_size": cfg.batch_size, "dali_import_s": round(dali_import_s, 3),
                           "prepare_s": round(prepare_s, 2)}
    # alternate the two so that a slow spell on a shared machine hits both
    runs: dict[str, list[float]] = {"dali_with_idx": [], "dali_without_idx": []}
    for _ in range(repeats):
        runs["dali_with_idx"].append(_first_batch(with_idx, cfg, "dali"))
        runs["dali_without_idx"].append(_first_batch(without, cfg, "dali"))
    if baseline:
        runs["baseline"] = [_first_batch(without, cfg, "baseline") for _ in range(repeats)]
    for name, values in runs.items():
        out[name] = summary(values, "s")
    return out
