"""The DALI loader: one pipeline definition for GPU ("mixed" nvJPEG decoding, hardware decoder) and
CPU (DALI CPU operators, ``device_id=None``), wrapped as a PyTorch iterable.

Reading: ``fn.readers.webdataset`` with the converter's ``.idx`` files, split across ranks by
sample ranges. Training is a shuffled stream (shuffle buffer + per-epoch reshuffle of the shard
order, the same seed on every rank so the ranks partition each pass); evaluation reads each rank's
range exactly once per epoch: DALI pads the last batch by repeating a sample, and the padding is
cut off here, so over all ranks every sample is seen exactly once.

Every sample's bytes are checked inside the pipeline before decoding (JPEG start/end markers,
non-empty label): a bad sample is swapped for a placeholder so the batch still decodes, then
reported by shard and key (``on_error="raise"``) or dropped and counted (``"skip"``).
"""

from __future__ import annotations

import io
import math
import os
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from .common import (
    LABEL_BYTES,
    Batch,
    KeyedBatch,
    LoaderDataError,
    diagnose,
    finish_images,
    parse_labels,
    resolve_device,
)
from .config import LoaderConfig
from .shardset import DistInfo, ShardSet, dist_info

# nvJPEG buffers sized for the largest ImageNet image (values from DALI's ResNet-50 example), so
# that a rare huge image does not trigger re-allocation or NVJPEG_STATUS_ALLOCATOR_FAILURE
GPU_DECODER_OPTIONS = {"device_memory_padding": 211_025_920, "host_memory_padding": 140_544_512,
                       "preallocate_width_hint": 5980, "preallocate_height_hint": 6430}
_FINAL_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "uint8": torch.uint8}


def pipeline_dtype(dtype: str, gpu: bool) -> str:
    """What the pipeline itself produces for the configured ``dtype``. On CPU, DALI's normalize
    to float16 costs 3x its normalize to float32 (0.48 vs 0.16 ms per 224 px image; BENCHMARKS.md,
    ops), so the CPU pipeline yields float32 and torch casts with vector code while copying out.
    DALI has no bfloat16: float32, cast by torch."""
    if dtype == "bfloat16" or (dtype == "float16" and not gpu):
        return "float32"
    return dtype


# A forked child (a DataLoader worker, say) inherits the parent's DALI pipelines but not their
# threads. If the child's garbage collector destroys one (a loader caught in a reference cycle,
# e.g. through an exception's traceback), the destructor joins threads that do not exist there and
# the child crashes. So a child keeps every inherited pipeline alive; it exits without freeing them.
_LIVE_PIPELINES: weakref.WeakSet = weakref.WeakSet()
_INHERITED: list = []


def _keep_inherited_pipelines() -> None:
    _INHERITED.extend(_LIVE_PIPELINES)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_keep_inherited_pipelines)


def _placeholder_jpeg() -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (124, 116, 104)).save(buf, "JPEG", quality=90)
    return np.frombuffer(buf.getvalue(), dtype=np.uint8)


