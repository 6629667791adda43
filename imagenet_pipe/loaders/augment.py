"""The per-image augmentations between the random-resized crop and normalisation (timm's order:
crop, flip, auto-augment policy, colour jitter), as decisions that both backends execute.

Both backends flip *after* the policy and the jitter, so that the flip stays fused into DALI's
normalisation. The distribution is timm's: every op commutes with a horizontal flip (colour and
pixel ops, blur and sharpness with symmetric kernels, whole-image statistics) or turns into the
same op with its argument negated (rotations, shears, translations), and timm negates those
arguments with probability 1/2, independently of the flip.

Everything random is drawn here, in numpy, from :func:`.geometry.uniforms` keyed by ``(seed,
epoch, draw id)``: the policy's ops and arguments (:mod:`.auto_augment`) and torchvision's
``ColorJitter`` factors and order. The result is a short sequence of *layers* per image; each layer
is one *branch* (an op family the graph implements once: affine warp, brightness, ...) with its
numeric arguments. The DALI graph runs each layer as a conditional over the branches
(:mod:`.dali_augment`); the baseline runs the same branches in Pillow (:mod:`.transforms`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .auto_augment import COLUMNS, Policy, draw_policy, parse_auto_augment
from .config import LoaderConfig, jitter_strengths
from .geometry import STREAM_AUGMENT, STREAM_JITTER, uniforms

# branches in graph order; "identity" (no op) is always branch 0
BRANCHES = ("identity", "affine", "brightness", "color", "contrast", "sharpness", "invert", "solarize",
            "solarize_add", "posterize", "autocontrast", "equalize", "blur")
OP_BRANCH = {
    "Identity": "identity", "Rotate": "affine", "ShearX": "affine", "ShearY": "affine", "TranslateX": "affine",
    "TranslateY": "affine", "TranslateXRel": "affine", "TranslateYRel": "affine", "Brightness": "brightness",
    "BrightnessIncreasing": "brightness", "Color": "color", "ColorIncreasing": "color", "Desaturate": "color",
    "Contrast": "contrast", "ContrastIncreasing": "contrast", "Sharpness": "sharpness",
    "SharpnessIncreasing": "sharpness", "Invert": "invert", "Solarize": "solarize", "SolarizeIncreasing": "solarize",
    "SolarizeAdd": "solarize_add", "Posterize": "posterize", "PosterizeIncreasing": "posterize",
    "PosterizeOriginal": "posterize", "AutoContrast": "autocontrast", "Equalize": "equalize",
    "GaussianBlur": "blur", "GaussianBlurRand": "blur",
}
JITTER_OPS = ("Brightness", "Contrast", "Color")  # torchvision's ColorJitter: brightness, contrast, saturation
ARGS = 9  # numbers per layer: an affine warp's 3 x 3 matrix, or one op argument first
KERNEL_BRANCHES = frozenset({"sharpness", "blur"})  # executed as filters with per-image kernels


@dataclass(frozen=True)
class AugmentSpec:
    """The augmentations of a config, resolved once (timm's rule included: an auto-augment policy
    turns colour jitter off unless it is a 3-Augment one or ``force_color_jitter``)."""

    policy: Policy | None
    jitter: tuple[float, float, float]  # brightness, contrast, saturation strengths (0: off)
    jitter_prob: float
    fill: tuple[int, int, int]  # RGB of pixels uncovered by a geometric op
    interpolation: str
    branches: tuple[str, ...]  # the branches some layer can take, "identity" first

    @property
    def policy_layers(self) -> int:
        return self.policy.layers if self.policy else 0

    @property
    def layers(self) -> int:
        return self.policy_layers + (len(JITTER_OPS) if any(self.jitter) else 0)

    @property
    def kernels(self) -> bool:
        """Whether layers carry per-image filter kernels (sharpness, blur)."""
        return bool(KERNEL_BRANCHES & set(self.branches))


@lru_cache(maxsize=64)
def augment_spec(cfg: LoaderConfig) -> AugmentSpec:
    """The augmentation layers of a training config (cached: the config is frozen)."""
    policy = parse_auto_augment(cfg.auto_augment) if cfg.auto_augment else None
    jitter_on = policy is None or "3a" in policy.text or cfg.force_color_jitter  # timm's test, substring and all
    jitter = tuple(jitter_strengths(cfg)) if jitter_on and jitter_strengths(cfg) else (0.0, 0.0, 0.0)
    # timm fills with the mean colour (img_mean: round(255 mean)); torchvision's TrivialAugmentWide with black
    fill = tuple(min(255, round(255 * m)) for m in cfg.mean) if policy and policy.fill == "mean" else (0, 0, 0)
    names = set(policy.op_names if policy else ()) | {op for op, s in zip(JITTER_OPS, jitter, strict=True) if s}
    used = {"identity"} | {OP_BRANCH[name] for name in names}
    return AugmentSpec(policy, jitter, 1.0 if cfg.color_jitter_prob is None else cfg.color_jitter_prob, fill,
                       cfg.interpolation, tuple(b for b in BRANCHES if b in used))


@dataclass
class AugmentDecisions:
    """What each image of a batch goes through, layer after layer: ``names`` (N, L) op names ("" where
    none), ``values`` (N, L) their arguments in op units (degrees, factor, pixels, ...), and what the
    graph executes: ``branch`` (N, L) indices into :attr:`AugmentSpec.branches`, ``args`` (N, L, 9)
    float32 and, when the spec needs them, ``kernels`` (per image and layer: a 2-D filter)."""

    names: np.ndarray
    values: np.ndarray
    branch: np.ndarray
    args: np.ndarray
    kernels: list[list[np.ndarray]] | None = None


def draw_jitter(spec: AugmentSpec, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """torchvision's ColorJitter (in a RandomApply of ``color_jitter_prob``): factors uniform in
    [max(0, 1 - s), 1 + s], applied in a random order. ``u``: (N, 7) uniforms. Returns (names,
    factors) of shape (N, 3), in order of application ("" for an op that is off)."""
    strengths = np.asarray(spec.jitter)
    factors = np.maximum(0.0, 1.0 - strengths) + u[:, 0:3] * (1.0 + strengths - np.maximum(0.0, 1.0 - strengths))
    order = np.argsort(u[:, 3:6], axis=1)  # a uniformly random permutation
    applied = (u[:, 6] < spec.jitter_prob)[:, None] & (strengths[order] > 0)
    names = np.where(applied, np.asarray(JITTER_OPS, dtype=object)[order], "")
    return names, np.where(applied, np.take_along_axis(factors, order, axis=1), 0.0)


def affine_matrix(name: str, value: float, size: int) -> np.ndarray:
    """The 3 x 3 output-to-input pixel map of a geometric op on a ``size`` x ``size`` image, in
    Pillow's convention (continuous coordinates, origin at the top-left pixel's corner): shears and
    translations as timm's ``Image.transform`` calls, rotations about the image centre,
    counter-clockwise for positive degrees (``Image.rotate``)."""
    m = np.eye(3)
    if name == "ShearX":
        m[0, 1] = value
    elif name == "ShearY":
        m[1, 0] = value
    elif name.startswith("TranslateX"):
        m[0, 2] = value
    elif name.startswith("TranslateY"):
        m[1, 2] = value
    elif name == "Rotate":
        t = math.radians(value)
        m[:2, :2] = [[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]]
        centre = np.array([size / 2.0, size / 2.0])
        m[:2, 2] = centre - m[:2, :2] @ centre
    return m


def blur_kernel(sigma: float) -> np.ndarray:
    """A 1 x k gaussian of std ``sigma`` (timm's blur radius is Pillow's std), cut at 3 sigma."""
    radius = max(1, math.ceil(3.0 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)[None, :]


def sharpness_kernel(factor: float) -> np.ndarray:
    """Pillow's ImageEnhance.Sharpness in one 3 x 3 filter: ``factor`` x image + (1 - factor) x SMOOTH."""
    smooth = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float64) / 13.0
    identity = np.zeros((3, 3))
    identity[1, 1] = 1.0
    return (factor * identity + (1.0 - factor) * smooth).astype(np.float32)


