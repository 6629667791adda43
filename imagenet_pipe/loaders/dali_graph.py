"""The DALI pipeline: one graph for GPU ("mixed" nvJPEG decoding with the hardware decoder, GPU
operators) and CPU (DALI CPU operators, ``device_id=None``).

Samples and every per-sample decision (crop window, output size, flip, eval geometry, the
augmentations' ops and arguments, erased boxes) arrive through one ``fn.external_source`` from the
loader's epoch plan (:mod:`.geometry`, :mod:`.augment`, :mod:`.erasing`), so the graph holds no
random state and no geometry arithmetic: decode (of the needed window only), resize,
augmentation layers (:mod:`.dali_augment`), flip fused into the normalisation, erase.
"""

from __future__ import annotations

from .augment import augment_spec
from .config import LoaderConfig
from .dali_ops import interp_type

# nvJPEG's per-thread buffers: DALI's defaults (16 MiB device, 8 MiB pinned host per decoder
# thread) grow on demand for a rare large image; no batch preallocation for the hardware decoder.
# Memory therefore scales with threads x typical image, not threads x ImageNet's largest image.
GPU_DECODER_OPTIONS = {"device_memory_padding": 16 << 20, "host_memory_padding": 8 << 20}


def source_outputs(cfg: LoaderConfig, gpu: bool) -> tuple[str, ...]:
    """The per-sample inputs the graph reads, in external-source output order."""
    if cfg.mode == "train":
        from .dali_augment import augment_outputs, erase_outputs

        return ("jpegs", "crop_start", "crop_end", "out_size", "flip", "labels", *augment_outputs(augment_spec(cfg)),
                *erase_outputs(cfg))
    decode = () if gpu else ("decode_start", "decode_end")
    two_pass = ("rows", "cols_start", "cols_end", "rows_start", "rows_end")
    resize = two_pass if cfg.pil_parity else ("roi_start", "roi_end")
    return ("jpegs", *decode, *resize, "labels")


def pipeline_dtype(dtype: str, gpu: bool) -> str:
    """What the pipeline itself produces for the configured ``dtype``. On CPU, DALI's normalize
    to float16 costs 3x its normalize to float32 (0.48 vs 0.16 ms per 224 px image; BENCHMARKS.md,
    ops), so the CPU pipeline yields float32 and torch casts with vector code while copying out.
    DALI has no bfloat16: float32, cast by torch."""
    if dtype == "bfloat16" or (dtype == "float16" and not gpu):
        return "float32"
    return dtype


def source_layouts(names: tuple[str, ...], cfg: LoaderConfig) -> list[str]:
    """Layouts of the external source's outputs: the erased noise patches are images."""
    return [output_layout(cfg) if name.startswith("erase_noise") else "" for name in names]


def output_layout(cfg: LoaderConfig) -> str:
    return "HWC" if cfg.memory_format in ("channels_last", "nhwc") else "CHW"


def decoder_options(cfg: LoaderConfig, gpu: bool) -> dict:
    """Decoder device and, on GPU, the hardware decoder's share and buffer sizes."""
    if gpu:
        return {"device": "mixed", "hw_decoder_load": cfg.hw_decoder_load, **GPU_DECODER_OPTIONS}
    return {"device": "cpu"}


