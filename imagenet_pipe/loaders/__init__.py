"""Loaders over converted shards. ``build_loader`` is the public door; one module per backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .common import Batch, KeyedBatch, LoaderDataError
from .config import LoaderConfig, LoaderConfigError, resolve_config
from .shardset import DistInfo, ShardSet, ShardSetError, dist_info

BACKENDS = ("dali", "baseline")


def build_loader(root: str | Path, split: str = "train", preset: str | Path | LoaderConfig | None = None, *,
                 backend: str = "dali", dist: DistInfo | None = None, cache_dir: str | Path | None = None,
                 cache_limit: int | str | None = None, **overrides: Any):
    """An iterable of ``(images, labels)`` batches over one split of a shard folder, one epoch per
    ``iter()``, with ``len()``, ``set_epoch(e)``, ``state_dict()`` and ``load_state_dict(state)``.

    ``preset``: a YAML preset from ``configs/`` (``train-224``, ``eval-224``, ``eval-384``, ...), a
    path, or a :class:`LoaderConfig`; default ``train-224`` for splits named ``train*``, else
    ``eval-224``. ``overrides``: any :class:`LoaderConfig` field (``batch_size=128``,
    ``device="cuda:1"``, ``dtype="bfloat16"``, ``return_keys=True``, ...). Rank and world size come
    from torchrun's environment (or ``dist``). ``backend="baseline"`` gives the Pillow + DataLoader
    loader with the same API and the same epochs.

    ``root`` may be ``s3://bucket/prefix`` (credentials and endpoint from the ``AWS_*``
    environment): the shards are then read through a node-local cache in ``cache_dir`` (shared by
    the ranks of a node; default: a temporary folder removed by ``close()``), evicted
    least-recently-used above ``cache_limit`` (bytes or e.g. ``"200GB"``).
    """
    if preset is None:
        preset = "train-224" if split.startswith("train") else "eval-224"
    cfg = resolve_config(preset, **overrides)
    shards = ShardSet.open(root, split, cache_dir, cache_limit)
    try:
        loader = make_loader(shards, cfg, backend, dist)
    except BaseException:
        shards.close()
        raise
    loader.owns_shards = True
    return loader


def make_loader(shards: ShardSet, cfg: LoaderConfig, backend: str = "dali", dist: DistInfo | None = None):
    """The loader of ``backend`` over an opened shard set and a resolved config (what
    :func:`build_loader` does after resolving; for callers that already hold both)."""
    if backend == "dali":
        from .dali import DaliLoader

        return DaliLoader(shards, cfg, dist)
    if backend == "baseline":
        from .baseline import BaselineLoader

        return BaselineLoader(shards, cfg, dist)
    raise LoaderConfigError(f"backend must be one of {BACKENDS}, not {backend!r}")


__all__ = ["BACKENDS", "Batch", "DistInfo", "KeyedBatch", "LoaderConfig", "LoaderConfigError", "LoaderDataError",
           "ShardSet", "ShardSetError", "build_loader", "dist_info", "make_loader", "resolve_config"]
