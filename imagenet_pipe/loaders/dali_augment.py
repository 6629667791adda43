"""The training augmentations in the DALI graph, and the per-batch inputs that drive them.

The graph draws nothing: each image's ops arrive through the external source (:mod:`.augment`,
:mod:`.erasing` decide them in numpy). An augmentation layer is a DALI conditional over the
branches the config can use (split in halves by branch index, as ``nvidia.dali.auto_aug`` selects
its ops), so each op runs only on the images that take it; images that skip a layer take the
identity branch. Branches work on uint8 HWC images, before normalisation, as Pillow does in timm;
random erasing follows normalisation (``fn.erase``; ``pixel`` noise is pasted from the source).

Argument inputs of DALI operators must live on the CPU; on GPU pipelines, values used in
arithmetic with the images (and filter kernels, warp matrices) are moved to the GPU first.
"""

from __future__ import annotations

import numpy as np

from .augment import AugmentDecisions, AugmentSpec
from .config import LoaderConfig
from .erasing import EraseDecisions, box_noise

# --- the external source's outputs ----------------------------------------------------------------


def augment_outputs(spec: AugmentSpec) -> tuple[str, ...]:
    """Per layer: the branch index, its 9 arguments and (for filters) its kernel."""
    per_layer = ("aug_op", "aug_arg", "aug_kernel") if spec.kernels else ("aug_op", "aug_arg")
    return tuple(f"{name}{layer}" for layer in range(spec.layers) for name in per_layer)


def erase_outputs(cfg: LoaderConfig) -> tuple[str, ...]:
    """``const``: all boxes in one erase; ``rand``: one erase per box slot (own colour); ``pixel``:
    per box slot an erase and a patch of noise with where to paste it, and whether there is a box
    (a conditional: pasting costs a full-image pass, only erased images should pay it)."""
    if cfg.re_prob <= 0:
        return ()
    if cfg.re_mode == "const":
        return ("erase_anchor", "erase_shape")
    extra = ("erase_fill",) if cfg.re_mode == "rand" else ("erase_noise", "erase_start", "erase_on")
    return tuple(f"{name}{k}" for k in range(cfg.re_count) for name in ("erase_anchor", "erase_shape", *extra))


def augment_arrays(spec: AugmentSpec, decisions: AugmentDecisions) -> dict[str, object]:
    out: dict[str, object] = {}
    for layer in range(spec.layers):
        out[f"aug_op{layer}"] = np.ascontiguousarray(decisions.branch[:, layer])
        out[f"aug_arg{layer}"] = np.ascontiguousarray(decisions.args[:, layer])
        if spec.kernels:
            out[f"aug_kernel{layer}"] = [kernels[layer] for kernels in decisions.kernels]
    return out


