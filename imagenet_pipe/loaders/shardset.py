"""The shards of one split as the loaders see them: files, per-shard counts, and where each
sample's members lie (from the DALI ``.idx`` files, read lazily per shard)."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ShardError
from ..format import IdxComponent, idx_name, index_tar, read_idx


class ShardSetError(ShardError):
    """A shard folder the loaders cannot use (missing, unreadable or inconsistent files)."""


@dataclass(frozen=True)
class ShardIndex:
    """Where the members of a shard's samples lie (-1 size: member missing)."""

    keys: list[str]
    cls_offset: np.ndarray
    cls_size: np.ndarray
    jpg_offset: np.ndarray
    jpg_size: np.ndarray

    @classmethod
    def from_components(cls, samples: list[list[IdxComponent]]) -> ShardIndex:
        n = len(samples)
        table = np.full((4, n), -1, dtype=np.int64)
        keys = []
        for i, components in enumerate(samples):
            keys.append(components[0].name.rsplit("/", 1)[-1].split(".", 1)[0])
            for c in components:
                if c.ext == "cls":
                    table[0, i], table[1, i] = c.offset, c.size
                elif c.ext == "jpg":
                    table[2, i], table[3, i] = c.offset, c.size
        return cls(keys, *table)


@dataclass(frozen=True)
class ShardSet:
    root: Path
    split: str
    names: tuple[str, ...]
    lengths: tuple[int, ...]
    num_classes: int | None = None
    _indexes: dict[int, ShardIndex] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def open(cls, root: Path | str, split: str) -> ShardSet:
        """Read the split's shard list and counts from ``_info.json`` (written by the converter)."""
        root = Path(root)
        info_path = root / "_info.json"
        if not info_path.exists():
            raise ShardSetError(f"{info_path} not found: point the loader at a folder written by "
                                "`imagenet-pipe convert`")
        try:
            info = json.loads(info_path.read_text())
            splits = info["splits"]
        except (ValueError, KeyError, TypeError) as e:
            raise ShardSetError(f"{info_path} is not a valid _info.json ({e}); rerun `imagenet-pipe convert`") from e
        if split not in splits:
            raise ShardSetError(f"split {split!r} not in {info_path} (has: {', '.join(splits)})")
        meta = splits[split]
        names, lengths = tuple(meta["filenames"]), tuple(int(n) for n in meta["shard_lengths"])
        if len(names) != len(lengths) or not names or min(lengths) < 1:
            raise ShardSetError(f"{info_path}: split {split!r} lists {len(names)} shards and {len(lengths)} lengths")
        missing = [n for n in names if not (root / n).exists()]
        if missing:
            raise ShardSetError(f"{len(missing)} shard(s) of {split!r} missing in {root}, e.g. {missing[0]}")
        return cls(root, split, names, lengths, info.get("num_classes"))

    @property
    def paths(self) -> list[str]:
        return [str(self.root / n) for n in self.names]

    @property
    def index_paths(self) -> list[str] | None:
        """DALI ``.idx`` files, or None when any is missing."""
        paths = [self.root / idx_name(n) for n in self.names]
        return [str(p) for p in paths] if all(p.exists() for p in paths) else None

    @property
    def num_samples(self) -> int:
        return sum(self.lengths)

    @property
    def fingerprint(self) -> str:
        """Identifies the shard list and counts (recorded in loader state, checked on resume)."""
        text = json.dumps([self.split, list(self.names), list(self.lengths)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def rank_range(self, rank: int, world: int) -> tuple[int, int]:
        """The global sample range rank ``rank`` of ``world`` evaluates (see :mod:`.plan`)."""
        from .plan import rank_range

        return rank_range(self.num_samples, rank, world)

    def segments(self, start: int, end: int) -> list[tuple[str, int, int]]:
        """(shard path, first sample, count) pieces covering global samples [start, end)."""
        out, offset = [], 0
        for path, length in zip(self.paths, self.lengths, strict=True):
            lo, hi = max(start, offset), min(end, offset + length)
            if lo < hi:
                out.append((path, lo - offset, hi - lo))
            offset += length
        return out

    def locate(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(shard number, position in the shard) of global sample ids."""
        ends = np.cumsum(self.lengths)
        shard = np.searchsorted(ends, ids, side="right")
        return shard, np.asarray(ids) - (ends[shard] - np.asarray(self.lengths)[shard])

    def index(self, shard: int) -> ShardIndex:
        """The member table of one shard, from its ``.idx`` (or, without one, by reading the tar)."""
        cached = self._indexes.get(shard)
        if cached is None:
            cached = self._indexes[shard] = self._load_index(shard)
        return cached

    def _load_index(self, shard: int) -> ShardIndex:
        path = self.root / self.names[shard]
        idx = path.with_name(idx_name(path.name))
        try:
            samples = read_idx(idx) if idx.exists() else index_tar(path)
        except (OSError, ValueError, tarfile.TarError) as e:
            raise ShardSetError(f"{idx if idx.exists() else path}: cannot be indexed ({e}); "
                                "`imagenet-pipe verify` checks the folder") from e
        if len(samples) != self.lengths[shard]:
            raise ShardSetError(f"{path.name}: {len(samples)} samples, but _info.json says {self.lengths[shard]} "
                                "(a damaged or replaced shard; `imagenet-pipe verify` checks the folder)")
        return ShardIndex.from_components(samples)


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
