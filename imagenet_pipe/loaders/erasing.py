"""Random erasing with timm's semantics (``timm/data/random_erasing.py``), applied to normalised
images: with probability ``re_prob`` an image gets between 1 and ``re_count`` boxes (uniform count),
each of area uniform in [0.02, 1/3] of the image divided by the count and aspect ratio log-uniform
in [0.3, 1/0.3] (height / width), placed uniformly; 10 attempts to fit, else no box. Erased pixels:
0 (``const``, the mean colour), one standard-normal value per channel and box (``rand``), or
standard-normal noise per pixel (``pixel``).

Boxes and fill values are decided here, in numpy, keyed by ``(seed, epoch, draw id)``; the DALI
graph erases with ``fn.erase`` (:mod:`.dali_augment`), the baseline with :func:`erase_batch`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .auto_augment import normals
from .config import LoaderConfig
from .geometry import STREAM_ERASE, STREAM_ERASE_FILL, uniforms

MIN_AREA, MAX_AREA, MIN_ASPECT = 0.02, 1 / 3, 0.3
ATTEMPTS = 10


@dataclass
class EraseDecisions:
    """``boxes``: (N, re_count, 4) int64 rows (top, left, h, w), zero where an image has no such box;
    ``colors``: (N, re_count, 3) float32 per-box fill (``rand``; zeros otherwise); ``mode``."""

    boxes: np.ndarray
    colors: np.ndarray
    mode: str


def _box(u: np.ndarray, height: int, width: int, count: np.ndarray) -> np.ndarray:
    """One box per image from ``u`` (N, 22): timm's 10 attempts (area, log-aspect per attempt), then
    the position. (top, left, h, w) rows, h = w = 0 where no attempt fits."""
    area = height * width
    target = (MIN_AREA + (MAX_AREA - MIN_AREA) * u[:, 0:2 * ATTEMPTS:2]) * area / count[:, None]
    log_lo, log_hi = math.log(MIN_ASPECT), math.log(1 / MIN_ASPECT)
    aspect = np.exp(log_lo + (log_hi - log_lo) * u[:, 1:2 * ATTEMPTS:2])
    h = np.round(np.sqrt(target * aspect))  # half to even, as Python's round()
    w = np.round(np.sqrt(target / aspect))
    fits = (w < width) & (h < height)
    rows, first = np.arange(len(u)), fits.argmax(axis=1)
    h_ok, w_ok = h[rows, first], w[rows, first]
    top = np.floor(u[:, 2 * ATTEMPTS] * (height - h_ok + 1))  # randint(0, height - h), inclusive
    left = np.floor(u[:, 2 * ATTEMPTS + 1] * (width - w_ok + 1))
    found = fits.any(axis=1)[:, None]
    return np.where(found, np.stack([top, left, h_ok, w_ok], axis=1), 0).astype(np.int64)


def decide_erasing(cfg: LoaderConfig, epoch: int, draws: np.ndarray, height: int, width: int) -> EraseDecisions:
    """The erased boxes (and ``rand`` colours) of a batch of ``height`` x ``width`` images."""
    n, k = len(draws), cfg.re_count
    u = uniforms(cfg.seed, epoch, draws, STREAM_ERASE, 2 + k * (2 * ATTEMPTS + 2))
    erased = u[:, 0] < cfg.re_prob
    count = np.minimum(1 + np.floor(u[:, 1] * k), k)  # randint(1, re_count)
    boxes = np.zeros((n, k, 4), np.int64)
    for box in range(k):
        cols = u[:, 2 + box * (2 * ATTEMPTS + 2):2 + (box + 1) * (2 * ATTEMPTS + 2)]
        boxes[:, box] = np.where((erased & (box < count))[:, None], _box(cols, height, width, count), 0)
    colors = np.zeros((n, k, 3), np.float32)
    if cfg.re_mode == "rand":
        for box in range(k):
            colors[:, box] = normals(uniforms(cfg.seed, epoch, draws, STREAM_ERASE_FILL + box, 3))
    return EraseDecisions(boxes, colors, cfg.re_mode)


def box_noise(seed: int, epoch: int, draw: int, box: int, h: int, w: int) -> np.ndarray:
    """``pixel`` mode: the (3, h, w) float32 standard-normal noise of box ``box`` of draw ``draw``,
    from a generator keyed by those numbers (for a whole box, numpy's own generator is 5x faster
    than :func:`.geometry.uniforms` per value)."""
    keys = [seed & (2**64 - 1), epoch, draw, STREAM_ERASE_FILL + box]
    return np.random.default_rng(keys).standard_normal((3, h, w), dtype=np.float32)


def erase_batch(images, erase: EraseDecisions, seed: int, epoch: int, draws: np.ndarray):
    """Erase a normalised N x C x H x W torch batch in place (boxes in order: a later box overwrites
    an earlier one, as timm fills them one after the other)."""
    import torch

    for row, box in zip(*np.nonzero(erase.boxes[:, :, 2] > 0), strict=True):
        top, left, h, w = (int(v) for v in erase.boxes[row, box])
        region = images[row, :, top:top + h, left:left + w]
        if erase.mode == "pixel":
            noise = box_noise(seed, epoch, int(draws[row]), int(box), h, w)
            region.copy_(torch.from_numpy(noise).to(region.device, region.dtype))
        else:
            color = torch.from_numpy(erase.colors[row, box]).to(region.device, region.dtype)
            region.copy_(color[:, None, None].expand_as(region))
    return images