def build_pipeline(shards: ShardSet, cfg: LoaderConfig, rank: int = 0, world: int = 1,
                   device_id: int | None = None):
    """The DALI pipeline; identical graph on GPU and CPU except for the operators' device, the
    float16 cast (by torch on CPU) and, on CPU, eval decoding of the crop window only."""
    from nvidia.dali import fn, pipeline_def, types

    train = cfg.mode == "train"
    gpu = device_id is not None
    out_dtype = {"float16": types.FLOAT16, "float32": types.FLOAT, "uint8": types.UINT8}[pipeline_dtype(cfg.dtype, gpu)]
    normalize = cfg.dtype != "uint8"
    mean = [m * 255 for m in cfg.mean] if normalize else [0.0]
    std = [s * 255 for s in cfg.std] if normalize else [1.0]
    layout = "HWC" if cfg.memory_format in ("channels_last", "nhwc") else "CHW"
    placeholder = _placeholder_jpeg()

    @pipeline_def(batch_size=cfg.batch_size, num_threads=cfg.threads, device_id=device_id,
                  seed=cfg.seed + 7919 * rank, prefetch_queue_depth=cfg.prefetch, enable_conditionals=True)
    def pipeline():
        jpegs, cls = fn.readers.webdataset(
            paths=shards.paths, index_paths=shards.index_paths, ext=["jpg", "cls"],
            missing_component_behavior="empty",  # checked below, so that it can be reported by key
            shard_id=rank, num_shards=world, name="Reader",
            random_shuffle=train, initial_fill=cfg.shuffle_buffer,
            shuffle_after_epoch=train,
            **({"shuffle_after_epoch_seed": cfg.seed + 1} if train else {}),  # same seed on every rank
            stick_to_shard=not train, pad_last_batch=not train)
        ok = _well_formed(jpegs, cls)
        if ok:  # noqa: SIM108 - DALI turns if-statements (not expressions) into per-sample conditionals
            data = jpegs
        else:
            data = types.Constant(placeholder, dtype=types.UINT8, device="cpu")
        images = decode_and_crop(data, cfg, gpu)
        flip = {"mirror": fn.random.coin_flip(probability=cfg.hflip)} if train else {}
        images = fn.crop_mirror_normalize(images, dtype=out_dtype, output_layout=layout, mean=mean, std=std, **flip)
        labels = fn.pad(cls, fill_value=0, shape=[LABEL_BYTES], axes=[0])
        if gpu:
            labels = labels.gpu()  # parsed to int64 on the GPU, beside the images
        # the raw label stays on the host: its source_info ("shard.tar:offset:key.cls") names the sample
        return images, labels, cls, ok

    return pipeline()


def interp_type(name: str):
    from nvidia.dali import types

    return {"bilinear": types.INTERP_LINEAR, "bicubic": types.INTERP_CUBIC, "lanczos": types.INTERP_LANCZOS3}[name]


def decoder_options(cfg: LoaderConfig, gpu: bool) -> dict:
    """Decoder device and, on GPU, the hardware decoder's share and preallocated buffers."""
    if gpu:
        return {"device": "mixed", "hw_decoder_load": cfg.hw_decoder_load, **GPU_DECODER_OPTIONS}
    return {"device": "cpu"}


def decode_and_crop(data, cfg: LoaderConfig, gpu: bool):
    """The preset's geometry, up to (not including) normalisation; shared with the profiler's
    decode + crop/resize stage. Train: ROI random-crop decode + resize to ``size``. Eval: decode (on
    CPU, of the crop window only: not tried with nvJPEG's hardware decoder), then the shorter side
    resized and the center crop taken (:func:`eval_resize_crop`)."""
    from nvidia.dali import fn, types

    options = decoder_options(cfg, gpu)
    interp = interp_type(cfg.interpolation)
    if cfg.mode == "train":
        images = fn.decoders.image_random_crop(
            data, output_type=types.RGB, random_area=list(cfg.scale), random_aspect_ratio=list(cfg.ratio),
            num_attempts=10, adjust_orientation=False, **options)
        return fn.resize(images, resize_x=cfg.size, resize_y=cfg.size, interp_type=interp, antialias=True)
    shape = fn.peek_image_shape(data, adjust_orientation=False)
    if gpu:
        images = fn.decoders.image(data, output_type=types.RGB, adjust_orientation=False,
                                   jpeg_fancy_upsampling=True, **options)  # as libjpeg / Pillow do
        window = None
    else:
        images, window = eval_decode_window(data, shape, cfg)
    return eval_resize_crop(images, shape, cfg, interp, window)


def _well_formed(jpegs, cls):
    """Per-sample: a non-empty label and bytes that start with SOI and end with EOI (catches
    missing members, truncated files and non-JPEG bytes without decoding)."""
    import nvidia.dali.math as dmath
    from nvidia.dali import fn, types

    n = jpegs.shape(dtype=types.INT32)[0]
    head = fn.slice(jpegs, 0, 2, axes=[0], out_of_bounds_policy="pad", fill_values=0)
    tail = fn.slice(jpegs, dmath.max(n - 2, 0), 2, axes=[0], out_of_bounds_policy="pad", fill_values=0)
    return ((n >= 4) & (head[0] == 0xFF) & (head[1] == 0xD8) & (tail[0] == 0xFF) & (tail[1] == 0xD9)
            & (cls.shape(dtype=types.INT32)[0] > 0))


