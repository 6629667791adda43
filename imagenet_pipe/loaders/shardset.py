"""The shards of one split as the loaders see them: files, per-shard counts, and where each
sample's members lie (from the DALI ``.idx`` files, read lazily per shard).

A shard folder is local or in a bucket (``s3://bucket/prefix``). For a bucket, the manifest and the
indexes are fetched once into a local metadata folder, and the tars are read from a node-local
shard cache (:class:`imagenet_pipe.storage.ShardCache`): downloaded ahead of use as the epoch plan
reaches them, verified against the manifest, pinned while a reader holds them, evicted
least-recently-used above ``cache_limit``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterable
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


class LocalShards:
    """Shards that are files in the folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str) -> Path:
        return self.root / name

    def release(self, name: str) -> None:
        pass

    def prefetch(self, names: Iterable[str]) -> None:
        pass

    def close(self) -> None:
        pass


class BucketShards:
    """Shards in a bucket, read through a shard cache on this node. Each process (DataLoader
    workers included) opens its own :class:`~imagenet_pipe.storage.ShardCache` on the same folder,
    so a shard is downloaded once per node. Without ``cache_dir``, a temporary folder (removed by
    :meth:`close` in the process that made it) limited to ``TEMP_CACHE_LIMIT``."""

    def __init__(self, url: str, cache_dir: Path | str | None, cache_limit: int | str | None) -> None:
        from ..storage import TEMP_CACHE_LIMIT

        self.url, self._owner = url, os.getpid()
        self._made_dir = cache_dir is None
        self.cache_dir = Path(tempfile.mkdtemp(prefix="imagenet-pipe-cache-") if cache_dir is None else cache_dir)
        self.cache_limit = TEMP_CACHE_LIMIT if cache_dir is None and cache_limit is None else cache_limit
        self._caches: dict[int, object] = {}

    @property
    def cache(self):
        cache = self._caches.get(os.getpid())
        if cache is None:
            from ..storage import ShardCache

            cache = self._caches[os.getpid()] = ShardCache(self.url, self.cache_dir, self.cache_limit)
        return cache

    @property
    def root(self) -> Path:
        """The local metadata folder: ``_info.json``, manifest, ``.idx`` files (no tars)."""
        return self.cache.root

    def path(self, name: str) -> Path:
        return self.cache.path(name)

    def release(self, name: str) -> None:
        self.cache.release(name)

    def prefetch(self, names: Iterable[str]) -> None:
        self.cache.prefetch(names)

    def close(self) -> None:
        cache = self._caches.pop(os.getpid(), None)
        if cache is not None:
            cache.close()
        if self._made_dir and os.getpid() == self._owner:
            shutil.rmtree(self.cache_dir, ignore_errors=True)


def is_bucket_url(root: Path | str) -> bool:
    from ..storage.url import is_s3_url

    return is_s3_url(root)


def open_shards(root: Path | str, cache_dir: Path | str | None = None,
                cache_limit: int | str | None = None) -> LocalShards | BucketShards:
    """The shards of a folder or of ``s3://bucket/prefix`` (through the node's shard cache)."""
    if is_bucket_url(root):
        return BucketShards(str(root), cache_dir, cache_limit)
    return LocalShards(Path(root))


@dataclass(frozen=True)
class ShardSet:
    root: Path  # the folder holding _info.json and the .idx files (for a bucket: the local metadata copy)
    split: str
    names: tuple[str, ...]
    lengths: tuple[int, ...]
    num_classes: int | None = None
    store: LocalShards | BucketShards | None = field(default=None, compare=False, repr=False)
    _indexes: dict[int, ShardIndex] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def open(cls, root: Path | str, split: str, cache_dir: Path | str | None = None,
             cache_limit: int | str | None = None, store: LocalShards | BucketShards | None = None) -> ShardSet:
        """Read the split's shard list and counts from ``_info.json`` (written by the converter).
        ``root``: a folder or ``s3://bucket/prefix`` (then ``cache_dir``/``cache_limit`` set the
        node's shard cache, see :class:`BucketShards`); ``store``: the shards of a folder already
        opened with :func:`open_shards` (shared by its splits; the caller closes it)."""
        store = store or open_shards(root, cache_dir, cache_limit)
        return cls._from_info(store.root, split, store)

    @classmethod
    def _from_info(cls, root: Path, split: str, store: LocalShards | BucketShards) -> ShardSet:
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
        missing = [n for n in names if not (root / n).exists()] if isinstance(store, LocalShards) else []
        if missing:
            raise ShardSetError(f"{len(missing)} shard(s) of {split!r} missing in {root}, e.g. {missing[0]}")
        return cls(root, split, names, lengths, info.get("num_classes"), store)

    @property
    def remote(self) -> bool:
        return isinstance(self.store, BucketShards)

    @property
    def shards(self) -> LocalShards | BucketShards:
        return self.store or LocalShards(self.root)

    @property
    def paths(self) -> list[str]:
        """Where the shards lie in the folder (for a bucket: beside the metadata, where they are
        not: read them through :meth:`shard_path`)."""
        return [str(self.root / n) for n in self.names]

    def shard_path(self, shard: int) -> Path:
        """The local file of shard ``shard``; for a bucket, pinned in the cache until
        :meth:`release` (call it once per call to this)."""
        return self.shards.path(self.names[shard])

    def release(self, shard: int) -> None:
        self.shards.release(self.names[shard])

    def prefetch(self, shards: Iterable[int]) -> None:
        """Start fetching these shards in the background (a no-op for a local folder)."""
        self.shards.prefetch(self.names[s] for s in shards)

    def close(self) -> None:
        self.shards.close()

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

    def segments(self, start: int, end: int) -> list[tuple[int, int, int]]:
        """(shard number, first sample, count) pieces covering global samples [start, end)."""
        out, offset = [], 0
        for shard, length in enumerate(self.lengths):
            lo, hi = max(start, offset), min(end, offset + length)
            if lo < hi:
                out.append((shard, lo - offset, hi - lo))
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
            samples = read_idx(idx) if idx.exists() else self._index_tar(shard)
        except (OSError, ValueError, tarfile.TarError) as e:
            raise ShardSetError(f"{idx if idx.exists() else path}: cannot be indexed ({e}); "
                                "`imagenet-pipe verify` checks the folder") from e
        if len(samples) != self.lengths[shard]:
            raise ShardSetError(f"{path.name}: {len(samples)} samples, but _info.json says {self.lengths[shard]} "
                                "(a damaged or replaced shard; `imagenet-pipe verify` checks the folder)")
        return ShardIndex.from_components(samples)

    def _index_tar(self, shard: int) -> list[list[IdxComponent]]:
        path = self.shard_path(shard)
        try:
            return index_tar(path)
        finally:
            self.release(shard)


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
