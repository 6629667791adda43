"""Plan: per split, the good samples permuted with the seed and cut into shards whose lengths
differ by at most one. A pure function of the catalog, the inspection and the options."""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..format import shard_name
from .catalog import Catalog
from .inspection import OK, Inspections
from .options import ConvertError, ConvertOptions


@dataclass(frozen=True)
class ShardPlan:
    """One shard to write: its split, file name and catalog rows in shard order."""

    split: str
    name: str
    rows: np.ndarray


def plan_shards(catalog: Catalog, inspections: Inspections, opts: ConvertOptions, prefix: str, *,
                allow_empty_splits: bool = False, log: Callable[[str], None] = print) -> list[ShardPlan]:
    """Every shard of every split, in split order. A split whose every sample was quarantined is an
    error unless ``allow_empty_splits`` (then it has no shards)."""
    shards = []
    for split in opts.splits:
        rows = catalog.split_indices(split)
        good = rows[inspections.status[rows] == OK]  # canonical (sorted-key) order
        if len(good) == 0:
            if len(rows) and not allow_empty_splits:
                example = inspections.reasons[int(rows[0])]
                raise ConvertError(f"split {split!r}: all {len(rows)} samples were quarantined (e.g. "
                                   f"{catalog.columns['filename'][int(rows[0])]}: {example}); fix the source, "
                                   "or pass --allow-empty-splits to write the other splits")
            log(f"warning: split {split!r} has no usable samples")
            continue
        ordered = good[shuffle_order(opts.seed, split, len(good))]
        count = opts.num_shards.get(split) or math.ceil(len(good) / opts.shard_size[split])
        count = min(count, len(good))
        for j, part in enumerate(np.array_split(ordered, count)):  # lengths differ by <= 1
            shards.append(ShardPlan(split, shard_name(prefix, split, j, count), part))
    return shards


def shuffle_order(seed: int, split: str, n: int) -> np.ndarray:
    """The seeded permutation of a split's ``n`` good samples (each split its own stream)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(split.encode())]))
    return rng.permutation(n)
