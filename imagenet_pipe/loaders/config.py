"""Loader options, resolved once from a YAML preset plus overrides (timm's ``resolve_data_config``
idea: every downstream piece reads one frozen config instead of re-deciding defaults)."""

from __future__ import annotations

import math
import os
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..config import load_preset
from ..errors import OptionsError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MODES = ("train", "eval")
DTYPES = ("float16", "bfloat16", "float32", "uint8")
MEMORY_FORMATS = ("contiguous", "channels_last", "nhwc")
INTERPOLATIONS = ("bilinear", "bicubic", "lanczos")


class LoaderConfigError(OptionsError):
    """An unknown loader option or a value of the wrong type or range."""


@dataclass(frozen=True)
class LoaderConfig:
    mode: str = "eval"  # "train": random-resized-crop + flip, shuffled epochs; "eval": resize + center crop, exact-once
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
    # "auto" (GPU decoding when CUDA is usable, else DALI CPU operators), "cpu", "gpu" / "cuda"
    # (the LOCAL_RANK-th or current GPU), "cuda:N" or N (that GPU)
    device: str | int = "auto"
    num_threads: int | None = None  # DALI CPU threads per process (default: cores / local processes)
    num_workers: int | None = None  # baseline loader: DataLoader workers (default: same as num_threads)
    io_threads: int | None = None  # DALI loader: threads reading shards ahead (default: 2, 4 on GPU)
    prefetch: int = 2  # batches prepared ahead
    seed: int = 0
    # train: samples shuffled together within a block of the epoch's order (after the shard order is
    # permuted); 0: one permutation of the whole split
    shuffle_block: int = 16384
    hw_decoder_load: float = 0.65  # GPU: share of JPEGs sent to the hardware decoder (A100/H100/H200)
    return_keys: bool = False  # batches carry each sample's key (batch.keys), to map predictions back to files
    on_error: str = "raise"  # bad sample: "raise" (error names shard and key) or "skip" (dropped and counted)

    def __post_init__(self) -> None:
        _check_types(self)
        checks = [("mode", MODES), ("dtype", DTYPES), ("memory_format", MEMORY_FORMATS),
                  ("interpolation", INTERPOLATIONS), ("on_error", ("raise", "skip"))]
        for name, allowed in checks:
            if getattr(self, name) not in allowed:
                raise LoaderConfigError(f"{name} must be one of {allowed}, not {getattr(self, name)!r}")
        parse_device(self.device)
        if not 0 < self.crop_pct <= 1:
            raise LoaderConfigError(f"crop_pct must be in (0, 1], not {self.crop_pct}")
        if self.size < 1 or self.batch_size < 1 or self.prefetch < 1:
            raise LoaderConfigError("size, batch_size and prefetch must be positive")
        if not 0 <= self.hw_decoder_load <= 1 or not 0 <= self.hflip <= 1:
            raise LoaderConfigError("hw_decoder_load and hflip must be in [0, 1]")
        if not 0 < self.scale[0] <= self.scale[1] or not 0 < self.ratio[0] <= self.ratio[1]:
            raise LoaderConfigError(f"scale and ratio must be increasing positive ranges, not {self.scale}, "
                                    f"{self.ratio}")
        if self.shuffle_block < 0:
            raise LoaderConfigError("shuffle_block must be >= 0 (0: shuffle the whole split)")

    @property
    def resize_shorter(self) -> int:
        """timm's eval ``scale_size``: floor(size / crop_pct)."""
        return math.floor(self.size / self.crop_pct + 1e-9)

    @property
    def threads(self) -> int:
        if self.num_threads:
            return self.num_threads
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        return max(1, (os.cpu_count() or 1) // local)


def parse_device(device: str | int) -> tuple[str, int | None]:
    """("auto" | "cpu" | "gpu", CUDA index or None for the default one)."""
    if isinstance(device, int) and not isinstance(device, bool):
        return "gpu", device
    text = str(device).strip().lower()
    if text in ("auto", "cpu"):
        return text, None
    if text in ("gpu", "cuda"):
        return "gpu", None
    kind, _, index = text.partition(":")
    if kind in ("gpu", "cuda") and index.isdigit():
        return "gpu", int(index)
    raise LoaderConfigError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N', N or a torch.device, not {device!r}")


def _check_types(cfg: LoaderConfig) -> None:
    hints = typing.get_type_hints(LoaderConfig)
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if not _matches(value, hints[f.name]):
            raise LoaderConfigError(f"loader option {f.name}={value!r}: expected {_describe(hints[f.name])}")


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if origin is tuple:
        args = typing.get_args(hint)
        return isinstance(value, tuple) and len(value) == len(args) and all(map(_matches, value, args))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    return str(hint).replace("typing.", "")


_TUPLES = ("scale", "ratio", "mean", "std")


def resolve_config(preset: str | Path | LoaderConfig | None = None, **overrides: Any) -> LoaderConfig:
    """A preset name from ``configs/`` (``train-224``, ``eval-224``, ``eval-384``, ...), a YAML path or
    a :class:`LoaderConfig`, with keyword overrides (``None`` values are ignored). Values are
    checked against the option types; lists become tuples, a ``torch.device`` a device string."""
    if isinstance(preset, LoaderConfig):
        values: dict[str, Any] = {f.name: getattr(preset, f.name) for f in fields(LoaderConfig)}
    else:
        values = dict(load_preset(preset)) if preset else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in fields(LoaderConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise LoaderConfigError(f"unknown loader option(s) {unknown}; known: {sorted(known)}")
    for name in _TUPLES:
        if isinstance(values.get(name), list):
            values[name] = tuple(values[name])
    if type(values.get("device")).__name__ == "device":  # a torch.device, without importing torch here
        values["device"] = str(values["device"])
    return LoaderConfig(**values)