def _eval_box(shape, shorter: int, crop: int):
    """torchvision's Resize(shorter) + CenterCrop(crop) arithmetic, per sample, in float64 pixels:
    (h, w, out_h, out_w, top, left). The long side is ``int(shorter * long / short)`` and the crop
    offset ``int(round((extent - crop) / 2))`` with Python's round-half-to-even, so the pixels
    match the PIL reference exactly in geometry."""
    import nvidia.dali.math as dmath
    from nvidia.dali import fn, types

    h = fn.cast(shape[0], dtype=types.FLOAT64)
    w = fn.cast(shape[1], dtype=types.FLOAT64)
    s = float(shorter)
    w_is_short = fn.cast(w <= h, dtype=types.FLOAT64)
    out_w = w_is_short * s + (1.0 - w_is_short) * dmath.floor(s * w / h)
    out_h = w_is_short * dmath.floor(s * h / w) + (1.0 - w_is_short) * s

    def anchor(extent):
        d = extent - float(crop)
        low = dmath.floor(d / 2.0)
        odd = d - 2.0 * low
        return low + odd * (low - 2.0 * dmath.floor(low / 2.0))  # .5 rounds to the even neighbour

    return h, w, out_h, out_w, anchor(out_h), anchor(out_w)


def _eval_geometry(shape, shorter: int, crop: int):
    """(out_h, out_w, crop_pos_y, crop_pos_x) as float32, crop positions relative (for fn.crop)."""
    import nvidia.dali.math as dmath
    from nvidia.dali import fn, types

    _, _, out_h, out_w, top, left = _eval_box(shape, shorter, crop)

    def rel(anchor, extent):
        return fn.cast(anchor / dmath.max(extent - float(crop), 1.0), dtype=types.FLOAT)

    return (fn.cast(out_h, dtype=types.FLOAT), fn.cast(out_w, dtype=types.FLOAT), rel(top, out_h),
            rel(left, out_w))


_FILTER_RADIUS = {"bilinear": 1, "bicubic": 2, "lanczos": 3}  # source pixels at scale 1


def eval_decode_window(data, shape, cfg: LoaderConfig):
    """CPU: decode only the source window the center crop reads, widened by the resampling filter's
    reach and a margin (chroma upsampling differs near a cut edge), so the kept pixels equal those of
    a whole decode. The decode itself costs about the same, but the resizes then read a smaller
    image (eval-224 on CPU: 4.11 -> 3.72 ms per image with pil_parity, 2.20 -> 2.13 without;
    BENCHMARKS.md). Returns the decoded part and its (top, left, height) in the image."""
    import nvidia.dali.math as dmath
    from nvidia.dali import fn, types

    h, w, out_h, out_w, top, left = _eval_box(shape, cfg.resize_shorter, cfg.size)
    size = float(cfg.size)
    sy, sx = h / out_h, w / out_w
    reach = dmath.ceil(_FILTER_RADIUS[cfg.interpolation] * dmath.max(dmath.max(sx, sy), 1.0)) + 4.0
    ys = dmath.max(dmath.floor(top * sy) - reach, 0.0)
    ye = dmath.min(dmath.ceil((top + size) * sy) + reach, h)
    xs = dmath.max(dmath.floor(left * sx) - reach, 0.0)
    xe = dmath.min(dmath.ceil((left + size) * sx) + reach, w)

    def i32(*values):
        return fn.stack(*(fn.cast(v, dtype=types.INT32) for v in values))

    images = fn.decoders.image_slice(data, device="cpu", output_type=types.RGB, adjust_orientation=False,
                                     jpeg_fancy_upsampling=True, start=i32(ys, xs), end=i32(ye, xe), axis_names="HW")
    return images, (ys, xs, ye - ys)


