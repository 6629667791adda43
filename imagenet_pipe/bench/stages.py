"""The measured stages, each on the same shards and the same cores:

* ``read_files``: plain sequential reads of the shard files (MB/s, samples/s);
* ``read_dali``: the loader's reading alone, samples handed to DALI (samples/s, MB/s of JPEG payload);
* ``decode``: reader + JPEG decoder, nothing else: the decode-only ceiling of this machine;
* ``decode_resize``: reader + decoder + the preset's crop/resize geometry (no normalisation);
* ``loader_dali`` / ``loader_baseline``: the full loaders to device tensors (``build_loader``'s
  two backends), also ``loader_dali_no_parity`` for eval presets (``pil_parity`` off);
* ``model``: a loader feeding a model step, against the model alone on one resident batch.

DALI stage pipelines use the loader's own reader, external source, decoder options and thread count
(:class:`imagenet_pipe.loaders.dali.StagePipeline`), so that the stages differ from the loader only
by what they leave out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ..format import idx_name, read_idx
from ..loaders.config import LoaderConfig
from ..loaders.epochs import PlannedLoader
from ..loaders.shardset import DistInfo, ShardSet
from .timing import Window, steady_window, summary, synchronizer, time_epochs, time_stream

SINGLE = DistInfo(0, 1, 0)  # the benchmark is one process


@dataclass
class StageContext:
    shards: ShardSet
    cfg: LoaderConfig  # the DALI loader's resolved config (device, threads, batch size, prefetch set)
    device_id: int | None  # CUDA device for "mixed" decoding, None for DALI's CPU operators
    warmup: int = 3  # untimed batches at the start of each window / pass
    batches: int = 20  # timed batches per repeat (at most what a pass holds)
    repeats: int = 3

    @property
    def cuda(self) -> bool:
        return self.device_id is not None

    @property
    def sync(self) -> Callable[[], None]:
        return synchronizer(self.cuda)


def jpeg_bytes_per_sample(shards: ShardSet, limit: int = 64) -> float:
    """Mean JPEG payload per sample, from the ``.idx`` files (or the tars) of up to ``limit`` shards."""
    from ..format import index_tar

    sizes: list[int] = []
    for path in shards.paths[:limit]:
        idx = Path(path).with_name(idx_name(Path(path).name))
        samples = read_idx(idx) if idx.exists() else index_tar(Path(path))
        sizes += [c.size for s in samples for c in s if c.ext == "jpg"]
    return sum(sizes) / max(1, len(sizes))


# --- raw reads -------------------------------------------------------------------------------

def read_files(ctx: StageContext, max_bytes: int = 512 << 20) -> dict[str, Any]:
    """Sequential whole-file reads of the split's shards (up to ``max_bytes`` per pass), 8 MiB at a
    time (for a bucket: of their copies in the shard cache, which the first pass fills)."""
    paths, total = [], 0
    for shard, n in enumerate(ctx.shards.lengths):
        path = ctx.shards.shard_path(shard)
        paths.append((path, n))
        total += Path(path).stat().st_size
        if total >= max_bytes:
            break

    def one_pass() -> tuple[float, int, int]:
        start, nbytes, samples = time.perf_counter(), 0, 0
        for path, n in paths:
            with open(path, "rb", buffering=0) as f:
                while chunk := f.read(8 << 20):
                    nbytes += len(chunk)
            samples += n
        return time.perf_counter() - start, nbytes, samples

    one_pass()  # warm-up; afterwards the files are served from the page cache if they fit in memory
    passes = [one_pass() for _ in range(ctx.repeats)]
    for shard in range(len(paths)):
        ctx.shards.release(shard)
    return {"img_s": summary([s / t for t, _, s in passes]),
            "mb_s": summary([b / t / 1e6 for t, b, _ in passes], "MB/s"),
            "files": len(paths), "bytes_per_pass": passes[0][1]}


def _run_pipeline(ctx: StageContext, graph) -> tuple[list[float], Window]:
    """Rates of the loader's own reader and source feeding ``graph`` (inputs dict -> output)."""
    from ..loaders.dali import StagePipeline

    pipe = StagePipeline(ctx.shards, ctx.cfg, ctx.device_id, graph)
    window = steady_window(ctx.cfg.prefetch, ctx.warmup, ctx.batches)  # the pipeline's own prefetch queue
    try:
        rates = time_stream(pipe.run, warmup=window.warmup_batches, batches=window.timed_batches,
                            repeats=ctx.repeats, sync=ctx.sync)
    finally:
        pipe.close()
    return rates, window


