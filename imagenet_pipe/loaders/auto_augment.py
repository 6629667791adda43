"""Auto-augment policies from timm's config strings, and their per-sample decisions drawn in numpy.

The strings and their meaning are timm's (``timm/data/auto_augment.py``):

* ``rand-m9-n2-mstd0.5-inc1-p0.5-mmax10-t<set>``: RandAugment. ``n`` ops per image (default 2),
  chosen uniformly with replacement from timm's 15 ops (``inc1``: the variants whose strength
  increases with the magnitude; ``tweights``/``t3aw``: weighted choice without replacement;
  ``t3a``: solarize, desaturate, blur), each applied with probability ``p`` (default 0.5) at
  magnitude ``m`` (default 10), perturbed by a normal of std ``mstd`` (``mstd`` > 100: uniform in
  [0, m]) and clipped to [0, ``mmax``] (default 10).
* ``original``, ``originalr``, ``v0``, ``v0r`` (``-mstd0.5``): the AutoAugment ImageNet policies
  (one of 25 two-op sub-policies per image, each op with its own probability and magnitude).
* ``3a``: DeiT III's 3-Augment: one of solarize, full desaturation, gaussian blur per image.
* ``trivialaugment`` / ``ta_wide``: TrivialAugment Wide (timm has none; torchvision's
  ``TrivialAugmentWide`` is the definition: one of 14 ops, one of 31 magnitude bins, black fill).

A decision is an op and its argument in the op's own units (degrees, shear, pixels, enhance factor,
bits, threshold, blur radius), as timm's level functions compute it. :mod:`.augment` turns them
into what the DALI graph and the Pillow baseline execute.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from ..errors import LoaderConfigError

LEVEL_DENOM = 10.0  # timm: magnitude M / 10 is the fraction of an op's range
COLUMNS = 5  # uniforms per layer: op choice, op probability, magnitude noise, negation, extra (blur, TA bin)
TA_BINS = 31  # TrivialAugment Wide's magnitude bins

_RAND_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color",
             "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
_RAND_INCREASING_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing",
                        "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing",
                        "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
_RAND_WEIGHTED = {  # timm's "tweights" and "t3aw" op sets (weighted choice, no replacement)
    "weights": {"Rotate": 3, "ShearX": 2, "ShearY": 2, "TranslateXRel": 1, "TranslateYRel": 1,
                "ColorIncreasing": .25, "SharpnessIncreasing": .25, "AutoContrast": .25, "SolarizeIncreasing": .05,
                "SolarizeAdd": .05, "ContrastIncreasing": .05, "BrightnessIncreasing": .05, "Equalize": .05,
                "PosterizeIncreasing": .05, "Invert": .05},
    "3aw": {"SolarizeIncreasing": 6, "Desaturate": 6, "GaussianBlur": 6, "Rotate": 3, "ShearX": 2, "ShearY": 2,
            "PosterizeIncreasing": 1, "AutoContrast": 1, "ColorIncreasing": 1, "SharpnessIncreasing": 1,
            "ContrastIncreasing": 1, "BrightnessIncreasing": 1, "Equalize": 1, "Invert": 1},
}
_RAND_3A_OPS = ("SolarizeIncreasing", "Desaturate", "GaussianBlur")

# AutoAugment's ImageNet policies as timm lists them: "op probability magnitude" pairs per sub-policy
_ORIGINAL = """PosterizeOriginal .4 8, Rotate .6 9; Solarize .6 5, AutoContrast .6 5; Equalize .8 8, Equalize .6 3;
PosterizeOriginal .6 7, PosterizeOriginal .6 6; Equalize .4 7, Solarize .2 4; Equalize .4 4, Rotate .8 8;
Solarize .6 3, Equalize .6 7; PosterizeOriginal .8 5, Equalize 1 2; Rotate .2 3, Solarize .6 8;
Equalize .6 8, PosterizeOriginal .4 6; Rotate .8 8, Color .4 0; Rotate .4 9, Equalize .6 2; Equalize 0 7, Equalize .8 8;
Invert .6 4, Equalize 1 8; Color .6 4, Contrast 1 8; Rotate .8 8, Color 1 2; Color .8 8, Solarize .8 7;
Sharpness .4 7, Invert .6 8; ShearX .6 5, Equalize 1 9; Color .4 0, Equalize .6 3; Equalize .4 7, Solarize .2 4;
Solarize .6 5, AutoContrast .6 5; Invert .6 4, Equalize 1 8; Color .6 4, Contrast 1 8; Equalize .8 8, Equalize .6 3"""
_V0 = """Equalize .8 1, ShearY .8 4; Color .4 9, Equalize .6 3; Color .4 1, Rotate .6 8; Solarize .8 3, Equalize .4 7;
Solarize .4 2, Solarize .6 2; Color .2 0, Equalize .8 8; Equalize .4 8, SolarizeAdd .8 3; ShearX .2 9, Rotate .6 8;
Color .6 1, Equalize 1 2; Invert .4 9, Rotate .6 0; Equalize 1 9, ShearY .6 3; Color .4 7, Equalize .6 0;
Posterize .4 6, AutoContrast .4 7; Solarize .6 8, Color .6 9; Solarize .2 4, Rotate .8 9;
Rotate 1 7, TranslateYRel .8 9; ShearX 0 0, Solarize .8 4; ShearY .8 0, Color .6 4; Color 1 0, Rotate .6 2;
Equalize .8 4, Equalize 0 8; Equalize 1 4, AutoContrast .6 2; ShearY .4 7, SolarizeAdd .6 7;
Posterize .8 2, Solarize .6 10; Solarize .6 8, Equalize .6 1; Color .8 6, Rotate .4 5"""
_3A = "Solarize 1 5; Desaturate 1 10; GaussianBlurRand 1 10"
# the "r" variants use the posterize whose strength increases with the magnitude
_AUTO_POLICIES = {"original": _ORIGINAL, "v0": _V0, "3a": _3A,
                  "originalr": _ORIGINAL.replace("PosterizeOriginal", "PosterizeIncreasing"),
                  "v0r": re.sub(r"\bPosterize\b", "PosterizeIncreasing", _V0)}

TA_OPS = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast",
          "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize")


@dataclass(frozen=True)
class OpSpec:
    name: str  # timm's op name ("Rotate", "PosterizeIncreasing", ...)
    prob: float = 1.0
    magnitude: float = LEVEL_DENOM


@dataclass(frozen=True)
class Policy:
    """A parsed ``auto_augment`` string. ``kind``: "rand" (``ops`` are the candidates, ``num_layers``
    chosen per image), "auto" (``subpolicies``, one chosen per image) or "trivial" (``ops``)."""

    text: str
    kind: str
    ops: tuple[OpSpec, ...] = ()
    subpolicies: tuple[tuple[OpSpec, ...], ...] = ()
    num_layers: int = 1
    weights: tuple[float, ...] | None = None  # rand: weighted choice without replacement
    magnitude_std: float = 0.0  # inf: uniform in [0, magnitude]
    magnitude_max: float = LEVEL_DENOM

    @property
    def layers(self) -> int:
        """Ops applied one after the other (at most) per image."""
        return max(map(len, self.subpolicies)) if self.kind == "auto" else self.num_layers

    @property
    def op_names(self) -> tuple[str, ...]:
        """Every op the policy can apply, in a fixed order (decisions index into it)."""
        specs = [op for sub in self.subpolicies for op in sub] if self.kind == "auto" else self.ops
        return tuple(dict.fromkeys(op.name for op in specs))

    @property
    def fill(self) -> str:
        """What geometric ops fill uncovered pixels with: timm's image mean, or black (torchvision's TA)."""
        return "black" if self.kind == "trivial" else "mean"


def _section(text: str, section: str) -> tuple[str, str]:
    """timm's "<key><number>" section (m9, mstd0.5, inc1) as (key, number text)."""
    match = re.fullmatch(r"([a-z_]*)(\d.*)", section)
    if match is None:
        raise LoaderConfigError(f"auto_augment {text!r}: section {section!r} is not <key><number> (e.g. m9, mstd0.5)")
    return match.group(1), match.group(2)


