"""The random decisions of the training recipes against their definitions, in numpy only (fast).

Each reference sampler below is written here from the definition it cites (torchvision's
``RandomResizedCrop.get_params``, timm's ``AugmentOp`` / ``RandAugment`` / ``AutoAugment``,
``RandomErasing``, ``Mixup``; torchvision's ``ColorJitter`` and ``TrivialAugmentWide``) with
Python's ``random`` module, as those libraries draw, and never with the loader's code. The
loader's decisions must follow the same distributions: two-sample Kolmogorov-Smirnov tests for
continuous values, chi-square tests for frequencies. The decisions are deterministic (keyed by
seed, epoch and draw id), so each test has one fixed outcome; the thresholds (p > 1e-3) leave room
for chance but not for a different distribution.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from scipy import stats

from imagenet_pipe.loaders.augment import augment_spec, decide
from imagenet_pipe.loaders.auto_augment import COLUMNS, draw_policy, parse_auto_augment
from imagenet_pipe.loaders.config import LoaderConfig, LoaderConfigError, resolve_config
from imagenet_pipe.loaders.erasing import decide_erasing
from imagenet_pipe.loaders.geometry import train_params, train_size, uniforms
from imagenet_pipe.loaders.mixup import Mixer
from imagenet_pipe.loaders.plan import EpochPlan, PlanArgs

N = 20000
P_MIN = 1e-3


def train_cfg(**kw) -> LoaderConfig:
    return resolve_config("train-224", **{"device": "cpu", **kw})


def ks(a, b) -> float:
    return stats.ks_2samp(np.asarray(a, float), np.asarray(b, float)).pvalue


# --- random-resized crop and flip (torchvision) ------------------------------------------------

def torchvision_rrc(rng: random.Random, width: int, height: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """``RandomResizedCrop.get_params``: (left, top, w, h)."""
    area = width * height
    for _ in range(10):
        target = rng.uniform(*scale) * area
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, width - w), rng.randint(0, height - h), w, h
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        w, h = round(height * max(ratio)), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


@pytest.mark.parametrize("width,height", [(500, 375), (375, 500), (256, 256), (120, 600)])
def test_random_resized_crop_follows_torchvision(width, height):
    cfg = train_cfg()
    ids = np.arange(N)
    boxes, flips = train_params(cfg, 0, ids, np.full(N, width), np.full(N, height))
    rng = random.Random(7)
    ref = np.array([torchvision_rrc(rng, width, height) for _ in range(N)])
    area = width * height
    assert ks(boxes[:, 2] * boxes[:, 3] / area, ref[:, 2] * ref[:, 3] / area) > P_MIN, "area"
    assert ks(np.log(boxes[:, 2] / boxes[:, 3]), np.log(ref[:, 2] / ref[:, 3])) > P_MIN, "aspect ratio"
    assert ks(boxes[:, 0] / np.maximum(width - boxes[:, 2], 1), ref[:, 0] / np.maximum(width - ref[:, 2], 1)) > P_MIN
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 0] + boxes[:, 2] <= width).all()
    assert (boxes[:, 1] >= 0).all() and (boxes[:, 1] + boxes[:, 3] <= height).all()
    assert stats.binomtest(int(flips.sum()), N, 0.5).pvalue > P_MIN


def test_flip_rate_and_crops_depend_on_the_draw_id():
    cfg = train_cfg(hflip=0.2)
    ids = np.arange(N)
    boxes, flips = train_params(cfg, 3, ids, np.full(N, 400), np.full(N, 300))
    assert stats.binomtest(int(flips.sum()), N, 0.2).pvalue > P_MIN
    again, _ = train_params(cfg, 3, ids[::-1], np.full(N, 400), np.full(N, 300))
    assert (again[::-1] == boxes).all(), "a draw's crop must not depend on its place in the batch"
    other, _ = train_params(cfg, 4, ids, np.full(N, 400), np.full(N, 300))
    assert (other != boxes).any(axis=1).mean() > 0.99


# --- auto-augment policies (timm) ---------------------------------------------------------------

def timm_level(name: str, m: float, rng: random.Random, size: int):
    """timm's ``LEVEL_TO_ARG`` for the ops the tests draw, with its random negation."""
    def signed(v):
        return -v if rng.random() > 0.5 else v

    level = m / 10.0
    if name == "Rotate":
        return signed(level * 30.0)
    if name in ("ShearX", "ShearY"):
        return signed(level * 0.3)
    if name in ("TranslateXRel", "TranslateYRel"):
        return signed(level * 0.45) * size
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):
        return level * 1.8 + 0.1
    if name.endswith("Increasing") and not name.startswith(("Posterize", "Solarize")):
        return max(0.1, 1.0 + signed(level * 0.9))
    if name == "PosterizeIncreasing":
        return 4 - int(level * 4)
    if name == "PosterizeOriginal":
        return int(level * 4) + 4
    if name == "Posterize":
        return int(level * 4)
    if name == "SolarizeIncreasing":
        return 256 - min(256, int(level * 256))
    if name == "Solarize":
        return min(256, int(level * 256))
    if name == "SolarizeAdd":
        return min(128, int(level * 110))
    if name == "Desaturate":
        return min(1.0, max(0.0, 1.0 - min(1.0, max(0.5, 0.5 + 0.5 * level))))
    if name == "GaussianBlurRand":
        return rng.uniform(0.1, 2.0 * min(1.0, max(0.0, level)))
    return 0.0