def eval_resize_crop(images, shape, cfg: LoaderConfig, interp, window=None):
    """Resize the shorter side to ``cfg.resize_shorter`` and center-crop ``cfg.size``, resampling
    only the pixels that are kept: each resize gets the crop window as a region of interest in
    source coordinates, which DALI maps with the same scale and sample positions as the full resize
    (the filter still reads pixels outside the window), so the result equals resize-then-crop
    while the resampling work shrinks (CPU, 500x375 -> 224: 1.66 -> 0.87 ms one pass; BENCHMARKS.md).
    ``window``: (top, left, height) of the decoded part, when only a part of the image was decoded.

    ``pil_parity``: Pillow resizes horizontally first and rounds to uint8 between the passes;
    doing the same (two resizes, rows kept whole in the first) brings DALI within rounding of it."""
    from nvidia.dali import fn, types

    h, w, out_h, out_w, top, left = _eval_box(shape, cfg.resize_shorter, cfg.size)
    size = float(cfg.size)
    sy, sx = h / out_h, w / out_w  # source pixels per output pixel
    zero = h * 0.0
    oy, ox, hh = window if window is not None else (zero, zero, h)

    def f32(*values):
        return fn.stack(*(fn.cast(v, dtype=types.FLOAT) for v in values))

    y0, y1, x0, x1 = top * sy - oy, (top + size) * sy - oy, left * sx - ox, (left + size) * sx - ox
    opts = {"interp_type": interp, "antialias": True}
    if cfg.pil_parity:
        images = fn.resize(images, resize_x=size, resize_y=fn.cast(hh, dtype=types.FLOAT), roi_start=f32(zero, x0),
                           roi_end=f32(hh, x1), **opts)
        return fn.resize(images, resize_x=size, resize_y=size, roi_start=f32(y0, zero), roi_end=f32(y1, zero + size),
                         **opts)
    return fn.resize(images, resize_x=size, resize_y=size, roi_start=f32(y0, x0), roi_end=f32(y1, x1), **opts)