def _number(text: str, key: str, value: str, cast=float) -> float:
    try:
        return cast(value)
    except ValueError:
        raise LoaderConfigError(f"auto_augment {text!r}: {key}{value} is not a number") from None


def _rand_options(text: str) -> dict:
    """RandAugment's sections, with timm's defaults."""
    options = {"m": LEVEL_DENOM, "n": 2, "p": 0.5, "mstd": 0.0, "mmax": LEVEL_DENOM, "inc": 0, "t": None}
    casts = {"m": int, "n": int, "p": float, "mstd": float, "mmax": int, "inc": int}
    for section in text.split("-")[1:]:
        if section.startswith("t"):  # timm: an op set name ("tweights", "t3a", ...)
            options["t"] = section[1:]
            continue
        key, value = _section(text, section)
        if key not in casts:
            raise LoaderConfigError(f"auto_augment {text!r}: unknown RandAugment section {key!r} (timm's: m, n, p, "
                                    "mstd, mmax, inc, t)")
        options[key] = _number(text, key, value, casts[key])
    if options["t"] not in (None, "weights", "3aw", "3a"):
        raise LoaderConfigError(f"auto_augment {text!r}: unknown op set t{options['t']} (timm's: tweights, t3aw, t3a)")
    return options


def _parse_rand(text: str) -> Policy:
    o = _rand_options(text)
    std = math.inf if o["mstd"] > 100 else o["mstd"]  # timm: mstd > 100 means uniform in [0, m]
    weights = None
    if o["t"] in _RAND_WEIGHTED:
        names, weights = zip(*_RAND_WEIGHTED[o["t"]].items(), strict=True)
        if o["n"] > len(names):
            raise LoaderConfigError(f"auto_augment {text!r}: n{o['n']} ops without replacement from {len(names)}")
        weights = tuple(w / sum(weights) for w in weights)
    else:  # timm tests bool() of inc's text, so "inc0" counts as on there; here 0 is off
        names = _RAND_3A_OPS if o["t"] == "3a" else _RAND_INCREASING_OPS if o["inc"] else _RAND_OPS
    if o["n"] < 1 or not 0 <= o["p"] <= 1 or o["m"] < 0 or o["mmax"] < 0:
        raise LoaderConfigError(f"auto_augment {text!r}: needs n >= 1, 0 <= p <= 1, m >= 0 and mmax >= 0")
    ops = tuple(OpSpec(name, o["p"], o["m"]) for name in names)
    return Policy(text, "rand", ops=ops, num_layers=o["n"], weights=weights, magnitude_std=std,
                  magnitude_max=o["mmax"])