def timm_op(rng: random.Random, name: str, prob: float, m: float, mstd: float, mmax: float, size: int):
    """``AugmentOp.__call__``: (name, argument) or None when skipped by its probability."""
    if prob < 1.0 and rng.random() > prob:
        return None
    if mstd == math.inf:
        m = rng.uniform(0, m)
    elif mstd > 0:
        m = rng.gauss(m, mstd)
    m = max(0.0, min(m, mmax))
    return name, timm_level(name, m, rng, size)


TIMM_RAND_INC = ["AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing",
                 "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing",
                 "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"]
TIMM_RAND = ["AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color",
             "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"]


def loader_draws(text: str, size: int = 224, n: int = N):
    policy = parse_auto_augment(text)
    decided = draw_policy(policy, uniforms(0, 0, np.arange(n), 3, policy.layers * COLUMNS), size)
    names = np.asarray((*policy.op_names, None), dtype=object)[decided.op]
    return names, decided.value


def compare_values(names, values, ref: list[tuple[str, float]]):
    """Every op's argument distribution against the reference draws of the same op."""
    by_op: dict[str, list[float]] = {}
    for name, value in ref:
        by_op.setdefault(name, []).append(value)
    for name, theirs in by_op.items():
        mine = values[names == name]
        assert len(mine) > 100, name
        assert ks(mine, theirs) > P_MIN, f"{name}: argument distribution differs from timm's"
        if all(float(v).is_integer() for v in theirs):  # bits, thresholds, additions: whole numbers
            assert (mine == np.round(mine)).all(), name


RAND_CASES = [("rand-m9-mstd0.5-inc1", TIMM_RAND_INC, 0.5), ("rand-m7-mstd0.5", TIMM_RAND, 0.5),
              ("rand-m9-n3-mstd101", TIMM_RAND, math.inf)]


@pytest.mark.parametrize("text,ops,mstd", RAND_CASES)
def test_rand_augment_op_frequencies_and_arguments_follow_timm(text, ops, mstd):
    names, values = loader_draws(text)
    layers = 3 if "-n3" in text else 2
    m = 9 if "m9" in text else 7
    assert names.shape == (N, layers)
    # op frequencies per layer: chosen uniformly with replacement, then applied with p = 0.5
    for layer in range(layers):
        counts = [np.sum(names[:, layer] == op) for op in ops] + [np.sum(names[:, layer] == None)]  # noqa: E711
        expected = [N * 0.5 / len(ops)] * len(ops) + [N * 0.5]
        assert sum(counts) == N and stats.chisquare(counts, expected).pvalue > P_MIN
    rng = random.Random(11)
    ref = [op for _ in range(N) for op in (timm_op(rng, rng.choice(ops), 0.5, m, mstd, 10, 224)
                                           for _ in range(layers)) if op]
    compare_values(names.ravel(), values.ravel(), ref)


