"""Pillow implementation of the same preprocessing, independent of DALI: the baseline loader's
transforms and the reference the DALI pipeline is checked against.

Eval follows torchvision / timm exactly: ``Resize(floor(size / crop_pct))`` on the shorter side
(long side ``int(s * long / short)``), ``CenterCrop(size)`` (offset ``int(round((d) / 2))``).
Train follows torchvision's ``RandomResizedCrop`` (10 attempts, then a clamped center crop) and a
horizontal flip.
"""

from __future__ import annotations

import io
import math
import random

import numpy as np
from PIL import Image

from .config import LoaderConfig

PIL_FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}


def decode_rgb(data: bytes) -> Image.Image:
    """Pixels as stored: no EXIF rotation (the converter resets the tag; DALI is told to ignore it)."""
    return Image.open(io.BytesIO(data)).convert("RGB")


def eval_geometry(width: int, height: int, cfg: LoaderConfig) -> tuple[tuple[int, int], tuple[int, int]]:
    """((resized width, height), (crop left, top))."""
    shorter = cfg.resize_shorter
    if width <= height:
        new_w, new_h = shorter, int(shorter * height / width)
    else:
        new_w, new_h = int(shorter * width / height), shorter
    left = round((new_w - cfg.size) / 2.0)  # Python rounds .5 to even, as torchvision does
    top = round((new_h - cfg.size) / 2.0)
    return (new_w, new_h), (left, top)


def eval_transform(img: Image.Image, cfg: LoaderConfig) -> np.ndarray:
    """Resize the shorter side + center crop -> uint8 HWC array of size x size."""
    (new_w, new_h), (left, top) = eval_geometry(img.width, img.height, cfg)
    img = img.resize((new_w, new_h), PIL_FILTERS[cfg.interpolation])
    return np.asarray(img.crop((left, top, left + cfg.size, top + cfg.size)))


def random_resized_crop_box(width: int, height: int, scale: tuple[float, float], ratio: tuple[float, float],
                            rng: random.Random) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.get_params: (left, top, w, h)."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, width - w), rng.randint(0, height - h), w, h
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        h, w = height, round(height * max(ratio))
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def train_transform(img: Image.Image, cfg: LoaderConfig, rng: random.Random) -> np.ndarray:
    left, top, w, h = random_resized_crop_box(img.width, img.height, cfg.scale, cfg.ratio, rng)
    img = img.resize((cfg.size, cfg.size), PIL_FILTERS[cfg.interpolation], box=(left, top, left + w, top + h))
    out = np.asarray(img)
    if rng.random() < cfg.hflip:
        out = out[:, ::-1]
    return out


class Normalizer:
    """uint8 N x H x W x C torch batches -> normalised NCHW (or uint8 NCHW) in the configured dtype,
    on the batch's device (mean and std made once per device)."""

    def __init__(self, cfg: LoaderConfig) -> None:
        self.cfg = cfg
        self._constants: dict = {}

    def __call__(self, batch_hwc_uint8):
        import torch

        x = batch_hwc_uint8.permute(0, 3, 1, 2)
        if self.cfg.dtype == "uint8":
            return x.contiguous()
        if x.device not in self._constants:
            self._constants[x.device] = tuple(
                torch.tensor(v, dtype=torch.float32, device=x.device).view(1, 3, 1, 1) * 255
                for v in (self.cfg.mean, self.cfg.std))
        mean, std = self._constants[x.device]
        x = (x.float() - mean) / std
        return x.to({"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[self.cfg.dtype])