def _parse_auto(text: str) -> Policy:
    name = text.split("-")[0]
    std = 0.0
    for section in text.split("-")[1:]:
        key, value = _section(text, section)
        if key != "mstd":
            raise LoaderConfigError(f"auto_augment {text!r}: AutoAugment policies take only mstd, not {key!r}")
        std = _number(text, key, value)
    subpolicies = tuple(tuple(OpSpec(op, float(prob), float(magnitude))
                              for op, prob, magnitude in (pair.split() for pair in sub.split(",")))
                        for sub in _AUTO_POLICIES[name].replace("\n", " ").split(";"))
    return Policy(text, "auto", subpolicies=subpolicies, magnitude_std=std)


def parse_auto_augment(text: str) -> Policy:
    """A :class:`Policy` from one of timm's ``auto_augment`` strings (see the module docstring);
    :class:`LoaderConfigError` naming what is not understood or not supported."""
    head = text.split("-")[0]
    if head == "rand":
        return _parse_rand(text)
    if head in _AUTO_POLICIES:
        return _parse_auto(text)
    if head in ("trivialaugment", "ta_wide"):
        if text != head:
            raise LoaderConfigError(f"auto_augment {text!r}: TrivialAugment Wide takes no options")
        return Policy(text, "trivial", ops=tuple(OpSpec(name) for name in TA_OPS))
    if head == "augmix":
        raise LoaderConfigError("auto_augment 'augmix' is not supported: AugMix blends several augmented chains of "
                                "each image, which this pipeline does not build")
    raise LoaderConfigError(f"auto_augment {text!r} is not a timm policy (rand-..., original, originalr, v0, v0r, 3a) "
                            "or trivialaugment / ta_wide")


