"""The shards of one split as the loaders see them: files, DALI indexes, per-shard counts, and the
sample ranges each rank owns."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..shards import idx_name


@dataclass(frozen=True)
class ShardSet:
    root: Path
    split: str
    names: tuple[str, ...]
    lengths: tuple[int, ...]
    num_classes: int | None = None

    @classmethod
    def open(cls, root: Path | str, split: str) -> ShardSet:
        """Read the split's shard list and counts from ``_info.json`` (written by the converter)."""
        root = Path(root)
        info_path = root / "_info.json"
        if not info_path.exists():
            raise FileNotFoundError(f"{info_path} not found: point the loader at a folder written by "
                                    "`imagenet-pipe convert`")
        info = json.loads(info_path.read_text())
        if split not in info.get("splits", {}):
            raise ValueError(f"split {split!r} not in {info_path} (has: {', '.join(info.get('splits', {}))})")
        meta = info["splits"][split]
        missing = [n for n in meta["filenames"] if not (root / n).exists()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} shard(s) of {split!r} missing in {root}, e.g. {missing[0]}")
        return cls(root, split, tuple(meta["filenames"]), tuple(int(n) for n in meta["shard_lengths"]),
                   info.get("num_classes"))

    @property
    def paths(self) -> list[str]:
        return [str(self.root / n) for n in self.names]

    @property
    def index_paths(self) -> list[str] | None:
        """DALI ``.idx`` files, or None when any is missing (DALI then scans the tars at start-up)."""
        paths = [self.root / idx_name(n) for n in self.names]
        return [str(p) for p in paths] if all(p.exists() for p in paths) else None

    @property
    def num_samples(self) -> int:
        return sum(self.lengths)

    def rank_range(self, rank: int, world: int) -> tuple[int, int]:
        """The contiguous global sample range DALI's reader gives ``shard_id=rank`` of ``world``."""
        n = self.num_samples
        return n * rank // world, n * (rank + 1) // world

    def segments(self, start: int, end: int) -> list[tuple[str, int, int]]:
        """(shard path, first sample, count) pieces covering global samples [start, end)."""
        out, offset = [], 0
        for path, length in zip(self.paths, self.lengths, strict=True):
            lo, hi = max(start, offset), min(end, offset + length)
            if lo < hi:
                out.append((path, lo - offset, hi - lo))
            offset += length
        return out


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0


def dist_info() -> DistInfo:
    """Rank and world size from torch.distributed when initialised, else torchrun's environment."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    except ImportError:
        pass
    return DistInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                    int(os.environ.get("LOCAL_RANK", 0)))
