"""The baseline loader: Pillow + ``torch.utils.data.DataLoader`` workers over the same epoch plan,
the same sample reader and the same per-sample decisions as the DALI loader (so it yields the same
keys, labels and crop geometry), with the same API. Users without DALI use it; the profiler
measures the DALI loader against it.

Each DataLoader item is a whole planned batch (``batch_size=None``), so the order does not depend
on the number of workers. Workers decode, crop and augment with Pillow and return uint8 HWC (4x
less inter-process traffic than floats); normalisation and random erasing happen once per batch in
the main process, on the GPU when there is one, as in timm's prefetcher.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .augment import augment_spec, decide
from .common import Batch, LoaderDataError, finish_images, make_batch, resolve_device
from .config import LoaderConfig
from .epochs import PlannedLoader
from .erasing import decide_erasing, erase_batch
from .geometry import train_params, train_size
from .plan import EpochPlan
from .reader import FetchedBatch, SampleReader, ShardFetcher
from .shardset import DistInfo, ShardSet
from .transforms import Normalizer, decode_rgb, eval_transform, train_transform


class _PlannedBatches(Dataset):
    """Item ``(epoch, sample ids, draw ids)`` -> (uint8 N x H x W x C, labels, keys, shard names, problems)."""

    def __init__(self, shards: ShardSet, cfg: LoaderConfig) -> None:
        self.reader, self.cfg = SampleReader(shards), cfg

    def _train_steps(self, epoch: int, fetched: FetchedBatch, size: int):
        """Per row, a function of the decoded image: crop, flip and augmentation layers."""
        cfg, draws = self.cfg, fetched.draw_ids
        boxes, flips = train_params(cfg, epoch, draws, fetched.width, fetched.height)
        spec = augment_spec(cfg)
        layers = [[] for _ in draws]
        if spec.layers:
            decided = decide(spec, cfg.seed, epoch, draws, size)
            layers = [[(spec.branches[b], a) for b, a in zip(decided.branch[row], decided.args[row], strict=True)
                       if b] for row in range(len(draws))]
        return [lambda img, r=row: train_transform(img, cfg, boxes[r], flips[r], size, layers[r], spec)
                for row in range(len(draws))]

    def __getitem__(self, item: tuple[int, np.ndarray, np.ndarray]):
        epoch, ids, draws = item
        cfg, fetched = self.cfg, self.reader.read(ids, draws)
        size = train_size(cfg, epoch) if cfg.mode == "train" else cfg.size
        steps = self._train_steps(epoch, fetched, size) if cfg.mode == "train" else None
        out = np.zeros((len(ids), size, size, 3), dtype=np.uint8)
        for row, data in enumerate(fetched.jpegs):
            if row in fetched.problems:
                continue
            try:
                img = decode_rgb(data)
                out[row] = steps[row](img) if steps else eval_transform(img, cfg)
            except Exception as e:
                fetched.problems[row] = f"image does not decode ({e})"
        return torch.from_numpy(out), torch.from_numpy(fetched.labels), fetched.keys, fetched.shards, fetched.problems

    def __len__(self) -> int:  # items are planned batches, addressed by the sampler
        raise TypeError("planned batches are addressed by (epoch, ids)")


class BaselineLoader(PlannedLoader):
    backend = "baseline"

    def __init__(self, shards: ShardSet, cfg: LoaderConfig, dist: DistInfo | None = None) -> None:
        super().__init__(shards, cfg, dist)
        self.workers = cfg.num_workers if cfg.num_workers is not None else cfg.threads
        device_id = resolve_device(cfg, dist.local_rank if dist is not None else None)
        self.device = torch.device("cuda", device_id) if device_id is not None else torch.device("cpu")
        self.dataset = _PlannedBatches(shards, cfg)
        self.normalize = Normalizer(cfg)

    def _batches(self, plan: EpochPlan) -> Iterator[Batch]:
        items = [(plan.epoch, plan.batch(i), plan.draw_ids(i)) for i in range(plan.steps)]
        fetcher = ShardFetcher(self.shards, plan)  # bucket shards: downloaded ahead into the node's cache
        fetcher.advance(0)
        loader = DataLoader(self.dataset, batch_size=None, sampler=items, num_workers=self.workers,
                            pin_memory=self.device.type == "cuda", collate_fn=_no_collate,
                            prefetch_factor=self.cfg.prefetch if self.workers else None)
        for i, ((_, _, draws), (arrays, labels, keys, shards, problems)) in enumerate(zip(items, loader,
                                                                                          strict=False), start=1):
            fetcher.advance(i)
            images = self.normalize(arrays.to(self.device, non_blocking=True))
            if self.cfg.mode == "train" and self.cfg.re_prob > 0:
                size = images.shape[-1]
                erase_batch(images, decide_erasing(self.cfg, plan.epoch, draws, size, size), self.cfg.seed,
                            plan.epoch, draws)
            if problems:
                keep = self._handle_bad(keys, shards, problems)
                images, labels = images[keep], labels[keep]
                keys = [keys[i] for i in keep]
            labels = labels.to(self.device, non_blocking=True)
            yield make_batch(finish_images(images, self.cfg, "NCHW"), labels, keys, self.cfg)

    def _handle_bad(self, keys: list[str], shards: list[str], problems: dict[int, str]) -> list[int]:
        for row, why in sorted(problems.items()):
            if self.cfg.on_error == "raise":
                raise LoaderDataError(f"{shards[row]}: sample {keys[row]} {why} (pass on_error='skip' to drop bad "
                                      "samples; `imagenet-pipe verify --decode` checks a whole folder)")
            self.skipped.append((shards[row], keys[row], why))
        return [i for i in range(len(keys)) if i not in problems]


    def close(self) -> None:
        self.dataset.reader.close()
        super().close()


def _no_collate(item):
    return item
