"""Pillow implementation of the same preprocessing, independent of DALI: the baseline loader's
transforms and the reference the DALI pipeline is checked against.

Eval follows torchvision / timm exactly: ``Resize(floor(size / crop_pct))`` on the shorter side
(long side ``int(s * long / short)``), ``CenterCrop(size)`` (offset ``int(round((d) / 2))``).
Train executes the crop boxes and flips drawn by :mod:`.geometry` (torchvision's
``RandomResizedCrop`` and a horizontal flip) and the augmentation layers decided by
:mod:`.augment`, the same ones the DALI loader executes, with the Pillow operations timm uses.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from .augment import AugmentSpec
from .config import LoaderConfig
from .geometry import eval_resize

PIL_FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}


def decode_rgb(data: bytes) -> Image.Image:
    """Pixels as stored: no EXIF rotation (the converter resets the tag; DALI is told to ignore it)."""
    return Image.open(io.BytesIO(data)).convert("RGB")


def eval_geometry(width: int, height: int, cfg: LoaderConfig) -> tuple[tuple[int, int], tuple[int, int]]:
    """((resized width, height), (crop left, top)): the arithmetic of :func:`.geometry.eval_resize`."""
    out_w, out_h, left, top = (int(v[0]) for v in eval_resize(np.array([width]), np.array([height]),
                                                               cfg.resize_shorter, cfg.size))
    return (out_w, out_h), (left, top)


def eval_transform(img: Image.Image, cfg: LoaderConfig) -> np.ndarray:
    """Resize the shorter side + center crop -> uint8 HWC array of size x size."""
    (new_w, new_h), (left, top) = eval_geometry(img.width, img.height, cfg)
    img = img.resize((new_w, new_h), PIL_FILTERS[cfg.interpolation])
    return np.asarray(img.crop((left, top, left + cfg.size, top + cfg.size)))


def _lut(img: Image.Image, table: list[int]) -> Image.Image:
    return img.point(table * len(img.getbands()))


def apply_branch(img: Image.Image, branch: str, args: np.ndarray, spec: AugmentSpec) -> Image.Image:
    """One augmentation layer in Pillow, as timm's ops run it (``args``: see :mod:`.augment`)."""
    value = float(args[0])
    if branch == "affine":  # output -> input map, Pillow's own convention
        return img.transform(img.size, Image.AFFINE, tuple(float(v) for v in args[:6]),
                             resample=PIL_FILTERS[spec.interpolation], fillcolor=spec.fill)
    enhance = {"brightness": ImageEnhance.Brightness, "color": ImageEnhance.Color,
               "contrast": ImageEnhance.Contrast, "sharpness": ImageEnhance.Sharpness}
    if branch in enhance:
        return enhance[branch](img).enhance(value)
    if branch == "solarize":
        return _lut(img, [i if i < value else 255 - i for i in range(256)])
    if branch == "solarize_add":  # timm: add below 128, saturating
        return _lut(img, [min(255, i + int(value)) if i < 128 else i for i in range(256)])
    if branch == "posterize":  # value: the bit mask
        return _lut(img, [i & int(value) for i in range(256)])
    if branch == "blur":
        return img.filter(ImageFilter.GaussianBlur(radius=value))
    ops = {"identity": lambda im: im, "invert": ImageOps.invert, "autocontrast": ImageOps.autocontrast,
           "equalize": ImageOps.equalize}
    return ops[branch](img)


def train_transform(img: Image.Image, cfg: LoaderConfig, box: np.ndarray, flip: bool, size: int | None = None,
                    layers: list[tuple[str, np.ndarray]] = (), spec: AugmentSpec | None = None) -> np.ndarray:
    """The crop ``box`` (left, top, w, h) resized to ``size`` x ``size`` (default ``cfg.size``), the
    augmentation ``layers`` ((branch, args) pairs) in order, then flipped if ``flip`` (the DALI
    graph's order; :mod:`.augment` on why it is timm's distribution)."""
    size = size or cfg.size
    left, top, w, h = (int(v) for v in box)
    img = img.resize((size, size), PIL_FILTERS[cfg.interpolation], box=(left, top, left + w, top + h))
    for branch, args in layers:
        img = apply_branch(img, branch, args, spec)
    out = np.asarray(img)
    return out[:, ::-1] if flip else out


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