def decode_and_crop(inputs: dict, cfg: LoaderConfig, gpu: bool):
    """The preset's geometry up to (not including) normalisation; ``inputs`` maps the names of
    :func:`source_outputs` to data nodes. Train: decode of the crop window (ROI decoding), resize to
    the epoch's size (given per sample, so a progressive-resolution schedule rebuilds nothing).
    Eval: decode (on CPU, of the window the crop reads), then resize the crop window to ``size`` with
    a region of interest in source coordinates, which DALI maps with the same scale and sample
    positions as a full resize (the filter still reads outside the window): equal to
    resize-then-crop, at a fraction of the resampling work. ``pil_parity``: two passes, horizontal
    first with uint8 rounding between, as Pillow resizes; that brings DALI within rounding of it."""
    from nvidia.dali import fn, types

    options = decoder_options(cfg, gpu)
    resize = {"interp_type": interp_type(cfg.interpolation), "antialias": True}
    size = float(cfg.size)
    jpegs = inputs["jpegs"]
    if cfg.mode == "train":
        images = fn.decoders.image_slice(jpegs, start=inputs["crop_start"], end=inputs["crop_end"], axis_names="HW",
                                         output_type=types.RGB, adjust_orientation=False, **options)
        return fn.resize(images, size=inputs["out_size"], **resize)
    decode = {"output_type": types.RGB, "adjust_orientation": False, "jpeg_fancy_upsampling": True, **options}
    if gpu:
        images = fn.decoders.image(jpegs, **decode)
    else:
        images = fn.decoders.image_slice(jpegs, start=inputs["decode_start"], end=inputs["decode_end"],
                                         axis_names="HW", **decode)
    if cfg.pil_parity:
        images = fn.resize(images, resize_x=size, resize_y=inputs["rows"], roi_start=inputs["cols_start"],
                           roi_end=inputs["cols_end"], **resize)
        return fn.resize(images, resize_x=size, resize_y=size, roi_start=inputs["rows_start"],
                         roi_end=inputs["rows_end"], **resize)
    return fn.resize(images, resize_x=size, resize_y=size, roi_start=inputs["roi_start"], roi_end=inputs["roi_end"],
                     **resize)


def build_pipeline(cfg: LoaderConfig, device_id: int | None, source, graph=None):
    """The loader's pipeline, fed by ``source`` (a callable returning one batch of each of
    :func:`source_outputs`, raising StopIteration at the end of an epoch). Outputs: images (the
    pipeline dtype, CHW or HWC), labels (int64; on the GPU when decoding there).

    ``graph``: for the profiler, a function of the inputs dict that replaces the whole graph (its
    result is the only output), so that a stage differs from the loader only by what it leaves out."""
    from nvidia.dali import fn, pipeline_def, types

    from .dali_augment import apply_augment, apply_erasing

    gpu = device_id is not None
    names = source_outputs(cfg, gpu)
    out_dtype = {"float16": types.FLOAT16, "float32": types.FLOAT, "uint8": types.UINT8}[pipeline_dtype(cfg.dtype, gpu)]
    normalize = cfg.dtype != "uint8"
    mean = [m * 255 for m in cfg.mean] if normalize else [0.0]
    std = [s * 255 for s in cfg.std] if normalize else [1.0]
    spec = augment_spec(cfg) if cfg.mode == "train" else None
    layers = spec.layers if spec else 0
    erasing = cfg.mode == "train" and cfg.re_prob > 0
    conditionals = bool(layers) or (erasing and cfg.re_mode == "pixel")

    @pipeline_def(batch_size=cfg.batch_size, num_threads=cfg.threads, device_id=device_id,
                  prefetch_queue_depth=cfg.prefetch, exec_dynamic=True, enable_conditionals=conditionals)
    def pipeline():
        nodes = fn.external_source(source=source, num_outputs=len(names), batch=True, layout=source_layouts(names, cfg))
        inputs = {name: nodes[i] for i, name in enumerate(names)}  # (DALI's conditionals rewrite zip without strict)
        if graph is not None:
            return graph(inputs)
        images = decode_and_crop(inputs, cfg, gpu)
        flip = {"mirror": inputs["flip"]} if "flip" in inputs else {}
        if layers:  # before the flip (timm: after it), see :mod:`.augment`: the same distribution, one pass less
            images = apply_augment(images, inputs, spec, gpu)
        images = fn.crop_mirror_normalize(images, dtype=out_dtype, output_layout=output_layout(cfg), mean=mean,
                                          std=std, **flip)
        if erasing:
            images = apply_erasing(images, inputs, cfg, gpu)
        labels = inputs["labels"].gpu() if gpu else inputs["labels"]
        return images, labels

    return pipeline()
