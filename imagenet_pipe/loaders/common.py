"""What both loader backends share: the batch types, the error type, device resolution, output
formatting."""

from __future__ import annotations

import os
from typing import NamedTuple

import torch

from ..errors import ImagenetPipeError
from .config import LoaderConfig, LoaderConfigError, parse_device


class Batch(NamedTuple):
    images: torch.Tensor  # N x C x H x W (or N x H x W x C with memory_format="nhwc")
    labels: torch.Tensor  # int64, same device


class KeyedBatch(Batch):
    """A :class:`Batch` (still ``images, labels = batch``) with ``keys``: each sample's key (file
    name stem), to map predictions back to files."""

    keys: list[str]

    @classmethod
    def of(cls, images: torch.Tensor, labels: torch.Tensor, keys: list[str]) -> KeyedBatch:
        batch = cls(images, labels)
        batch.keys = keys
        return batch


class LoaderDataError(ImagenetPipeError, RuntimeError):
    """A bad sample was met while loading; the message names the shard and the key."""


def make_batch(images: torch.Tensor, labels: torch.Tensor, keys: list[str], cfg: LoaderConfig) -> Batch:
    return KeyedBatch.of(images, labels, keys) if cfg.return_keys else Batch(images, labels)


def finish_images(images: torch.Tensor, cfg: LoaderConfig, layout: str) -> torch.Tensor:
    """Cast (bfloat16 is made here: DALI has no bf16 output) and apply the memory format.
    ``layout`` is what the backend produced: "NCHW" or "NHWC"."""
    if cfg.dtype == "bfloat16":
        images = images.to(torch.bfloat16)
    if layout == "NHWC" and cfg.memory_format == "channels_last":
        images = images.permute(0, 3, 1, 2)  # NCHW view with channels-last strides: no copy
    elif layout == "NHWC" and cfg.memory_format == "contiguous":
        images = images.permute(0, 3, 1, 2).contiguous()
    elif layout == "NCHW" and cfg.memory_format == "nhwc":
        images = images.permute(0, 2, 3, 1).contiguous()
    elif layout == "NCHW" and cfg.memory_format == "channels_last":
        images = images.contiguous(memory_format=torch.channels_last)
    return images


def resolve_device(cfg: LoaderConfig, local_rank: int | None = None) -> int | None:
    """The CUDA device index to decode and deliver on, or None for the CPU pipeline.

    "auto" and "gpu"/"cuda" without an index take the ``LOCAL_RANK``-th GPU under torchrun (or
    ``local_rank`` when given), else torch's current device."""
    kind, index = parse_device(cfg.device)
    if kind == "cpu":
        return None
    available = torch.cuda.is_available()
    if not available:
        if kind == "gpu":
            raise LoaderConfigError(f"device={cfg.device!r} was requested but CUDA is not available; "
                                    "use device='cpu' or 'auto'")
        return None
    count = torch.cuda.device_count()
    if index is None:
        if local_rank is None and "LOCAL_RANK" in os.environ:
            local_rank = int(os.environ["LOCAL_RANK"])
        index = local_rank % count if local_rank is not None else torch.cuda.current_device()
    if not 0 <= index < count:
        raise LoaderConfigError(f"device={cfg.device!r}: this machine has {count} CUDA device(s)")
    return index
