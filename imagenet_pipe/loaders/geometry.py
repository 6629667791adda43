"""Per-sample geometry, computed once per batch in numpy and fed to both backends.

Random decisions (crop boxes, flips) are drawn from a counter-based generator keyed by ``(seed,
epoch, sample id)``: a sample gets the same crop in epoch ``e`` whatever the world size, worker
count, batch size or backend, and a resumed run repeats the pixels of an uninterrupted one without
saving any random state. The DALI graph and the Pillow baseline only execute these decisions.

Training follows torchvision's ``RandomResizedCrop.get_params`` (10 attempts, then a clamped
center crop) and a horizontal flip; evaluation follows torchvision / timm exactly: resize the
shorter side to ``floor(size / crop_pct)`` (long side ``int(s * long / short)``), center-crop
``size`` (offset ``round((extent - size) / 2)``, half to even).
"""

from __future__ import annotations

import numpy as np

from .config import LoaderConfig

_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
ATTEMPTS = 10  # torchvision's RandomResizedCrop
# independent random streams per draw (a sample, or one copy of it under repeated augmentation)
STREAM_CROP, STREAM_FLIP, STREAM_AUGMENT, STREAM_JITTER, STREAM_ERASE = 1, 2, 3, 4, 5
STREAM_ERASE_FILL = 16  # + box index: the colours or noise of erased boxes


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijective scramble of 64-bit counters."""
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def uniforms(seed: int, epoch: int, ids: np.ndarray, stream: int, count: int) -> np.ndarray:
    """``(len(ids), count)`` floats in [0, 1), a pure function of (seed, epoch, id, stream, column)."""
    with np.errstate(over="ignore"):
        key = _mix(np.uint64(seed & (2**64 - 1)) * _GOLDEN + np.uint64(epoch) + np.uint64(stream) * _M1)
        base = _mix(key ^ (np.asarray(ids, dtype=np.uint64) * _GOLDEN))
        cols = np.arange(1, count + 1, dtype=np.uint64) * _M2
        bits = _mix(base[:, None] + cols[None, :])
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def random_resized_crop(width: np.ndarray, height: np.ndarray, scale: tuple[float, float],
                        ratio: tuple[float, float], u: np.ndarray) -> np.ndarray:
    """torchvision's ``RandomResizedCrop.get_params`` for a batch, from ``u`` (N x 22 uniforms):
    ``(left, top, w, h)`` int rows. Attempt ``k`` uses columns ``2k`` (area) and ``2k+1`` (log
    aspect ratio); the position uses columns 20 and 21."""
    width, height = np.asarray(width, np.float64), np.asarray(height, np.float64)
    area = width * height
    log_lo, log_hi = np.log(ratio[0]), np.log(ratio[1])
    target = area[:, None] * (scale[0] + (scale[1] - scale[0]) * u[:, 0:2 * ATTEMPTS:2])
    aspect = np.exp(log_lo + (log_hi - log_lo) * u[:, 1:2 * ATTEMPTS:2])
    w = np.round(np.sqrt(target * aspect))  # numpy rounds half to even, as Python's round()
    h = np.round(np.sqrt(target / aspect))
    fits = (w > 0) & (w <= width[:, None]) & (h > 0) & (h <= height[:, None])
    found = fits.any(axis=1)
    first = fits.argmax(axis=1)
    rows = np.arange(len(width))
    w_ok, h_ok = w[rows, first], h[rows, first]
    left = np.floor(u[:, 20] * (width - w_ok + 1))
    top = np.floor(u[:, 21] * (height - h_ok + 1))
    # fallback: the whole image, clamped to the ratio range, centered
    in_ratio = width / height
    lo, hi = min(ratio), max(ratio)
    fw = np.where(in_ratio < lo, width, np.where(in_ratio > hi, np.round(height * hi), width))
    fh = np.where(in_ratio < lo, np.round(width / lo), height)
    boxes = np.where(found[:, None], np.stack([left, top, w_ok, h_ok], axis=1),
                     np.stack([(width - fw) // 2, (height - fh) // 2, fw, fh], axis=1))
    return boxes.astype(np.int64)


def train_params(cfg: LoaderConfig, epoch: int, draws: np.ndarray, width: np.ndarray,
                 height: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop boxes ``(left, top, w, h)`` and flip flags (bool) of a training batch (``draws``: the
    samples' draw ids, see :meth:`.plan.EpochPlan.draw_ids`)."""
    boxes = random_resized_crop(width, height, cfg.scale, cfg.ratio,
                                uniforms(cfg.seed, epoch, draws, STREAM_CROP, 2 * ATTEMPTS + 2))
    flips = uniforms(cfg.seed, epoch, draws, STREAM_FLIP, 1)[:, 0] < cfg.hflip
    return boxes, flips