class DaliLoader:
    """Iterable of :class:`Batch` (or :class:`KeyedBatch`) over one split; one pass per ``iter()``."""

    backend = "dali"

    def __init__(self, shards: ShardSet, cfg: LoaderConfig, dist: DistInfo | None = None) -> None:
        self.shards, self.cfg = shards, cfg
        self.dist = dist or dist_info()
        world, rank = self.dist.world_size, self.dist.rank
        n = shards.num_samples
        if world > n:
            raise ValueError(f"{world} ranks but only {n} samples in {shards.split!r}")
        self.device_id = resolve_device(cfg, self.dist.local_rank)
        self.device = torch.device("cuda", self.device_id) if self.device_id is not None else torch.device("cpu")
        self.train = cfg.mode == "train"
        if self.train:
            self.steps = n // (world * cfg.batch_size)  # every rank takes the same number of steps
            if self.steps == 0:
                raise ValueError(f"batch size {cfg.batch_size} x {world} ranks exceeds the {n} samples of "
                                 f"{shards.split!r}")
            self.num_samples = self.steps * cfg.batch_size
        else:
            start, end = shards.rank_range(rank, world)
            self.num_samples = end - start
            self.steps = math.ceil(self.num_samples / cfg.batch_size)
            # DALI pads every rank to the same number of batches: that of the largest range
            self._reader_batches = math.ceil(math.ceil(n / world) / cfg.batch_size)
        self.epoch = 0
        self.skipped: list[tuple[str, str, str]] = []  # (shard, key, reason) with on_error="skip"
        self._position = 0  # batches consumed in the current reader epoch (eval)
        self._broken: Exception | None = None
        self.pipe = build_pipeline(shards, cfg, rank, world, self.device_id)
        _LIVE_PIPELINES.add(self.pipe)
        self.pipe.build()

    def __len__(self) -> int:
        return self.steps

    def set_epoch(self, epoch: int) -> None:
        """Accepted for DistributedSampler-style loops; the reader reshuffles by itself each pass."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[Batch | KeyedBatch]:
        if self._broken is not None:
            raise RuntimeError("the loader stopped after an error and cannot continue") from self._broken
        if self.train:
            for _ in range(self.steps):
                yield self._next(keep=self.cfg.batch_size)
        else:
            while self._position % self._reader_batches:  # a previous pass was abandoned part-way
                self._run()
                self._position += 1
            remaining = self.num_samples
            for _ in range(self._reader_batches):
                keep = min(self.cfg.batch_size, remaining)
                batch = self._next(keep)
                self._position += 1
                remaining -= keep
                if keep:
                    yield batch
        self.epoch += 1

    def _run(self):
        try:
            return self.pipe.run()
        except RuntimeError as e:
            self._broken = e
            raise LoaderDataError(self._explain(e)) from e

    def _next(self, keep: int) -> Batch | KeyedBatch:
        images_tl, labels_tl, cls_tl, ok_tl = self._run()
        ok = np.array(ok_tl.as_tensor()).astype(bool).reshape(-1)[:keep]
        want_keys = self.cfg.return_keys or not ok.all()
        sources = [cls_tl[i].source_info() for i in range(keep)] if want_keys else []
        keys = [s.rsplit(":", 1)[-1].split(".", 1)[0] for s in sources]
        rows = np.arange(keep)
        if not ok.all():
            rows = self._handle_bad(rows, ok, sources, keys)
        images = _to_torch(images_tl, self.device, _FINAL_DTYPES[self.cfg.dtype], keep)
        labels = parse_labels(_to_torch(labels_tl, self.device, torch.uint8, keep))
        if len(rows) != keep:
            index = torch.as_tensor(rows, device=self.device)
            images, labels = images[index], labels[index]
            keys = [keys[i] for i in rows]
        images = finish_images(images, self.cfg, "NHWC" if self.cfg.memory_format != "contiguous" else "NCHW")
        return KeyedBatch(images, labels, keys) if self.cfg.return_keys else Batch(images, labels)

    def _handle_bad(self, rows: np.ndarray, ok: np.ndarray, sources: list[str], keys: list[str]) -> np.ndarray:
        for i in np.flatnonzero(~ok):
            shard = sources[i].rsplit(":", 2)[0]
            reason = diagnose(shard, keys[i])
            if self.cfg.on_error == "raise":
                raise LoaderDataError(f"{Path(shard).name}: sample {keys[i]} {reason} (pass on_error='skip' to "
                                      "drop bad samples; `imagenet-pipe verify --decode` checks a whole folder)")
            self.skipped.append((Path(shard).name, keys[i], reason))
        return rows[ok]

    def _explain(self, error: Exception) -> str:
        """Name the sample behind a decoder failure: DALI's message does not say which one."""
        from ..shards import iter_samples
        from .common import diagnose as why

        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        summary = next((line for line in lines if "failure" in line or "encountered" in line),
                       lines[-1] if lines else "")
        fallback = None
        for shard in self._scan_order():
            for key, sample in iter_samples(Path(shard)):
                data = sample.get("jpg", b"")
                if _decodes(data):
                    continue
                # samples failing the marker check never reach the decoder: prefer one that passes it
                if len(data) >= 4 and data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9":
                    return f"DALI failed to decode {Path(shard).name}: sample {key} {why(shard, key)} ({summary})"
                fallback = fallback or f"{Path(shard).name}: sample {key} {why(shard, key)}"
        if fallback:
            return f"DALI failed ({summary}); {fallback}"
        return f"DALI failed ({summary}); no undecodable sample found near the read position"

    def _scan_order(self) -> list[str]:
        paths = self.shards.paths
        if not self.train:
            start, end = self.shards.rank_range(self.dist.rank, self.dist.world_size)
            paths = [p for p, _, _ in self.shards.segments(start, end)]
        return paths[:16]

    def close(self) -> None:
        if getattr(self, "pipe", None) is not None:
            del self.pipe
            self.pipe = None

    def __enter__(self) -> DaliLoader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _decodes(data: bytes) -> bool:
    from PIL import Image

    try:
        Image.open(io.BytesIO(data)).load()
        return True
    except Exception:
        return False


def _to_torch(tensor_list, device: torch.device, dtype: torch.dtype, rows: int | None = None) -> torch.Tensor:
    """The first ``rows`` samples of a dense DALI batch as a new torch tensor of ``dtype`` on
    ``device`` (a copy: DALI reuses its buffers). Host batches: one pass from a zero-copy view of
    DALI's buffer, casting on the way (float32 -> float16 / bfloat16 on CPU pipelines). GPU: the
    pipeline already produced ``dtype`` (float32 for bfloat16, cast later); copied on the current stream."""
    from nvidia.dali.backend import TensorGPU

    dense = tensor_list.as_tensor()
    if not isinstance(dense, TensorGPU):
        host = torch.from_numpy(np.asarray(dense))[:rows].to(dtype, copy=True)
        # no direct host -> device memcpy into torch memory here
        return host if device.type == "cpu" else host.to(device, non_blocking=True)
    from nvidia.dali.plugin.pytorch import feed_ndarray

    produced = torch.float32 if dtype == torch.bfloat16 else dtype
    out = torch.empty(dense.shape(), dtype=produced, device=device)
    feed_ndarray(dense, out, cuda_stream=torch.cuda.current_stream(device))
    return out[:rows]
