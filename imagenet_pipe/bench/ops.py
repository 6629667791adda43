"""Where the time goes inside the DALI pipeline (``--stages ops``): CPU time per image of growing
pipelines on the benchmark's shards, so that each operator's cost is the difference between two
rows. Process CPU time (all DALI threads) is counted, not wall time: it is far less disturbed by
other work on a shared machine, and it is what a core budget pays.

Rows cover the choices the loader makes and the alternatives it does not take: whole vs ROI
decoding, libjpeg's fast IDCT, antialiased vs plain resize, float16 vs float32 out of
``crop_mirror_normalize``, and for eval the window decode and ROI resize with the preset's
``pil_parity``; plus the loader's Python-side work per batch (reading by offset, byte checks and
the per-sample geometry that the graph receives instead of computing it in DALI operators).

Training presets also get one row per augmentation op applied to every image after the resize (its
cost per image is the difference to the resize row; a recipe applies each op to a share of the
images only) and the same op in Pillow as the baseline runs it, the preset's own augmentation
layers and erasing as the loader runs them, the Python-side cost of the recipe's decisions, and
mixup/cutmix with soft targets in torch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from ..loaders.config import training_recipe
from ..loaders.mixup import soft_targets_on
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


def _python_side(ctx: StageContext, batches: int, cfg=None) -> dict[str, float]:
    """The loader's per-batch Python work (read by offset, byte checks, geometry and recipe
    decisions) without DALI, over the batches of the loaders' own epoch plan."""
    from ..loaders.dali import source_arrays
    from ..loaders.plan import EpochPlan
    from ..loaders.reader import SampleReader

    cfg = cfg or ctx.cfg
    # the plan of a loader with ``cfg``'s recipe (the baseline builds no pipeline or worker for it)
    planned = make_loader(ctx, "baseline", **{k: getattr(cfg, k) for k in training_recipe(ctx.cfg)})
    plan = EpochPlan(planned.plan_args, 0)
    planned.close()
    reader, images = SampleReader(ctx.shards), 0
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(min(batches, plan.steps)):
        fetched = reader.read(plan.batch(i))
        source_arrays(cfg, ctx.cuda, 0, fetched)
        images += len(fetched.ids)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    reader.close()
    return {"cpu_ms_per_img": round(cpu / max(images, 1) * 1e3, 4), "img_s": round(images / wall, 1)}


def _plain(cfg):
    """The config without its training recipe (the rows before the augmentations)."""
    from ..loaders.config import LoaderConfig

    return replace(cfg, **{name: getattr(LoaderConfig, name) for name in training_recipe(cfg)})


def _mixing(ctx: StageContext, batches: int) -> dict[str, float]:
    """Mixup/cutmix in place and soft targets on a float16 batch of the preset's shape (torch, CPU)."""
    import torch

    from ..loaders.mixup import Mixer

    cfg, n = ctx.cfg, ctx.cfg.batch_size
    mixer = Mixer(cfg, cfg.num_classes or ctx.shards.num_classes or 1000)
    images = torch.rand(n, 3, cfg.size, cfg.size).to(torch.float16)
    labels = torch.zeros(n, dtype=torch.int64)
    cpu, wall = time.process_time(), time.perf_counter()
    for step in range(batches):
        mixer(images, labels, 0, step * n, False)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"cpu_ms_per_img": round(cpu / (batches * n) * 1e3, 4), "img_s": round(batches * n / wall, 1)}


# one representative argument per op family: (label, 9 arguments, filter kernel or None)
def _op_examples(size: int) -> dict[str, tuple[str, list[float], object]]:
    from ..loaders.augment import blur_kernel, graph_args, sharpness_kernel

    def ex(name, value):
        return [float(v) for v in graph_args(name, value, size)]

    return {"affine": ("rotate 20 degrees", ex("Rotate", 20.0), None),
            "brightness": ("factor 1.5", ex("Brightness", 1.5), None), "color": ("factor 1.5", ex("Color", 1.5), None),
            "contrast": ("factor 1.5", ex("Contrast", 1.5), None),
            "sharpness": ("factor 1.5", ex("Sharpness", 1.5), sharpness_kernel(1.5)),
            "invert": ("", ex("Invert", 0.0), None), "solarize": ("threshold 128", ex("Solarize", 128.0), None),
            "solarize_add": ("add 64", ex("SolarizeAdd", 64.0), None),
            "posterize": ("4 bits", ex("Posterize", 4.0), None), "autocontrast": ("", ex("AutoContrast", 0.0), None),
            "equalize": ("", ex("Equalize", 0.0), None), "blur": ("sigma 1", ex("GaussianBlur", 1.0), blur_kernel(1.0))}