# --- per-sample decisions ------------------------------------------------------------------------

@dataclass
class PolicyDecisions:
    """``op``: (N, layers) index into :attr:`Policy.op_names`, -1 where no op is applied (not drawn or
    skipped by its probability); ``value``: the op's argument as timm's level function gives it
    (translations in pixels of the ``size`` x ``size`` image)."""

    op: np.ndarray
    value: np.ndarray


def normals(u: np.ndarray) -> np.ndarray:
    """Standard normal deviates from uniforms in [0, 1) (inverse CDF; 0 maps to a large negative value)."""
    from scipy.special import ndtri

    return ndtri(np.maximum(u, 2.0 ** -60))


def timm_level(name: str, magnitude: np.ndarray, sign: np.ndarray, extra: np.ndarray, size: int) -> np.ndarray:
    """timm's level-to-argument function of op ``name`` for magnitudes in [0, mmax] (vectorised);
    ``sign`` (+-1) negates the signed ops, ``extra`` (uniform) draws GaussianBlurRand's radius."""
    level = magnitude / LEVEL_DENOM
    fraction = np.floor  # timm's int() of a non-negative level
    if name in ("Posterize", "PosterizeIncreasing", "PosterizeOriginal"):
        bits = fraction(level * 4)
        return {"Posterize": bits, "PosterizeIncreasing": 4 - bits, "PosterizeOriginal": bits + 4}[name]
    if name in ("Solarize", "SolarizeIncreasing"):
        threshold = np.minimum(256, fraction(level * 256))
        return threshold if name == "Solarize" else 256 - threshold
    linear = {"Rotate": 30.0, "ShearX": 0.3, "ShearY": 0.3, "TranslateX": float(int(size * 0.45)),
              "TranslateY": float(int(size * 0.45)), "TranslateXRel": 0.45 * size, "TranslateYRel": 0.45 * size}
    if name in linear:
        return sign * level * linear[name]
    if name == "SolarizeAdd":
        return np.minimum(128, fraction(level * 110))
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):
        return level * 1.8 + 0.1
    if name.endswith("Increasing"):  # ColorIncreasing, ...: away from 1 (no change) in either direction
        return np.maximum(0.1, 1.0 + sign * level * 0.9)
    if name == "Desaturate":  # enhance factor: 0 is grayscale
        return np.clip(1.0 - np.clip(0.5 + 0.5 * level, 0.5, 1.0), 0.0, 1.0)
    if name == "GaussianBlur":
        return np.clip(0.1 + 1.9 * level, 0.1, 2.0)
    if name == "GaussianBlurRand":  # radius uniform in [0.1, 2 level]
        return 0.1 + (2.0 * np.clip(level, 0.0, 1.0) - 0.1) * extra
    return np.zeros_like(level)  # AutoContrast, Equalize, Invert: no argument