def _regions(boxes: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per image, the (top, left) anchors and (h, w) shapes of its real boxes, flattened for fn.erase."""
    anchors, shapes = [], []
    for rows in boxes:
        real = rows[rows[:, 2] > 0]
        anchors.append(real[:, 0:2].astype(np.float32).ravel())
        shapes.append(real[:, 2:4].astype(np.float32).ravel())
    return anchors, shapes


def erase_arrays(cfg: LoaderConfig, erase: EraseDecisions, epoch: int, draws: np.ndarray, layout: str,
                 noise_dtype: type) -> dict[str, object]:
    if cfg.re_mode == "const":
        anchors, shapes = _regions(erase.boxes)
        return {"erase_anchor": anchors, "erase_shape": shapes}
    out: dict[str, object] = {}
    for k in range(cfg.re_count):
        out[f"erase_anchor{k}"], out[f"erase_shape{k}"] = _regions(erase.boxes[:, k:k + 1])
        if cfg.re_mode == "rand":
            out[f"erase_fill{k}"] = np.ascontiguousarray(erase.colors[:, k])
            continue
        patches = []
        for row, (_, _, h, w) in enumerate(erase.boxes[:, k]):
            noise = box_noise(cfg.seed, epoch, int(draws[row]), k, int(h), int(w)) if h > 0 else \
                np.zeros((3, 0, 0), np.float32)
            patches.append(np.ascontiguousarray(noise if layout == "CHW" else noise.transpose(1, 2, 0),
                                                dtype=noise_dtype))
        out[f"erase_noise{k}"] = patches
        out[f"erase_on{k}"] = erase.boxes[:, k, 2] > 0
        out[f"erase_start{k}"] = (-erase.boxes[:, k, 0:2]).astype(np.int32)  # paste: the patch's top-left
    return out


# --- graph ----------------------------------------------------------------------------------------

def branch_functions(spec: AugmentSpec, gpu: bool) -> dict:
    """Branch name -> function(images uint8 HWC, args (9,), kernel) of the graph."""
    from nvidia.dali import fn, types

    from .dali_ops import interp_type

    white = types.Constant(255, dtype=types.UINT8)

    def dev(node):
        return node.gpu() if gpu else node

    def gray_mean(x):  # Pillow's Contrast centre: the mean of the L image, rounded to an integer
        gray = fn.color_space_conversion(x, image_type=types.RGB, output_type=types.GRAY)
        return fn.cast(fn.cast(fn.reductions.mean(gray) + 0.5, dtype=types.INT32), dtype=types.FLOAT)

    def contrast(x, a, k):
        if gpu:  # the centre is on the GPU, so it cannot be brightness_contrast's (CPU) argument
            centre = gray_mean(x)
            return fn.cast_like(centre + (x - centre) * dev(a[0]), x)
        return fn.brightness_contrast(x, contrast=a[0], contrast_center=gray_mean(x))

    def color(x, a, k):  # blend with the L image in 8-bit fixed point (float->uint8 casts are slow on CPU)
        gray = fn.color_space_conversion(x, image_type=types.RGB, output_type=types.GRAY)
        own = dev(fn.cast(a[0] * 256.0 + 0.5, dtype=types.INT32))
        return fn.cast((x * own + gray * (256 - own) + 128) >> 8, dtype=types.UINT8)  # >> is 2x faster than //

    def autocontrast(x, a, k):  # each channel stretched from [min, max] to [0, 255]; flat channels kept
        lo = fn.cast(fn.reductions.min(x, axis_names="HW", keep_dims=True), dtype=types.FLOAT)
        hi = fn.cast(fn.reductions.max(x, axis_names="HW", keep_dims=True), dtype=types.FLOAT)
        spread = hi - lo
        flat = spread == 0
        low, span = lo * (spread > 0), spread + flat * 255.0
        if gpu:
            return fn.cast_like((x - low) * (255.0 / span), x)
        return fn.normalize(x, mean=low, stddev=span, scale=255.0, axis_names="HW", dtype=types.UINT8)

    def blur(x, a, k):  # separable gaussian: the kernel row, then the same as a column
        k = dev(k)
        return fn.filter(fn.filter(x, k, border="clamp"), fn.reshape(k, shape=[-1, 1]), border="clamp")

    return {
        "identity": lambda x, a, k: x,
        "affine": lambda x, a, k: fn.experimental.warp_perspective(
            x, dev(fn.reshape(a, shape=[3, 3])), fill_value=[float(c) for c in spec.fill], pixel_origin="corner",
            interp_type=interp_type(spec.interpolation)),
        "brightness": lambda x, a, k: fn.brightness(x, brightness=a[0]),
        "color": color,
        "contrast": contrast,
        "sharpness": lambda x, a, k: fn.filter(x, dev(k), border="clamp"),
        "invert": lambda x, a, k: white - x,
        "solarize": lambda x, a, k: x ^ ((x >= dev(a[0])) * white),
        "solarize_add": lambda x, a, k: x + (x < 128) * dev(fn.cast(a[0], dtype=types.UINT8)),
        "posterize": lambda x, a, k: x & dev(fn.cast(a[0], dtype=types.UINT8)),
        "autocontrast": autocontrast,
        "equalize": lambda x, a, k: fn.equalize(x),
        "blur": blur,
    }


def _select(functions: list, lo: int, hi: int, index, images, args, kernel):
    """Apply ``functions[index]`` per image, splitting the batch in halves by index (DALI
    conditionals: each branch runs only on its images)."""
    if lo == hi:
        return functions[lo](images, args, kernel)
    mid = (lo + hi) // 2
    if index <= mid:
        out = _select(functions, lo, mid, index, images, args, kernel)
    else:
        out = _select(functions, mid + 1, hi, index, images, args, kernel)
    return out


def apply_augment(images, inputs: dict, spec: AugmentSpec, gpu: bool):
    """The augmentation layers, one after the other (the pipeline needs ``enable_conditionals``)."""
    table = branch_functions(spec, gpu)
    functions = [table[name] for name in spec.branches]
    for layer in range(spec.layers):
        kernel = inputs.get(f"aug_kernel{layer}")
        images = _select(functions, 0, len(functions) - 1, inputs[f"aug_op{layer}"], images,
                         inputs[f"aug_arg{layer}"], kernel)
    return images


def apply_erasing(images, inputs: dict, cfg: LoaderConfig, gpu: bool):
    """Random erasing of normalised images (layout CHW or HWC), boxes in order (``pixel`` mode needs
    ``enable_conditionals``)."""
    from nvidia.dali import fn, types

    if cfg.re_mode == "const":
        return fn.erase(images, anchor=inputs["erase_anchor"], shape=inputs["erase_shape"], axis_names="HW",
                        fill_value=0.0)
    for k in range(cfg.re_count):
        box = {"anchor": inputs[f"erase_anchor{k}"], "shape": inputs[f"erase_shape{k}"], "axis_names": "HW"}
        if cfg.re_mode == "rand":
            images = fn.erase(images, fill_value=inputs[f"erase_fill{k}"], **box)
            continue
        if inputs[f"erase_on{k}"]:
            noise = inputs[f"erase_noise{k}"]
            size = fn.cast(inputs["out_size"], dtype=types.INT32)
            canvas = fn.slice(noise.gpu() if gpu else noise, start=inputs[f"erase_start{k}"], shape=size,
                              axis_names="HW", out_of_bounds_policy="pad", fill_values=0.0)  # the patch on zeros
            images = fn.erase(images, fill_value=0.0, **box) + canvas
    return images