def augment_graphs(ctx: StageContext, resized: Callable) -> dict[str, Callable]:
    """Each augmentation op on every image after ``resized`` (the preset's crop + resize)."""
    import numpy as np
    from nvidia.dali import types

    from ..loaders.augment import BRANCHES, AugmentSpec
    from ..loaders.dali_augment import branch_functions

    cfg = ctx.cfg
    spec = AugmentSpec(None, (0.0, 0.0, 0.0), 1.0, tuple(round(255 * m) for m in cfg.mean),
                       cfg.interpolation if cfg.interpolation != "lanczos" else "bicubic", BRANCHES)
    functions = branch_functions(spec, False)

    def row(branch, args, kernel):
        def graph(x):
            const = types.Constant(np.asarray(args, np.float32), device="cpu")
            k = types.Constant(kernel, device="cpu") if kernel is not None else None
            return functions[branch](resized(x), const, k)
        return graph

    return {f"augment op {branch}{' (' + label + ')' if label else ''}, every image": row(branch, args, kernel)
            for branch, (label, args, kernel) in _op_examples(cfg.size).items()}


def pillow_ops(ctx: StageContext, images: int = 64) -> dict[str, dict[str, float]]:
    """The baseline's cost of each augmentation op: Pillow (timm's operations) on ``images`` of the
    shards' images at the preset's size, one thread."""
    from PIL import Image

    from ..loaders.augment import BRANCHES, AugmentSpec
    from ..loaders.reader import SampleReader
    from ..loaders.transforms import apply_branch, decode_rgb

    cfg, n = ctx.cfg, min(images, ctx.shards.num_samples)
    reader = SampleReader(ctx.shards)
    fetched = reader.read(np.arange(n, dtype=np.int64))
    reader.close()
    pictures = [decode_rgb(j).resize((cfg.size, cfg.size), Image.BILINEAR) for j in fetched.jpegs]
    spec = AugmentSpec(None, (0.0, 0.0, 0.0), 1.0, tuple(round(255 * m) for m in cfg.mean), "bilinear", BRANCHES)
    rows = {}
    for branch, (label, args, _) in _op_examples(cfg.size).items():
        args = np.asarray(args, np.float32)
        cpu = time.process_time()
        for picture in pictures:
            np.asarray(apply_branch(picture, branch, args, spec))
        ms = (time.process_time() - cpu) / len(pictures) * 1e3
        rows[f"pillow op {branch}{' (' + label + ')' if label else ''}, every image"] = {
            "cpu_ms_per_img": round(ms, 4), "img_s": round(1e3 / max(ms, 1e-9), 1)}
    return rows


def recipe_graphs(ctx: StageContext, resized: Callable, normalize: Callable) -> dict[str, Callable | None]:
    """The preset's own augmentation layers (decisions from the source) and erasing."""

    from ..loaders.augment import augment_spec
    from ..loaders.dali_augment import apply_augment, apply_erasing

    cfg, out = ctx.cfg, {}
    spec = augment_spec(cfg)
    if spec.layers:
        out[f"+ resize + the preset's {spec.layers} augmentation layers"] = lambda x: apply_augment(
            resized(x), x, spec, False)
    if cfg.re_prob > 0:
        out[f"+ resize + flip/normalize + random erasing ({cfg.re_mode}, p {cfg.re_prob})"] = lambda x: apply_erasing(
            normalize(x), x, cfg, False)
    return out


def graphs(ctx: StageContext) -> dict[str, Callable | None]:
    """Named pipeline bodies (the loader's source inputs -> images), for the preset's mode and
    size; ``None`` is the loader's whole graph."""
    from nvidia.dali import fn, types

    from ..loaders.dali_graph import decode_and_crop
    from ..loaders.dali_ops import interp_type

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

        def normalize(x):
            return fn.crop_mirror_normalize(resized(x), dtype=types.FLOAT, mirror=x["flip"], **norm)

        out.update({
            "decode ROI (crop window)": crop,
            "decode ROI, fast IDCT": lambda x: crop(x, use_fast_idct=True),
            "+ resize (antialias)": resized,
            "+ resize (no antialias)": lambda x: resized(x, antialias=False),
            "+ resize + flip/normalize -> float16": lambda x: fn.crop_mirror_normalize(
                resized(x), dtype=types.FLOAT16, mirror=x["flip"], **norm),
            "+ resize + flip/normalize -> float32 (the loader)" if not training_recipe(cfg) else
            "+ resize + flip/normalize -> float32": normalize if training_recipe(cfg) else None,
        })
        out.update({**augment_graphs(ctx, resized), **recipe_graphs(ctx, resized, normalize)})
        if training_recipe(cfg):
            out["the whole loader graph (the preset)"] = None
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
    rows = {"python: read + checks + geometry": _python_side(ctx, n, _plain(ctx.cfg))}
    if training_recipe(ctx.cfg):
        rows["python: + the recipe's decisions"] = _python_side(ctx, n)
    rows.update({name: _measure(ctx, g, n) for name, g in graphs(ctx).items()})
    if soft_targets_on(ctx.cfg):
        rows["torch: mixup/cutmix + soft targets (float16 batch)"] = _mixing(ctx, n)
    if ctx.cfg.mode == "train":
        rows.update(pillow_ops(ctx))
    return {"rows": rows, "batches": n, "batch_size": ctx.cfg.batch_size, "threads": ctx.cfg.threads}
