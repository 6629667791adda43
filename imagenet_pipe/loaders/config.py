"""Loader options, resolved once from a YAML preset plus overrides (timm's ``resolve_data_config``
idea: every downstream piece reads one frozen config instead of re-deciding defaults)."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..config import load_preset

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MODES = ("train", "eval")
DTYPES = ("float16", "bfloat16", "float32", "uint8")
MEMORY_FORMATS = ("contiguous", "channels_last", "nhwc")
INTERPOLATIONS = ("bilinear", "bicubic", "lanczos")
DEVICES = ("auto", "gpu", "cpu")


@dataclass(frozen=True)
class LoaderConfig:
    mode: str = "eval"  # "train": random-resized-crop + flip, shuffled stream; "eval": resize + center crop, exact-once
    size: int = 224
    crop_pct: float = 0.875  # eval: resize the shorter side to floor(size / crop_pct), then center-crop size
    pil_parity: bool = True  # eval: resize in two passes as Pillow does, so pixels match timm's reference
    interpolation: str = "bilinear"
    scale: tuple[float, float] = (0.08, 1.0)  # train: random-resized-crop area range
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # train: aspect-ratio range
    hflip: float = 0.5
    mean: tuple[float, float, float] = IMAGENET_MEAN  # in [0, 1] units, like timm
    std: tuple[float, float, float] = IMAGENET_STD
    dtype: str = "float16"
    # contiguous: NCHW; channels_last: NCHW shape with NHWC memory (what channels-last models want,
    # no copy); nhwc: NHWC shape
    memory_format: str = "contiguous"
    batch_size: int = 256
    device: str = "auto"  # auto: GPU decoding (nvJPEG, "mixed") when CUDA is usable, else DALI CPU operators
    num_threads: int | None = None  # DALI CPU threads per process (default: cores / local processes)
    num_workers: int | None = None  # baseline loader: DataLoader workers (default: same as num_threads)
    prefetch: int = 2  # batches prepared ahead
    seed: int = 0
    shuffle_buffer: int = 4096  # train: DALI reader shuffle buffer (samples); shards are also reshuffled per epoch
    hw_decoder_load: float = 0.65  # GPU: share of JPEGs sent to the hardware decoder (A100/H100/H200)
    return_keys: bool = False  # also yield each sample's key, to map predictions back to files
    on_error: str = "raise"  # bad sample: "raise" (error names shard and key) or "skip" (dropped and counted)

    def __post_init__(self) -> None:
        checks = [("mode", MODES), ("dtype", DTYPES), ("memory_format", MEMORY_FORMATS),
                  ("interpolation", INTERPOLATIONS), ("device", DEVICES), ("on_error", ("raise", "skip"))]
        for name, allowed in checks:
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, not {getattr(self, name)!r}")
        if not 0 < self.crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], not {self.crop_pct}")
        if self.size < 1 or self.batch_size < 1 or self.prefetch < 1:
            raise ValueError("size, batch_size and prefetch must be positive")
        if not 0 <= self.hw_decoder_load <= 1:
            raise ValueError(f"hw_decoder_load must be in [0, 1], not {self.hw_decoder_load}")

    @property
    def resize_shorter(self) -> int:
        """timm's eval ``scale_size``: floor(size / crop_pct)."""
        import math

        return math.floor(self.size / self.crop_pct + 1e-9)

    @property
    def threads(self) -> int:
        if self.num_threads:
            return self.num_threads
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        return max(1, (os.cpu_count() or 1) // local)


def resolve_config(preset: str | Path | None = None, **overrides: Any) -> LoaderConfig:
    """A preset name from ``configs/`` (``train-224``, ``eval-224``, ``eval-384``, ...) or a YAML
    path, with keyword overrides (``None`` values are ignored)."""
    values: dict[str, Any] = dict(load_preset(preset)) if preset else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in fields(LoaderConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown loader option(s) {unknown}; known: {sorted(known)}")
    for name in ("scale", "ratio", "mean", "std"):
        if name in values:
            values[name] = tuple(float(v) for v in values[name])
    return LoaderConfig(**values)