def test_weighted_rand_augment_picks_without_replacement():
    names, _ = loader_draws("rand-m9-n3-tweights-p1.0")
    assert all(len(set(row)) == 3 for row in names[:2000]), "tweights draws without replacement"
    weights = {"Rotate": 3, "ShearX": 2, "ShearY": 2, "TranslateXRel": 1, "TranslateYRel": 1}
    total = 3 + 2 + 2 + 1 + 1 + 0.25 * 3 + 0.05 * 7
    first = names[:, 0]
    counts = [np.sum(first == op) for op in weights]
    assert stats.chisquare([*counts, N - sum(counts)],
                           [N * w / total for w in weights.values()] + [N * (1 - 9 / total)]).pvalue > P_MIN


@pytest.mark.parametrize("text", ["original", "v0"])
def test_auto_augment_policies_follow_timm(text):
    policy = parse_auto_augment(text)
    assert len(policy.subpolicies) == 25 and all(len(s) == 2 for s in policy.subpolicies)
    first = {"original": (("PosterizeOriginal", 0.4, 8), ("Rotate", 0.6, 9)),
             "v0": (("Equalize", 0.8, 1), ("ShearY", 0.8, 4))}[text]  # timm's first sub-policies
    assert tuple((o.name, o.prob, o.magnitude) for o in policy.subpolicies[0]) == first
    names, values = loader_draws(text)
    rng = random.Random(5)
    ref, pairs = [], {}
    for _ in range(N):  # AutoAugment.__call__: one sub-policy, each op with its own probability
        sub = rng.choice(policy.subpolicies)
        drawn = [timm_op(rng, op.name, op.prob, op.magnitude, 0.0, 10, 224) for op in sub]
        ref += [d for d in drawn if d]
        key = tuple(d[0] if d else None for d in drawn)
        pairs[key] = pairs.get(key, 0) + 1
    mine = {}
    for row in names:
        mine[tuple(row)] = mine.get(tuple(row), 0) + 1
    keys = sorted(set(pairs) | set(mine), key=str)
    table = np.array([[mine.get(k, 0) for k in keys], [pairs.get(k, 0) for k in keys]])
    assert stats.chi2_contingency(table[:, table.sum(0) > 0]).pvalue > P_MIN, "sub-policy / op frequencies differ"
    compare_values(names.ravel(), values.ravel(), ref)


def test_three_augment_is_one_of_solarize_grayscale_blur():
    names, values = loader_draws("3a")
    assert names.shape == (N, 1)
    counts = [np.sum(names == op) for op in ("Solarize", "Desaturate", "GaussianBlurRand")]
    assert sum(counts) == N and stats.chisquare(counts).pvalue > P_MIN
    assert set(values[names == "Solarize"]) == {128.0}  # magnitude 5: threshold 128
    assert set(values[names == "Desaturate"]) == {0.0}  # magnitude 10: full grayscale
    assert stats.kstest(values[names == "GaussianBlurRand"], stats.uniform(0.1, 1.9).cdf).pvalue > P_MIN


def test_trivial_augment_wide_follows_torchvision():
    names, values = loader_draws("ta_wide")
    ops = ["Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast",
           "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize"]
    counts = [np.sum(names == op) for op in ops]
    assert sum(counts) == N and stats.chisquare(counts).pvalue > P_MIN
    rng = random.Random(3)
    spaces = {"ShearX": (np.linspace(0, 0.99, 31), True), "Rotate": (np.linspace(0, 135, 31), True),
              "TranslateX": (np.linspace(0, 32, 31), True), "Brightness": (np.linspace(0, 0.99, 31), True),
              "Posterize": (8 - np.round(np.arange(31) / 5), False), "Solarize": (np.linspace(255, 0, 31), False)}
    for op, (magnitudes, signed) in spaces.items():
        ref = []
        for _ in range(3000):  # TrivialAugmentWide.forward and _apply_op
            m = float(magnitudes[rng.randrange(31)])
            m = -m if signed and rng.randrange(2) else m
            ref.append(int(m) if op == "TranslateX" else 1.0 + m if op == "Brightness" else m)
        assert ks(values[names == op], ref) > P_MIN, op


# --- colour jitter (torchvision ColorJitter in RandomApply) --------------------------------------