_IDENTITY_KERNEL = np.ones((1, 1), np.float32)


def graph_args(name: str, value: float, size: int) -> np.ndarray:
    """One layer's 9 numbers for the branch of op ``name``."""
    args = np.zeros(ARGS, np.float32)
    branch = OP_BRANCH[name]
    if branch == "affine":
        args[:] = affine_matrix(name, value, size).ravel()
    elif branch == "posterize":  # the bit mask keeping the top ``value`` bits (8 or more: all)
        bits = int(min(8, max(0, value)))
        args[0] = 255 ^ ((1 << (8 - bits)) - 1)
    else:
        args[0] = value
    return args


def decide(spec: AugmentSpec, seed: int, epoch: int, draws: np.ndarray, size: int) -> AugmentDecisions:
    """The augmentation decisions of a batch (``draws``: the samples' draw ids; ``size``: the
    training size of this epoch)."""
    n, layers = len(draws), spec.layers
    names = np.full((n, layers), "", dtype=object)
    values = np.zeros((n, layers))
    if spec.policy is not None:
        u = uniforms(seed, epoch, draws, STREAM_AUGMENT, spec.policy_layers * COLUMNS)
        drawn = draw_policy(spec.policy, u, size)
        table = np.asarray((*spec.policy.op_names, ""), dtype=object)
        names[:, :spec.policy_layers] = table[drawn.op]  # -1 picks ""
        values[:, :spec.policy_layers] = drawn.value
    if any(spec.jitter):
        names[:, spec.policy_layers:], values[:, spec.policy_layers:] = draw_jitter(
            spec, uniforms(seed, epoch, draws, STREAM_JITTER, 7))
    branch = np.zeros((n, layers), np.int32)
    args = np.zeros((n, layers, ARGS), np.float32)
    kernels = [[_IDENTITY_KERNEL] * layers for _ in range(n)] if spec.kernels else None
    for row, col in zip(*np.nonzero(names != ""), strict=True):
        name, value = names[row, col], float(values[row, col])
        family = OP_BRANCH[name]
        branch[row, col] = spec.branches.index(family)
        args[row, col] = graph_args(name, value, size)
        if family == "blur":
            kernels[row][col] = blur_kernel(value)
        elif family == "sharpness":
            kernels[row][col] = sharpness_kernel(value)
    return AugmentDecisions(names, values, branch, args, kernels)
