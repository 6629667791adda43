"""Where the time goes inside the DALI pipeline (``--stages ops``): CPU time per image of growing
pipelines on the benchmark's shards, so that each operator's cost is the difference between two
rows. Process CPU time (all DALI threads) is counted, not wall time: it is far less disturbed by
other work on a shared machine, and it is what a core budget pays.

Rows cover the choices the loader makes and the alternatives it does not take: whole vs ROI
decoding, libjpeg's fast IDCT, antialiased vs plain resize, float16 vs float32 out of
``crop_mirror_normalize``, and for eval the window decode and ROI resize with the preset's
``pil_parity``; plus the loader's Python-side work per batch (reading by offset, byte checks and
the per-sample geometry that the graph receives instead of computing it in DALI operators).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from .stages import StageContext, make_loader


def _measure(ctx: StageContext, graph: Callable | None, batches: int) -> dict[str, float]:
    from ..loaders.dali import StagePipeline

    pipe = StagePipeline(ctx.shards, ctx.cfg, ctx.device_id, graph)
    try:
        for _ in range(ctx.warmup):
            pipe.run()
        cpu, wall, images = time.process_time(), time.perf_counter(), 0
        for _ in range(batches):
            images += pipe.run()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        pipe.close()
    return {"cpu_ms_per_img": round(cpu / images * 1e3, 4), "img_s": round(images / wall, 1)}


def _python_side(ctx: StageContext, batches: int) -> dict[str, float]:
    """The loader's per-batch Python work (read by offset, byte checks, geometry) without DALI, over
    the batches of the loaders' own epoch plan."""
    from ..loaders.dali import source_arrays
    from ..loaders.plan import EpochPlan
    from ..loaders.reader import SampleReader

    planned = make_loader(ctx, "baseline")  # for its epoch plan: the baseline builds no pipeline or worker
    plan = EpochPlan(planned.plan_args, 0)
    planned.close()
    reader, images = SampleReader(ctx.shards), 0
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(min(batches, plan.steps)):
        fetched = reader.read(plan.batch(i))
        source_arrays(ctx.cfg, ctx.cuda, 0, fetched)
        images += len(fetched.ids)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    reader.close()
    return {"cpu_ms_per_img": round(cpu / max(images, 1) * 1e3, 4), "img_s": round(images / wall, 1)}


def graphs(ctx: StageContext) -> dict[str, Callable | None]:
    """Named pipeline bodies (the loader's source inputs -> images), for the preset's mode and
    size; ``None`` is the loader's whole graph."""
    from nvidia.dali import fn, types

    from ..loaders.dali_graph import decode_and_crop, interp_type

    cfg = ctx.cfg
    interp = interp_type(cfg.interpolation)
    rgb = {"output_type": types.RGB, "adjust_orientation": False}
    norm = {"mean": [m * 255 for m in cfg.mean], "std": [s * 255 for s in cfg.std]}
    n = cfg.size

    def whole(x, **kw):
        return fn.decoders.image(x["jpegs"], **rgb, **kw)

    out: dict[str, Callable | None] = {
        "read (into DALI)": lambda x: x["jpegs"],
        "decode whole": whole,
        "decode whole, fast IDCT": lambda x: whole(x, use_fast_idct=True),
    }
    if cfg.mode == "train":
        def crop(x, **kw):
            return fn.decoders.image_slice(x["jpegs"], start=x["crop_start"], end=x["crop_end"], axis_names="HW",
                                           **rgb, **kw)

        def resized(x, antialias=True):
            return fn.resize(crop(x), resize_x=n, resize_y=n, interp_type=interp, antialias=antialias)

        out.update({
            "decode ROI (crop window)": crop,
            "decode ROI, fast IDCT": lambda x: crop(x, use_fast_idct=True),
            "+ resize (antialias)": resized,
            "+ resize (no antialias)": lambda x: resized(x, antialias=False),
            "+ resize + flip/normalize -> float16": lambda x: fn.crop_mirror_normalize(
                resized(x), dtype=types.FLOAT16, mirror=x["flip"], **norm),
            "+ resize + flip/normalize -> float32 (the loader)": None,
        })
        return out
    parity_off = replace(cfg, pil_parity=False)
    out.update({
        "decode whole, fancy upsampling": lambda x: whole(x, jpeg_fancy_upsampling=True),
        "decode crop window (fancy)": lambda x: fn.decoders.image_slice(
            x["jpegs"], start=x["decode_start"], end=x["decode_end"], axis_names="HW", jpeg_fancy_upsampling=True,
            **rgb),
        "+ ROI resize, parity off": (lambda x: decode_and_crop(x, parity_off, False)) if not cfg.pil_parity else None,
        "+ ROI resize, parity on": (lambda x: decode_and_crop(x, cfg, False)) if cfg.pil_parity else None,
        "+ normalize (the loader)": None,
    })
    return {k: v for k, v in out.items() if v is not None or k.endswith("(the loader)")}


def op_costs(ctx: StageContext, batches: int | None = None) -> dict[str, Any]:
    """CPU ms per image and wall img/s of each row of :func:`graphs` (CPU pipelines only), and of
    the loader's Python-side work per batch."""
    if ctx.cuda:
        return {"skipped": "the ops stage profiles DALI's CPU operators (run it with --device cpu)"}
    n = batches or ctx.batches
    rows = {"python: read + checks + geometry": _python_side(ctx, n)}
    rows.update({name: _measure(ctx, g, n) for name, g in graphs(ctx).items()})
    return {"rows": rows, "batches": n, "batch_size": ctx.cfg.batch_size, "threads": ctx.cfg.threads}
