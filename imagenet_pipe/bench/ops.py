"""Where the time goes inside the DALI pipeline (``--stages ops``): CPU time per image of growing
pipelines on the benchmark's shards, so that each operator's cost is the difference between two
rows. Process CPU time (all DALI threads) is counted, not wall time: it is far less disturbed by
other work on a shared machine, and it is what a core budget pays.

Rows cover the choices the loader makes and the alternatives it does not take: whole vs ROI
decoding, libjpeg's fast IDCT, antialiased vs plain resize, float16 vs float32 out of
``crop_mirror_normalize``, and for eval the resize-then-crop of the original pipeline against the
ROI resize (and window decode) the loader uses now, with and without ``pil_parity``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from .stages import StageContext, _pipeline


def _measure(ctx: StageContext, graph: Callable, batches: int) -> dict[str, float]:
    pipe = _pipeline(ctx, graph)
    for _ in range(ctx.warmup):
        pipe.run()
    bs = ctx.cfg.batch_size
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(batches):
        pipe.run()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    del pipe
    return {"cpu_ms_per_img": round(cpu / (batches * bs) * 1e3, 4), "img_s": round(batches * bs / wall, 1)}


def graphs(ctx: StageContext) -> dict[str, Callable]:
    """Named pipeline bodies (reader output -> images), for the preset's mode and size."""
    from nvidia.dali import fn, types

    from ..loaders.dali import _eval_geometry, eval_decode_window, eval_resize_crop, interp_type

    cfg = ctx.cfg
    interp = interp_type(cfg.interpolation)
    rgb = {"output_type": types.RGB, "adjust_orientation": False}
    norm = {"mean": [m * 255 for m in cfg.mean], "std": [s * 255 for s in cfg.std]}
    n = cfg.size

    def whole(j, **kw):
        return fn.decoders.image(j, **rgb, **kw)

    def rrc(j, **kw):
        return fn.decoders.image_random_crop(j, **rgb, random_area=list(cfg.scale), random_aspect_ratio=list(cfg.ratio),
                                             num_attempts=10, **kw)

    def resized(j, antialias=True):
        return fn.resize(rrc(j), resize_x=n, resize_y=n, interp_type=interp, antialias=antialias)

    out: dict[str, Callable] = {
        "read": lambda j: j,
        "decode whole": whole,
        "decode whole, fast IDCT": lambda j: whole(j, use_fast_idct=True),
    }
    if cfg.mode == "train":
        out.update({
            "decode ROI (random crop)": rrc,
            "decode ROI, fast IDCT": lambda j: rrc(j, use_fast_idct=True),
            "+ resize (antialias)": resized,
            "+ resize (no antialias)": lambda j: resized(j, antialias=False),
            "+ resize + normalize -> float16": lambda j: fn.crop_mirror_normalize(
                resized(j), dtype=types.FLOAT16, mirror=fn.random.coin_flip(), **norm),
            "+ resize + normalize -> float32": lambda j: fn.crop_mirror_normalize(
                resized(j), dtype=types.FLOAT, mirror=fn.random.coin_flip(), **norm),
        })
        return out

    def shape(j):
        return fn.peek_image_shape(j, adjust_orientation=False)

    def fancy(j):
        return whole(j, jpeg_fancy_upsampling=True)

    def resize_then_crop(j, parity):  # the pipeline before the ROI resize
        s = shape(j)
        out_h, out_w, pos_y, pos_x = _eval_geometry(s, cfg.resize_shorter, n)
        images = fancy(j)
        if parity:
            images = fn.resize(images, resize_x=out_w, resize_y=fn.cast(s[0], dtype=types.FLOAT), interp_type=interp)
        images = fn.resize(images, resize_x=out_w, resize_y=out_h, interp_type=interp)
        return fn.crop(images, crop=(n, n), crop_pos_x=pos_x, crop_pos_y=pos_y)

    def roi(j, parity, window):
        s = shape(j)
        c = replace(cfg, pil_parity=parity)
        if window:
            images, win = eval_decode_window(j, s, c)
        else:
            images, win = fancy(j), None
        return eval_resize_crop(images, s, c, interp, win)

    out.update({
        "decode whole, fancy upsampling": fancy,
        "decode crop window (fancy)": lambda j: eval_decode_window(j, shape(j), cfg)[0],
        "resize then crop, parity off": lambda j: resize_then_crop(j, False),
        "ROI resize, parity off": lambda j: roi(j, False, False),
        "ROI resize + window decode, parity off": lambda j: roi(j, False, True),
        "resize then crop, parity on": lambda j: resize_then_crop(j, True),
        "ROI resize, parity on": lambda j: roi(j, True, False),
        "ROI resize + window decode, parity on": lambda j: roi(j, True, True),
    })
    return out


def op_costs(ctx: StageContext, batches: int | None = None) -> dict[str, Any]:
    """CPU ms per image and wall img/s of each row of :func:`graphs` (CPU pipelines only)."""
    if ctx.cuda:
        return {"skipped": "the ops stage profiles DALI's CPU operators (run it with --device cpu)"}
    n = batches or ctx.batches
    return {"rows": {name: _measure(ctx, g, n) for name, g in graphs(ctx).items()}, "batches": n,
            "batch_size": ctx.cfg.batch_size, "threads": ctx.cfg.threads}