def ta_level(name: str, bin_index: np.ndarray, sign: np.ndarray) -> np.ndarray:
    """torchvision's TrivialAugmentWide argument of op ``name`` for magnitude bins in [0, 31)."""
    top = {"ShearX": 0.99, "ShearY": 0.99, "TranslateX": 32.0, "TranslateY": 32.0, "Rotate": 135.0,
           "Brightness": 0.99, "Color": 0.99, "Contrast": 0.99, "Sharpness": 0.99}
    if name in top:
        magnitude = np.linspace(0.0, top[name], TA_BINS)[bin_index] * sign  # all of these are signed
        if name.startswith("Translate"):
            return np.trunc(magnitude)  # torchvision: int(magnitude) pixels
        return magnitude + 1.0 if name in ("Brightness", "Color", "Contrast", "Sharpness") else magnitude
    if name == "Posterize":
        return 8.0 - np.round(bin_index / ((TA_BINS - 1) / 6))
    if name == "Solarize":
        return np.linspace(255.0, 0.0, TA_BINS)[bin_index]
    return np.zeros(len(bin_index))


def _choose(policy: Policy, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(op spec index per (sample, layer) into the policy's flat spec list, the spec table)."""
    n, layers = len(u), policy.layers
    if policy.kind == "auto":
        specs = [op for sub in policy.subpolicies for op in sub]
        starts = np.cumsum([0] + [len(sub) for sub in policy.subpolicies])[:-1]
        lengths = np.array([len(sub) for sub in policy.subpolicies])
        sub = np.minimum((u[:, 0] * len(policy.subpolicies)).astype(np.int64), len(policy.subpolicies) - 1)
        index = starts[sub][:, None] + np.arange(layers)[None, :]
        return np.where(np.arange(layers)[None, :] < lengths[sub][:, None], index, -1), specs
    specs = list(policy.ops)
    choice = u[:, 0:layers * COLUMNS:COLUMNS]
    if policy.weights is None:  # uniform, with replacement (timm's RandAugment, torchvision's TA)
        return np.minimum((choice * len(specs)).astype(np.int64), len(specs) - 1), specs
    out = np.empty((n, layers), np.int64)  # weighted, without replacement: renormalise after each pick
    weights = np.tile(np.asarray(policy.weights), (n, 1))
    for layer in range(layers):
        cdf = np.cumsum(weights, axis=1)
        target = choice[:, layer] * cdf[:, -1]
        out[:, layer] = np.minimum((cdf <= target[:, None]).sum(axis=1), len(specs) - 1)
        weights[np.arange(n), out[:, layer]] = 0.0
    return out, specs


def draw_policy(policy: Policy, u: np.ndarray, size: int) -> PolicyDecisions:
    """Each sample's ops and arguments from ``u`` ((N, layers x COLUMNS) uniforms: per layer, op
    choice, op probability, magnitude noise, negation, extra)."""
    n, layers = len(u), policy.layers
    spec_index, specs = _choose(policy, u)
    names = policy.op_names
    name_of_spec = np.array([names.index(s.name) for s in specs] + [-1])
    prob_of_spec = np.array([s.prob for s in specs] + [0.0])
    magnitude_of_spec = np.array([s.magnitude for s in specs] + [0.0])
    cols = {k: u[:, k:layers * COLUMNS:COLUMNS] for k in range(COLUMNS)}
    applied = (spec_index >= 0) & (cols[1] < prob_of_spec[spec_index])
    op = np.where(applied, name_of_spec[spec_index], -1)
    sign = np.where(cols[3] > 0.5, -1.0, 1.0)  # timm: negate when random() > 0.5
    value = np.zeros((n, layers))
    if policy.kind == "trivial":
        bins = np.minimum((cols[4] * TA_BINS).astype(np.int64), TA_BINS - 1)
        for k, name in enumerate(names):
            hit = op == k
            value[hit] = ta_level(name, bins[hit], sign[hit])
        return PolicyDecisions(op, value)
    magnitude = magnitude_of_spec[spec_index]
    if policy.magnitude_std == math.inf:
        magnitude = cols[2] * magnitude
    elif policy.magnitude_std > 0:
        magnitude = magnitude + policy.magnitude_std * normals(cols[2])
    magnitude = np.clip(magnitude, 0.0, policy.magnitude_max)
    for k, name in enumerate(names):
        hit = op == k
        value[hit] = timm_level(name, magnitude[hit], sign[hit], cols[4][hit], size)
    return PolicyDecisions(op, value)