def read_dali(ctx: StageContext) -> dict[str, Any]:
    """The loader's reading alone: the epoch plan's samples read by offset, checked and handed to DALI."""
    rates, window = _run_pipeline(ctx, lambda inputs: inputs["jpegs"])
    per = jpeg_bytes_per_sample(ctx.shards)
    return {"img_s": summary(rates), "mb_s": summary([r * per / 1e6 for r in rates], "MB/s"),
            "jpeg_bytes_per_sample": round(per), "window": window.as_json()}


def decode(ctx: StageContext, **decoder: Any) -> dict[str, Any]:
    """Whole-image decoding and nothing after it (``decoder``: extra decoder arguments)."""
    from nvidia.dali import fn, types

    from ..loaders.dali_graph import decoder_options

    args = {**decoder_options(ctx.cfg, ctx.cuda), **decoder}
    rates, window = _run_pipeline(ctx, lambda inputs: fn.decoders.image(inputs["jpegs"], output_type=types.RGB,
                                                                        adjust_orientation=False, **args))
    return {"img_s": summary(rates), "decoder": {k: v for k, v in args.items() if not k.endswith(("_hint",
                                                                                                    "_padding"))},
            "window": window.as_json()}


def decode_resize(ctx: StageContext) -> dict[str, Any]:
    """The preset's geometry without normalisation: the loader's own :func:`decode_and_crop`."""
    from ..loaders.dali_graph import decode_and_crop

    cfg = ctx.cfg
    rates, window = _run_pipeline(ctx, lambda inputs: decode_and_crop(inputs, cfg, ctx.cuda))
    return {"img_s": summary(rates), "pil_parity": cfg.pil_parity if cfg.mode == "eval" else None,
            "window": window.as_json()}


# --- loaders ----------------------------------------------------------------------------------

def make_loader(ctx: StageContext, backend: str, **overrides: Any) -> PlannedLoader:
    """The loader of ``backend`` over the context's shards and config (with ``overrides``), one process."""
    from ..loaders import make_loader as new_loader

    return new_loader(ctx.shards, replace(ctx.cfg, **overrides), backend, SINGLE)


def workers_of(backend: str, cfg: LoaderConfig) -> int:
    """DALI threads, or the baseline's DataLoader workers (default: as many as the DALI threads)."""
    return cfg.threads if backend == "dali" else (cfg.num_workers if cfg.num_workers is not None else cfg.threads)


def queue_batches(backend: str, cfg: LoaderConfig) -> int:
    """Batches a loader may hold ready before the consumer asks: DALI's prefetch queue; each
    DataLoader worker's ``prefetch_factor`` batches (the main process itself when there are none)."""
    return cfg.prefetch if backend == "dali" else max(1, workers_of(backend, cfg)) * cfg.prefetch


def loader_window(ctx: StageContext, backend: str, cfg: LoaderConfig, steps: int) -> Window:
    return steady_window(queue_batches(backend, cfg), ctx.warmup, ctx.batches, steps)


