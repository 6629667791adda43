"""What both loader backends share: the batch type, label parsing, output formatting, bad-sample
diagnosis."""

from __future__ import annotations

import io
from pathlib import Path
from typing import NamedTuple

import torch

from ..shards import idx_name, read_idx
from .config import LoaderConfig

LABEL_BYTES = 8  # .cls is ASCII decimal; 8 digits cover every ImageNet label space


class Batch(NamedTuple):
    images: torch.Tensor  # N x C x H x W (or N x H x W x C with memory_format="nhwc")
    labels: torch.Tensor  # int64, same device


class KeyedBatch(NamedTuple):
    images: torch.Tensor
    labels: torch.Tensor
    keys: list[str]  # sample keys (file name stems), to map predictions back to files


class LoaderDataError(RuntimeError):
    """A bad sample was met while loading; the message names the shard and the key."""


def parse_labels(ascii_digits: torch.Tensor) -> torch.Tensor:
    """[N, 8] uint8 ASCII digits, zero-padded on the right -> int64 labels, on the same device."""
    digits = ascii_digits.to(torch.int64)
    valid = digits != 0
    values = torch.where(valid, digits - ord("0"), torch.zeros_like(digits))
    count = valid.sum(dim=1, keepdim=True)
    exponent = (count - 1 - torch.arange(digits.shape[1], device=digits.device)).clamp(min=0)
    return (values * torch.pow(10, exponent) * valid).sum(dim=1)


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


def resolve_device(cfg: LoaderConfig, local_rank: int) -> int | None:
    """CUDA device id for "mixed" decoding, or None for the CPU pipeline."""
    if cfg.device == "cpu":
        return None
    available = torch.cuda.is_available()
    if cfg.device == "gpu" and not available:
        raise ValueError("device='gpu' was requested but CUDA is not available; use device='cpu' or 'auto'")
    return local_rank % torch.cuda.device_count() if available else None


def diagnose(shard: str | Path, key: str) -> str:
    """Why a sample is unusable, read straight from its shard (used only for error messages)."""
    from PIL import Image

    shard = Path(shard)
    try:
        samples = read_idx(shard.with_name(idx_name(shard.name)))
    except (OSError, ValueError):
        return "cannot be inspected (no readable .idx)"
    for components in samples:
        if components[0].name.split(".", 1)[0] != key:
            continue
        by_ext = {c.ext: c for c in components}
        missing = [ext for ext in ("jpg", "cls") if ext not in by_ext]
        if missing:
            return f"has no {' or '.join(missing)} member"
        jpg = by_ext["jpg"]
        with open(shard, "rb") as f:
            f.seek(jpg.offset)
            data = f.read(jpg.size)
        try:
            img = Image.open(io.BytesIO(data))
            img.load()
        except Exception as e:
            return f"image does not decode ({e})"
        return "image decodes with Pillow but not with DALI"
    return "is not listed in the shard's index"