def test_color_jitter_factors_order_and_probability():
    cfg = train_cfg(color_jitter=(0.4, 0.3, 0.2), color_jitter_prob=0.8)
    spec = augment_spec(cfg)
    assert spec.layers == 3 and spec.policy is None
    d = decide(spec, 0, 0, np.arange(N), 224)
    applied = (d.names != "").all(axis=1)
    assert stats.binomtest(int(applied.sum()), N, 0.8).pvalue > P_MIN
    assert ((d.names != "").sum(axis=1) % 3 == 0).all(), "ColorJitter applies all three or none"
    for op, s in (("Brightness", 0.4), ("Contrast", 0.3), ("Color", 0.2)):
        assert stats.kstest(d.values[d.names == op], stats.uniform(1 - s, 2 * s).cdf).pvalue > P_MIN, op
    orders = [tuple(row) for row in d.names[applied]]
    counts = [orders.count(o) for o in sorted(set(orders))]
    assert len(counts) == 6 and stats.chisquare(counts).pvalue > P_MIN, "every order equally likely"


def test_timm_turns_colour_jitter_off_under_an_auto_augment_policy():
    assert augment_spec(train_cfg(color_jitter=0.4, auto_augment="rand-m9")).jitter == (0, 0, 0)
    assert augment_spec(train_cfg(color_jitter=0.4, auto_augment="rand-m9", force_color_jitter=True)).jitter \
        == (0.4,) * 3
    assert augment_spec(train_cfg(color_jitter=0.3, auto_augment="3a")).jitter == (0.3,) * 3


# --- random erasing (timm) -----------------------------------------------------------------------

def timm_erasing(rng: random.Random, prob: float, max_count: int, height: int, width: int):
    """``RandomErasing._erase``: the boxes (top, left, h, w) of one image."""
    if rng.random() > prob:
        return []
    count = rng.randint(1, max_count) if max_count > 1 else 1
    boxes = []
    for _ in range(count):
        for _ in range(10):
            target = rng.uniform(0.02, 1 / 3) * height * width / count
            aspect = math.exp(rng.uniform(math.log(0.3), math.log(1 / 0.3)))
            h, w = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if w < width and h < height:
                boxes.append((rng.randint(0, height - h), rng.randint(0, width - w), h, w))
                break
    return boxes


@pytest.mark.parametrize("count,mode", [(1, "const"), (3, "rand")])
def test_random_erasing_follows_timm(count, mode):
    height = width = 64
    cfg = train_cfg(re_prob=0.4, re_count=count, re_mode=mode)
    d = decide_erasing(cfg, 0, np.arange(N), height, width)
    real = d.boxes[:, :, 2] > 0
    rng = random.Random(2)
    ref = [timm_erasing(rng, 0.4, count, height, width) for _ in range(N)]
    assert stats.binomtest(int(real.any(axis=1).sum()), N, 0.4).pvalue > P_MIN
    mine_boxes = d.boxes[real]
    ref_boxes = np.array([b for boxes in ref for b in boxes])
    assert ks(mine_boxes[:, 2] * mine_boxes[:, 3], ref_boxes[:, 2] * ref_boxes[:, 3]) > P_MIN, "erased area"
    assert ks(mine_boxes[:, 2] / mine_boxes[:, 3], ref_boxes[:, 2] / ref_boxes[:, 3]) > P_MIN, "aspect h / w"
    assert ks(mine_boxes[:, 0] / np.maximum(height - mine_boxes[:, 2], 1),
              ref_boxes[:, 0] / np.maximum(height - ref_boxes[:, 2], 1)) > P_MIN, "position"
    assert (mine_boxes[:, 0] + mine_boxes[:, 2] <= height).all()
    assert (mine_boxes[:, 1] + mine_boxes[:, 3] <= width).all()
    per_image = real.sum(axis=1)[real.any(axis=1)]
    ref_counts = [len(b) for b in ref if b]
    assert ks(per_image, ref_counts) > P_MIN, "boxes per erased image"
    if mode == "rand":  # one standard-normal colour per box and channel
        assert stats.kstest(d.colors[real].ravel(), "norm").pvalue > P_MIN
    else:
        assert not d.colors.any()