class TimedLoader:
    """One loader, built once and timed pass by pass, each pass in a steady window
    (:func:`steady_window`: warm-up past DataLoader start-up, DALI's shuffle-buffer fill and the
    prefetch queue; the window sized from the loader's own ``len``). The one place loaders are timed."""

    def __init__(self, ctx: StageContext, backend: str, **overrides: Any) -> None:
        self.ctx, self.backend, self.cfg = ctx, backend, replace(ctx.cfg, **overrides)
        start = time.perf_counter()
        self.loader = make_loader(ctx, backend, **overrides)
        self.build_s = time.perf_counter() - start
        self.window = loader_window(ctx, backend, self.cfg, len(self.loader))
        self.rates: list[float] = []

    def time_passes(self, passes: int) -> None:
        """Time ``passes`` more passes (each a fresh iterator), adding to :attr:`rates`."""
        self.rates += time_epochs(lambda: (b.images.shape[0] for b in self.loader),
                                  warmup=self.window.warmup_batches, batches=self.window.timed_batches,
                                  repeats=passes, sync=self.ctx.sync)

    def summary(self) -> dict[str, Any]:
        """The measurement as stored in ``bench.json``."""
        cfg = self.cfg
        return {"img_s": summary(self.rates), "backend": self.backend, "build_s": round(self.build_s, 3),
                "window": self.window.as_json(), "batch_size": cfg.batch_size,
                "threads_or_workers": workers_of(self.backend, cfg), "prefetch": cfg.prefetch,
                **({"pil_parity": cfg.pil_parity} if cfg.mode == "eval" else {})}

    def close(self) -> None:
        self.loader.close()


def loader_rate(ctx: StageContext, min_batches: int = 1) -> float | None:
    """Median DALI loader rate over ``ctx.repeats`` passes (auto-tune trials); None when a pass
    holds fewer than ``min_batches`` batches."""
    timed = TimedLoader(ctx, "dali")
    try:
        if len(timed.loader) < min_batches:
            return None
        timed.time_passes(ctx.repeats)
        return float(summary(timed.rates)["median"] or 0.0)
    finally:
        timed.close()


# --- model step -------------------------------------------------------------------------------

def model_step(ctx: StageContext, backend: str, model: str = "small", kind: str = "fwdbwd") -> dict[str, Any]:
    """Loader + model step vs the model alone on one resident batch: ``keeps_up`` when the loader
    costs the step less than 5 % (on a CPU-only machine both share the same cores)."""
    from .model_step import ModelStep

    device = torch.device("cuda", ctx.device_id) if ctx.cuda else torch.device("cpu")
    step = ModelStep(model, kind, device)
    ldr = make_loader(ctx, backend)
    try:
        it = iter(ldr)
        first = next(it)
        it.close()  # ends the pass now (DataLoader workers stop; DALI eval skips the rest on the next pass)
        images, labels = first.images.to(device), first.labels.to(device)
        bs = images.shape[0]

        def alone() -> int:
            step(images, labels)
            return bs

        # model alone: the batch stays on the device, as if the loader cost nothing
        alone_rates = time_stream(alone, warmup=ctx.warmup, batches=max(2, ctx.batches // 2), repeats=ctx.repeats,
                                  sync=ctx.sync)

        def fed():
            for b in ldr:
                step(b.images, b.labels)
                yield b.images.shape[0]

        window = loader_window(ctx, backend, ctx.cfg, len(ldr))
        fed_rates = time_epochs(fed, warmup=window.warmup_batches, batches=window.timed_batches,
                                repeats=ctx.repeats, sync=ctx.sync)
    finally:
        ldr.close()
    alone_s, fed_s = summary(alone_rates), summary(fed_rates)
    # a window shorter than the loader's queue would credit the loader with batches made before it
    ratio = (fed_s["median"] / alone_s["median"]) if alone_s["median"] and fed_s["median"] else None
    ratio = ratio if window.steady else None
    return {"model": model, "step": kind, "backend": backend, "model_alone_img_s": alone_s, "fed_img_s": fed_s,
            "window": window.as_json(), "fed_over_alone": ratio,
            "keeps_up": None if ratio is None else ratio >= 0.95}
