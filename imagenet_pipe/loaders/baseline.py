"""The baseline loader: webdataset + Pillow + ``torch.utils.data.DataLoader`` workers, with the
same transforms, the same API and the same epoch semantics as the DALI loader. Users without DALI
use it; the profiler measures the DALI loader against it.

Workers decode and crop with Pillow and return uint8 HWC (4x less inter-process traffic than
floats); normalisation happens once per batch in the main process, on the GPU when there is one.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from .common import Batch, KeyedBatch, LoaderDataError, finish_images, resolve_device
from .config import LoaderConfig
from .shardset import DistInfo, ShardSet, dist_info
from .transforms import Normalizer, decode_rgb, eval_transform, train_transform


class _ShardStream(IterableDataset):
    """Samples of one rank, split across DataLoader workers.

    train: shard order reshuffled per epoch (same seed on every rank), shards dealt to the
    ``world x workers`` readers, a shuffle buffer per reader, repeated without end (the loader cuts
    the epoch). eval: the rank's exact sample range, as (shard, skip, take) segments dealt to workers.
    """

    def __init__(self, shards: ShardSet, cfg: LoaderConfig, dist: DistInfo) -> None:
        self.shards, self.cfg, self.dist = shards, cfg, dist
        self.epoch = 0

    def __iter__(self) -> Iterator[tuple[np.ndarray, int, str, bool]]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        if self.cfg.mode == "train":
            yield from self._train(wid, nw)
        else:
            start, end = self.shards.rank_range(self.dist.rank, self.dist.world_size)
            for path, skip, take in self.shards.segments(start, end)[wid::nw]:
                samples = wds.tarfile_to_samples()(iter([{"url": path}]))
                for sample in islice(samples, skip, skip + take):
                    yield self._decode(sample, path, None)

    def _train(self, wid: int, nw: int) -> Iterator[tuple[np.ndarray, int, str, bool]]:
        readers = self.dist.world_size * nw
        reader = self.dist.rank * nw + wid
        rng = random.Random(self.cfg.seed * 1_000_003 + self.epoch * 7919 + reader)
        paths = list(self.shards.paths)
        cycle = 0
        while True:
            random.Random(self.cfg.seed + 1000 * self.epoch + cycle).shuffle(paths)  # same on every reader
            mine = paths[reader::readers] or [paths[reader % len(paths)]]
            samples = wds.tarfile_to_samples()(iter([{"url": p} for p in mine]))
            for sample in wds.filters._shuffle(samples, self.cfg.shuffle_buffer, min(1000, self.cfg.shuffle_buffer),
                                               rng):
                yield self._decode(sample, sample.get("__url__", ""), rng)
            cycle += 1

    def _decode(self, sample: dict, shard: str, rng: random.Random | None) -> tuple[np.ndarray, int, str, bool]:
        key = sample.get("__key__", "?")
        try:
            label = int(sample["cls"])
            img = decode_rgb(sample["jpg"])
            arr = train_transform(img, self.cfg, rng) if rng is not None else eval_transform(img, self.cfg)
            return np.ascontiguousarray(arr), label, key, True
        except Exception as e:
            if self.cfg.on_error == "raise":
                missing = [m for m in ("jpg", "cls") if m not in sample]
                why = f"has no {' or '.join(missing)} member" if missing else f"image does not decode ({e})"
                raise LoaderDataError(f"{Path(shard).name}: sample {key} {why}") from e
            blank = np.zeros((self.cfg.size, self.cfg.size, 3), np.uint8)
            return blank, -1, f"{Path(shard).name}:{key}", False


def _collate(items):
    arrays, labels, keys, ok = zip(*items, strict=True)
    return (torch.from_numpy(np.stack(arrays)), torch.tensor(labels, dtype=torch.int64), list(keys),
            torch.tensor(ok))


class BaselineLoader:
    backend = "baseline"

    def __init__(self, shards: ShardSet, cfg: LoaderConfig, dist: DistInfo | None = None) -> None:
        self.shards, self.cfg = shards, cfg
        self.dist = dist or dist_info()
        world = self.dist.world_size
        n = shards.num_samples
        self.workers = cfg.num_workers if cfg.num_workers is not None else cfg.threads
        device_id = resolve_device(cfg, self.dist.local_rank)
        self.device = torch.device("cuda", device_id) if device_id is not None else torch.device("cpu")
        self.dataset = _ShardStream(shards, cfg, self.dist)
        if cfg.mode == "train":
            self.steps = n // (world * cfg.batch_size)
            if self.steps == 0:
                raise ValueError(f"batch size {cfg.batch_size} x {world} ranks exceeds the {n} samples")
            self.num_samples = self.steps * cfg.batch_size
        else:
            start, end = shards.rank_range(self.dist.rank, world)
            self.num_samples = end - start
            # each worker batches its own segments: count the batches exactly
            per_worker = [0] * max(1, self.workers)
            for i, (_, _, take) in enumerate(shards.segments(start, end)):
                per_worker[i % len(per_worker)] += take
            self.steps = sum(math.ceil(k / cfg.batch_size) for k in per_worker)
        self.normalize = Normalizer(cfg)
        self.epoch = 0
        self.skipped: list[tuple[str, str, str]] = []

    def __len__(self) -> int:
        return self.steps

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[Batch | KeyedBatch]:
        self.dataset.epoch = self.epoch
        loader = DataLoader(self.dataset, batch_size=self.cfg.batch_size, num_workers=self.workers,
                            collate_fn=_collate, pin_memory=self.device.type == "cuda",
                            prefetch_factor=self.cfg.prefetch if self.workers else None,
                            drop_last=self.cfg.mode == "train")
        for arrays, labels, keys, ok in islice(loader, self.steps):
            if not bool(ok.all()):
                for key in (k for k, good in zip(keys, ok.tolist(), strict=True) if not good):
                    shard, _, name = key.partition(":")
                    self.skipped.append((shard, name, "unreadable sample"))
                arrays, labels = arrays[ok], labels[ok]
                keys = [k for k, good in zip(keys, ok.tolist(), strict=True) if good]
            images = self.normalize(arrays.to(self.device, non_blocking=True))
            images = finish_images(images, self.cfg, "NCHW")
            labels = labels.to(self.device, non_blocking=True)
            yield KeyedBatch(images, labels, keys) if self.cfg.return_keys else Batch(images, labels)
        self.epoch += 1

    def close(self) -> None:
        pass

    def __enter__(self) -> BaselineLoader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