# --- mixup / cutmix / label smoothing (timm Mixup) ------------------------------------------------

def mixer(**kw) -> Mixer:
    return Mixer(train_cfg(**kw), 10)


def test_mixup_lambda_is_beta_and_cutmix_lambda_is_the_kept_area():
    lam = [mixer(mixup_alpha=0.8).decide(0, p, 8, 32, 32).lam[0] for p in range(3000)]
    assert stats.kstest(lam, stats.beta(0.8, 0.8).cdf).pvalue > P_MIN
    # cutmix: timm's rand_bbox around a uniform centre from lam ~ Beta(1, 1), lambda corrected to the kept area
    rng = np.random.default_rng(4)
    ref = []
    for _ in range(3000):
        lam0 = rng.beta(1.0, 1.0)
        cut_h = cut_w = int(32 * np.sqrt(1 - lam0))
        cy, cx = rng.integers(0, 32), rng.integers(0, 32)
        yl, yh = np.clip(cy - cut_h // 2, 0, 32), np.clip(cy + cut_h // 2, 0, 32)
        xl, xh = np.clip(cx - cut_w // 2, 0, 32), np.clip(cx + cut_w // 2, 0, 32)
        ref.append(1 - (yh - yl) * (xh - xl) / 1024)
    cut = mixer(cutmix_alpha=1.0)
    decisions = [cut.decide(0, p, 8, 32, 32) for p in range(3000)]
    assert all(d.cutmix.all() for d in decisions)
    assert ks([d.lam[0] for d in decisions], ref) > P_MIN
    for d in decisions[:200]:
        top, bottom, left, right = d.boxes[0]
        assert d.lam[0] == pytest.approx(1 - (bottom - top) * (right - left) / 1024)


@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
def test_mixed_pixels_and_soft_targets_agree(mode):
    """Every image's own-label weight equals the share of it that is still its own."""
    m = mixer(mixup_alpha=0.5, cutmix_alpha=1.0, mixup_mode=mode, label_smoothing=0.1, switch_prob=0.5)
    n, seen_cut, seen_mix = 6, 0, 0
    for position in range(40):
        images = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).repeat(1, 3, 16, 16)  # image i is all i
        labels = torch.arange(n)
        d = m.decide(0, position, n, 16, 16)
        mixed, targets = m(images.clone(), labels, 0, position, False)
        assert targets.dtype == torch.float32 and targets.shape == (n, 10)
        assert torch.allclose(targets.sum(1), torch.ones(n))
        for i in range(n):
            j = n - 1 - i
            own = targets[i, i] - 0.01  # the smoothing's share: 0.1 / 10 classes
            if d.cutmix[i] and d.lam[i] < 1:
                seen_cut += 1
                kept = (mixed[i] == i).float().mean().item()
                assert kept == pytest.approx(d.lam[i], abs=1e-6) and own.item() == pytest.approx(0.9 * d.lam[i], 1e-4)
            elif d.lam[i] < 1:
                seen_mix += 1
                assert torch.allclose(mixed[i], torch.full_like(mixed[i], i * d.lam[i] + j * (1 - d.lam[i])))
        if mode == "pair":  # image N-1-i mirrors pair i
            assert np.allclose(d.lam, d.lam[::-1])
        if mode == "batch":
            assert len(set(d.lam)) == 1
    assert seen_cut and seen_mix


def test_mixing_probabilities_and_smoothing_alone():
    m = mixer(mixup_alpha=1.0, cutmix_alpha=1.0, mixup_prob=0.6, switch_prob=0.3)
    ds = [m.decide(0, p, 4, 32, 32) for p in range(4000)]
    mixed = np.array([d.lam[0] < 1 for d in ds])
    assert stats.binomtest(int(mixed.sum()), 4000, 0.6).pvalue > P_MIN
    assert stats.binomtest(int(sum(d.cutmix[0] for d in ds)), int(mixed.sum()), 0.3).pvalue > P_MIN
    smooth = mixer(label_smoothing=0.2)
    images, targets = smooth(torch.zeros(4, 3, 8, 8), torch.tensor([1, 2, 3, 4]), 0, 0, False)
    assert torch.allclose(targets.sum(1), torch.ones(4)) and not images.any()
    assert targets[0, 1].item() == pytest.approx(1 - 0.2 + 0.02) and targets[0, 0].item() == pytest.approx(0.02)
    off = mixer(mixup_alpha=1.0, mixup_off_epoch=3)
    assert (off.decide(2, 0, 4, 8, 8).lam < 1).any() or (off.decide(2, 1, 4, 8, 8).lam < 1).any()
    assert all((off.decide(3, p, 4, 8, 8).lam == 1).all() for p in range(20))


def test_cutmix_minmax_box_sides():
    m = mixer(cutmix_minmax=(0.2, 0.6))
    for p in range(300):
        top, bottom, left, right = m.decide(0, p, 4, 50, 40).boxes[0]
        assert 10 <= bottom - top < 30 and 8 <= right - left < 24


# --- repeated augmentation, progressive resolution, options ---------------------------------------

@pytest.mark.parametrize("world,repeats", [(3, 3), (4, 2), (1, 3)])
def test_repeated_augmentation_counts_per_epoch_and_over_ranks(world, repeats):
    n, batch = 300, 8
    plans = [EpochPlan(PlanArgs(n, (100, 100, 100), batch, world, r, True, 1, 0, repeats), 2) for r in range(world)]
    steps = n // (world * batch)
    assert all(p.steps == steps for p in plans), "an epoch keeps its length"
    ids = np.concatenate([p.batch(i) for p in plans for i in range(steps)])
    draws = np.concatenate([p.draw_ids(i) for p in plans for i in range(steps)])
    assert len(ids) == steps * world * batch
    assert len(np.unique(draws)) == len(draws), "each copy has its own draws"
    assert (draws % n == ids).all() and set(draws // n) == set(range(repeats))
    counts = np.bincount(np.bincount(ids, minlength=n))
    full = len(ids) // repeats  # samples whose copies all fall in the epoch's dealt positions
    assert counts[repeats] >= full - 1 and counts[repeats + 1:].sum() == 0
    if world >= repeats:  # consecutive positions go to different ranks: a sample's copies are on distinct ranks
        for r1 in range(world):
            mine = np.concatenate([plans[r1].batch(i) for i in range(steps)])
            assert len(set(mine)) == len(mine)


def test_progressive_resolution_follows_ffcv():
    cfg = train_cfg(res_schedule=(160, 192, 10, 20))

    def ffcv(epoch):  # FFCV's get_resolution
        if epoch <= 10:
            return 160
        if epoch >= 20:
            return 192
        return int(np.round(np.interp([epoch], [10, 20], [160, 192])[0] / 32)) * 32

    assert [train_size(cfg, e) for e in range(25)] == [ffcv(e) for e in range(25)]
    assert all(train_size(cfg, e) % 32 == 0 for e in range(25)) and train_size(train_cfg(), 9) == 224


@pytest.mark.parametrize("bad,match", [
    ({"color_jitter": (0.4, 0.4, 0.4, 0.1)}, "hue"), ({"auto_augment": "augmix-m5"}, "AugMix"),
    ({"auto_augment": "rand-m9-q3"}, "unknown RandAugment section"), ({"auto_augment": "v1"}, "not a timm policy"),
    ({"re_mode": "noise", "re_prob": 0.2}, "re_mode"), ({"re_prob": 0.2, "dtype": "uint8"}, "normalis"),
    ({"mixup_mode": "half"}, "mixup_mode"), ({"mixup_prob": 1.5}, "mixup_prob"),
    ({"cutmix_minmax": (0.6, 0.2)}, "cutmix_minmax"), ({"res_schedule": (160, 192, 9, 3)}, "res_schedule"),
    ({"auto_augment": "rand-m9", "interpolation": "lanczos"}, "bilinear or bicubic"),
    ({"auto_augment": "rand-m9-n20-tweights"}, "without replacement"), ({"aug_repeats": 3, "mode": "eval"}, "eval"),
    ({"label_smoothing": "0.1"}, "expected float"),
])
def test_bad_recipe_options_are_refused(bad, match):
    with pytest.raises(LoaderConfigError, match=match):
        train_cfg(**bad)
