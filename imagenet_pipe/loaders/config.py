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
from ..errors import LoaderConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MODES = ("train", "eval")
DTYPES = ("float16", "bfloat16", "float32", "uint8")
MEMORY_FORMATS = ("contiguous", "channels_last", "nhwc")
INTERPOLATIONS = ("bilinear", "bicubic", "lanczos")
RE_MODES = ("const", "rand", "pixel")  # timm's RandomErasing fill modes
MIXUP_MODES = ("batch", "pair", "elem")  # timm's Mixup modes




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
    # --- training recipes, with timm's option names and meanings (README: "Augmentations") ---
    auto_augment: str | None = None  # "rand-m9-mstd0.5-inc1", "original", "v0", "3a", "ta_wide", ...
    # brightness/contrast/saturation strengths (one value: all three); as in timm, off when auto_augment
    # is set unless it is a 3-Augment ("3a") policy or force_color_jitter
    color_jitter: float | tuple[float, float, float] | None = None
    color_jitter_prob: float | None = None  # apply the jitter to this share of images (None: all)
    force_color_jitter: bool = False
    re_prob: float = 0.0  # random erasing after normalisation: share of images
    re_mode: str = "const"  # erased pixels: "const" (0), "rand" (one normal colour per box), "pixel" (normal noise)
    re_count: int = 1  # up to this many boxes per erased image (uniform in [1, re_count])
    mixup_alpha: float = 0.0  # mixup Beta(alpha, alpha); mixup/cutmix make labels soft targets (N, num_classes)
    cutmix_alpha: float = 0.0
    cutmix_minmax: tuple[float, float] | None = None  # cutmix box sides as shares of the image (then alpha 1)
    mixup_prob: float = 1.0  # share of batches (or elements) mixed
    switch_prob: float = 0.5  # with both on: share of cutmix among mixed batches
    mixup_mode: str = "batch"  # timm Mixup's mode: one lambda per "batch", per "pair" or per "elem"
    mixup_off_epoch: int = 0  # from this epoch on, no mixing (0: never off); smoothing stays
    label_smoothing: float = 0.0  # soft targets (N, num_classes) even without mixing
    num_classes: int | None = None  # for soft targets (default: the shard set's)
    aug_repeats: int = 0  # repeated augmentation (DeiT): each sample this many times per epoch (0, 1: off)
    # progressive resolution (FFCV): (start size, end size, start epoch, end epoch); the training size
    # ramps linearly between the epochs, rounded to a multiple of 32; replaces size in training
    res_schedule: tuple[int, int, int, int] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.color_jitter, tuple) and len(self.color_jitter) == 4:
            raise LoaderConfigError("color_jitter with a hue strength is not supported: DALI rotates hue in YIQ, "
                                    "torchvision shifts it in HSV; give (brightness, contrast, saturation)")
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
        _check_training_recipe(self)

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


def _check_training_recipe(cfg: LoaderConfig) -> None:
    """The augmentation, mixing and schedule options: ranges, and what only training can use."""
    from .auto_augment import parse_auto_augment

    in_range = [("color_jitter_prob", cfg.color_jitter_prob, 0, 1), ("re_prob", cfg.re_prob, 0, 1),
                ("mixup_prob", cfg.mixup_prob, 0, 1), ("switch_prob", cfg.switch_prob, 0, 1),
                ("label_smoothing", cfg.label_smoothing, 0, 1)]
    for name, value, lo, hi in in_range:
        if value is not None and not lo <= value <= hi:
            raise LoaderConfigError(f"{name} must be in [{lo}, {hi}], not {value}")
    if min(jitter_strengths(cfg), default=0) < 0 or cfg.mixup_alpha < 0 or cfg.cutmix_alpha < 0:
        raise LoaderConfigError("color_jitter, mixup_alpha and cutmix_alpha must be >= 0")
    for name, value, allowed in [("re_mode", cfg.re_mode, RE_MODES), ("mixup_mode", cfg.mixup_mode, MIXUP_MODES)]:
        if value not in allowed:
            raise LoaderConfigError(f"{name} must be one of {allowed}, not {value!r}")
    if cfg.re_count < 1 or cfg.aug_repeats < 0 or cfg.mixup_off_epoch < 0:
        raise LoaderConfigError("re_count must be >= 1, aug_repeats and mixup_off_epoch >= 0")
    if cfg.num_classes is not None and cfg.num_classes < 1:
        raise LoaderConfigError(f"num_classes must be positive, not {cfg.num_classes}")
    if cfg.cutmix_minmax is not None and not 0 < cfg.cutmix_minmax[0] < cfg.cutmix_minmax[1] <= 1:
        raise LoaderConfigError(f"cutmix_minmax must be (min, max) with 0 < min < max <= 1, not {cfg.cutmix_minmax}")
    if cfg.res_schedule is not None:
        start, end, first, last = cfg.res_schedule
        if min(start, end) < 1 or not 0 <= first <= last:
            raise LoaderConfigError(f"res_schedule must be (start size, end size, start epoch, end epoch) with "
                                    f"positive sizes and start epoch <= end epoch, not {cfg.res_schedule}")
    if cfg.re_prob > 0 and cfg.dtype == "uint8":
        raise LoaderConfigError("re_prob needs normalised output: timm erases after normalisation (dtype uint8 "
                                "leaves normalisation to you)")
    if cfg.auto_augment:
        parse_auto_augment(cfg.auto_augment)  # raises LoaderConfigError naming what is not understood
        if cfg.interpolation == "lanczos":
            raise LoaderConfigError("auto_augment's geometric ops resample bilinear or bicubic, as Pillow's affine "
                                    "transforms (timm's) do; use interpolation='bilinear' or 'bicubic'")
    if cfg.mode == "eval" and training_recipe(cfg):
        raise LoaderConfigError(f"{', '.join(training_recipe(cfg))} are training options; this is an eval config")


def training_recipe(cfg: LoaderConfig) -> list[str]:
    """The training-only options that are switched on."""
    on = {"auto_augment": bool(cfg.auto_augment), "color_jitter": bool(max(jitter_strengths(cfg), default=0)),
          "re_prob": cfg.re_prob > 0, "mixup_alpha": cfg.mixup_alpha > 0, "cutmix_alpha": cfg.cutmix_alpha > 0,
          "cutmix_minmax": cfg.cutmix_minmax is not None, "label_smoothing": cfg.label_smoothing > 0,
          "aug_repeats": cfg.aug_repeats > 1, "res_schedule": cfg.res_schedule is not None}
    return [name for name, value in on.items() if value]


def jitter_strengths(cfg: LoaderConfig) -> tuple[float, ...]:
    """``color_jitter`` as (brightness, contrast, saturation) strengths, () when unset."""
    if cfg.color_jitter is None:
        return ()
    return cfg.color_jitter if isinstance(cfg.color_jitter, tuple) else (float(cfg.color_jitter),) * 3


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
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


_TUPLES = ("scale", "ratio", "mean", "std", "color_jitter", "cutmix_minmax", "res_schedule")


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