def train_size(cfg: LoaderConfig, epoch: int) -> int:
    """The training output size of ``epoch``: ``size``, or with ``res_schedule`` FFCV's progressive
    resolution: the start size up to the start epoch, the end size from the end epoch, in between
    linear in the epoch, rounded to a multiple of 32."""
    if cfg.res_schedule is None:
        return cfg.size
    start, end, first, last = cfg.res_schedule
    if epoch <= first:
        return start
    if epoch >= last:
        return end
    return int(np.round(np.interp(epoch, [first, last], [start, end]) / 32)) * 32


def eval_resize(width: np.ndarray, height: np.ndarray, shorter: int, size: int) -> tuple[np.ndarray, ...]:
    """torchvision's Resize(shorter) + CenterCrop(size) arithmetic: (resized w, resized h, crop
    left, crop top) in resized pixels, as int64 arrays."""
    width, height = np.asarray(width, np.int64), np.asarray(height, np.int64)
    w_short = width <= height
    # int(s * long / short) in float64, exactly as torchvision computes it
    out_w = np.where(w_short, shorter, (shorter * width / height).astype(np.int64))
    out_h = np.where(w_short, (shorter * height / width).astype(np.int64), shorter)
    left = np.round((out_w - size) / 2.0).astype(np.int64)
    top = np.round((out_h - size) / 2.0).astype(np.int64)
    return out_w, out_h, left, top


_FILTER_RADIUS = {"bilinear": 1, "bicubic": 2, "lanczos": 3}  # source pixels at scale 1


def eval_regions(cfg: LoaderConfig, width: np.ndarray, height: np.ndarray, window: bool) -> dict[str, np.ndarray]:
    """What the DALI eval graph needs per sample, in source pixels (float32 rows unless noted):

    * ``decode_start``/``decode_end`` (int32 [y, x]): the part of the image to decode. With
      ``window``, only what the crop reads, widened by the resampling filter's reach and a margin
      (chroma upsampling differs near a cut edge), so the kept pixels equal a whole decode's;
      otherwise the whole image.
    * ``roi_start``/``roi_end`` ([y, x]): the crop in decoded-part coordinates, for one resize
      to ``size`` that resamples only the kept pixels with the full resize's scale and phase.
    * ``rows``, ``cols_start``/``cols_end``, ``rows_start``/``rows_end``: the same crop split in
      two passes (horizontal first, rounding to uint8 between them) as Pillow does (``pil_parity``).
    """
    size = cfg.size
    w, h = np.asarray(width, np.float64), np.asarray(height, np.float64)
    out_w, out_h, left, top = eval_resize(width, height, cfg.resize_shorter, size)
    sx, sy = w / out_w, h / out_h  # source pixels per output pixel
    if window:
        reach = np.ceil(_FILTER_RADIUS[cfg.interpolation] * np.maximum(np.maximum(sx, sy), 1.0)) + 4.0
        ys = np.maximum(np.floor(top * sy) - reach, 0.0)
        ye = np.minimum(np.ceil((top + size) * sy) + reach, h)
        xs = np.maximum(np.floor(left * sx) - reach, 0.0)
        xe = np.minimum(np.ceil((left + size) * sx) + reach, w)
    else:
        ys, xs, ye, xe = np.zeros_like(h), np.zeros_like(w), h, w
    y0, y1 = top * sy - ys, (top + size) * sy - ys
    x0, x1 = left * sx - xs, (left + size) * sx - xs
    zero, f32 = np.zeros_like(h), np.float32

    def pair(a, b, dtype=f32):
        return np.stack([a, b], axis=1).astype(dtype)

    return {"decode_start": pair(ys, xs, np.int32), "decode_end": pair(ye, xe, np.int32),
            "roi_start": pair(y0, x0), "roi_end": pair(y1, x1),
            "rows": (ye - ys).astype(f32), "cols_start": pair(zero, x0), "cols_end": pair(ye - ys, x1),
            "rows_start": pair(y0, zero), "rows_end": pair(y1, zero + size)}
