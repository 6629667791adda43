"""The training recipes through the loaders: every augmentation op of the DALI graph (CPU
operators, never mocked) against the Pillow operation timm runs, the two backends yielding the
same decisions, determinism and resume with every recipe option on, erased boxes, progressive
resolution without a rebuild, repeated augmentation, and a short training run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imagenet_pipe.loaders import LoaderConfigError, build_loader
from imagenet_pipe.loaders.augment import (
    BRANCHES,
    OP_BRANCH,
    AugmentSpec,
    augment_spec,
    blur_kernel,
    decide,
    graph_args,
    sharpness_kernel,
)
from imagenet_pipe.loaders.auto_augment import OpSpec, Policy
from imagenet_pipe.loaders.erasing import box_noise, decide_erasing
from imagenet_pipe.loaders.plan import EpochPlan
from imagenet_pipe.loaders.transforms import apply_branch

from .conftest import converted_fake

ROOT = Path(__file__).resolve().parents[1]
FAST = {"device": "cpu", "num_threads": 2, "num_workers": 0, "size": 64, "batch_size": 8, "return_keys": True,
        "dtype": "float32"}
# every recipe option at once: RandAugment, forced colour jitter, erasing, mixup and cutmix, smoothing
RECIPE = {"auto_augment": "rand-m9-mstd0.5-inc1", "color_jitter": 0.4, "force_color_jitter": True, "re_prob": 0.5,
          "re_mode": "rand", "re_count": 2, "mixup_alpha": 0.8, "cutmix_alpha": 1.0, "label_smoothing": 0.1}


@pytest.fixture(scope="module")
def real_shards(tmp_path_factory) -> Path:
    """96 training crops of real photographs (and 16 validation images), shards of 16."""
    return converted_fake(tmp_path_factory, "real", {"train": 16, "validation": 16}, num_classes=8,
                          train_per_class=12, val_images=16, style="real", seed=3)


def loader(root, backend="dali", **kw):
    return build_loader(root, "train", "train-224", backend=backend, **{**FAST, **kw})


def batches(ld, count=None):
    return [(b.keys, b.images.clone(), b.labels.clone()) for b in islice(ld, count)]


def assert_same(a, b):
    assert [k for k, _, _ in a] == [k for k, _, _ in b]
    assert all(torch.equal(x[1], y[1]) and torch.equal(x[2], y[2]) for x, y in zip(a, b, strict=True))


# --- each op of the graph against Pillow ---------------------------------------------------------

SIZE = 96
# (op, argument): the ops of every policy, at strengths the policies reach
CASES = [("Rotate", 20.0), ("Rotate", -27.0), ("ShearX", 0.27), ("ShearY", -0.2), ("TranslateXRel", 30.3),
         ("TranslateY", -17.0), ("Brightness", 1.6), ("Brightness", 0.3), ("Color", 1.8), ("Color", 0.2),
         ("Desaturate", 0.0), ("Contrast", 1.7), ("Contrast", 0.3), ("Sharpness", 1.9), ("Sharpness", 0.1),
         ("Invert", 0.0), ("Solarize", 128.0), ("Solarize", 200.0), ("SolarizeAdd", 99.0), ("Posterize", 2.0),
         ("PosterizeOriginal", 6.0), ("AutoContrast", 0.0), ("GaussianBlur", 1.5), ("GaussianBlur", 0.6)]
# (mean |DALI - Pillow| of 255, share of pixels off by more than 2): resampling and rounding differ;
# geometric ops differ most along the filled border (Pillow fills hard, DALI interpolates the fill)
BOUNDS = {"affine": (1.0, 0.03), "sharpness": (1.0, 0.03), "blur": (1.0, 0.1), "color": (0.5, 0.0),
          "brightness": (0.7, 0.0), "contrast": (1.5, 0.0), "autocontrast": (0.7, 0.0)}


def real_images(count: int) -> list[np.ndarray]:
    from imagenet_pipe.fakes.images import ImageFactory

    factory = ImageFactory(seed=1, style="real")
    return [np.asarray(factory.image().resize((SIZE, SIZE), Image.BILINEAR)) for _ in range(count)]


def all_branches_spec(interpolation: str = "bilinear") -> AugmentSpec:
    policy = Policy("all", "rand", ops=tuple(OpSpec(name) for name in OP_BRANCH), num_layers=1)
    return AugmentSpec(policy, (0.0, 0.0, 0.0), 1.0, (124, 116, 104), interpolation, BRANCHES)


def run_graph_ops(images: list[np.ndarray], cases, spec: AugmentSpec, extra=None) -> list:
    """One DALI batch per case: every image through the case's op (the loader's graph function)."""
    from nvidia.dali import fn, pipeline_def

    from imagenet_pipe.loaders.dali_augment import apply_augment

    n = len(images)

    def feed():
        for name, value in cases:
            family = OP_BRANCH[name]
            kernel = blur_kernel(value) if family == "blur" else sharpness_kernel(value) if family == "sharpness" \
                else np.ones((1, 1), np.float32)
            yield (images, np.full(n, spec.branches.index(family), np.int32),
                   np.tile(graph_args(name, value, SIZE), (n, 1)), [kernel] * n)

    batches = feed()

    @pipeline_def(batch_size=n, num_threads=2, device_id=None, enable_conditionals=True, exec_dynamic=True)
    def pipe():
        x, op, arg, kernel = fn.external_source(source=lambda: next(batches), num_outputs=4, batch=True,
                                                layout=["HWC", "", "", ""])
        return apply_augment(x, {"aug_op0": op, "aug_arg0": arg, "aug_kernel0": kernel}, spec, False)

    p = pipe()
    p.build()
    return [[np.asarray(t) for t in p.run()[0]] for _ in cases]


@pytest.fixture(scope="module")
def op_outputs():
    images, spec = real_images(8), all_branches_spec()
    return images, spec, dict(zip(CASES, run_graph_ops(images, CASES, spec), strict=True))


@pytest.mark.parametrize("case", CASES, ids=[f"{n}-{v}" for n, v in CASES])
def test_each_graph_op_matches_pillow(op_outputs, case):
    images, spec, outputs = op_outputs
    name, value = case
    family = OP_BRANCH[name]
    diff = np.stack([np.abs(np.asarray(apply_branch(Image.fromarray(img), family, graph_args(name, value, SIZE),
                                                    spec), dtype=int) - got.astype(int))
                     for img, got in zip(images, outputs[case], strict=True)])
    mean_bound, share_bound = BOUNDS.get(family, (0.0, 0.0))  # lookup-table ops: exact
    assert diff.mean() <= mean_bound and (diff > 2).mean() <= share_bound, (diff.mean(), (diff > 2).mean())
    if family != "identity":  # and the op did something
        assert np.mean([np.abs(g.astype(int) - i).mean() for g, i in zip(outputs[case], images, strict=True)]) > 1


def test_equalize_is_opencvs_histogram_equalisation(op_outputs):
    """DALI's equalize (the graph's) maps each channel through OpenCV's formula; Pillow's differs in
    how it rounds the histogram's cumulative sum (README: the one op that is not Pillow's)."""
    images, spec, _ = op_outputs
    got = run_graph_ops(images, [("Equalize", 0.0)], spec)[0]
    for img, out in zip(images, got, strict=True):
        for c in range(3):
            channel = img[..., c]
            cdf = np.cumsum(np.bincount(channel.ravel(), minlength=256))
            low = cdf[cdf > 0][0]
            lut = np.round((cdf - low) * 255.0 / max(cdf[-1] - low, 1))
            assert np.array_equal(out[..., c], lut[channel].astype(np.uint8))


# --- the loaders with a recipe -------------------------------------------------------------------

def test_backends_make_the_same_decisions(real_shards):
    """Same keys, soft targets and augmentation decisions; the pixels differ by resampling and
    rounding, except after Equalize (DALI's is OpenCV's formula, timm's Pillow's)."""
    ld = loader(real_shards, **RECIPE)
    dali, pil = batches(ld), batches(loader(real_shards, "baseline", **RECIPE))
    assert [k for k, _, _ in dali] == [k for k, _, _ in pil]
    spec, plan, diffs = augment_spec(ld.cfg), EpochPlan(ld.plan_args, 0), []
    for i, ((_, x, t), (_, y, u)) in enumerate(zip(dali, pil, strict=True)):
        assert t.shape == (8, 1000) and t.dtype == torch.float32 and torch.equal(t, u), "soft targets differ"
        names = decide(spec, 0, 0, plan.draw_ids(i), 64).names
        # mixing blends image i with image N-1-i: both must be free of Equalize
        plain = ~((names == "Equalize").any(axis=1) | (names == "Equalize").any(axis=1)[::-1])
        diffs += (x - y).abs().mean(dim=(1, 2, 3))[torch.from_numpy(plain.copy())].tolist()
    # normalised units (1 = 58 levels of 255): typically 1-2 levels; up to 5 op layers compound the rounding
    assert len(diffs) > 60 and np.median(diffs) < 0.04 and max(diffs) < 0.15, (np.median(diffs), max(diffs))
    plain = batches(loader(real_shards))
    assert all((x - p).abs().mean() > 0.1 for (_, x, _), (_, p, _) in zip(dali, plain, strict=True))


@pytest.mark.parametrize("backend", ["dali", "baseline"])
def test_recipe_is_deterministic_and_resumes_mid_epoch(real_shards, backend):
    reference = batches(loader(real_shards, backend, **RECIPE)) + batches(loader_at(real_shards, backend, 1))
    again = loader(real_shards, backend, **RECIPE)
    assert_same(batches(again), reference[:len(again)])
    other = batches(loader(real_shards, backend, seed=1, **RECIPE))
    assert [k for k, _, _ in other] != [k for k, _, _ in reference[:len(other)]]
    steps = len(again)
    for k in (3, steps + 2):  # mid-epoch, and in the next epoch
        first = loader(real_shards, backend, **RECIPE)
        taken = batches(first, k) if k < steps else batches(first) + batches(first, k - steps)
        state = json.loads(json.dumps(first.state_dict()))
        resumed = loader(real_shards, backend, **RECIPE)
        resumed.load_state_dict(state)
        rest = batches(resumed)
        assert_same(taken + rest, reference[:len(taken) + len(rest)])


def loader_at(root, backend, epoch):
    ld = loader(root, backend, **RECIPE)
    ld.set_epoch(epoch)
    return ld


@pytest.mark.parametrize("mode", ["const", "rand", "pixel"])
@pytest.mark.parametrize("backend", ["dali", "baseline"])
def test_erased_boxes_hold_the_fill_and_nothing_else_changes(real_shards, mode, backend):
    erased = loader(real_shards, backend, re_prob=0.7, re_mode=mode, re_count=2)
    clean = batches(loader(real_shards, backend))
    plan = EpochPlan(erased.plan_args, 0)
    boxes_seen = 0
    for i, (_, images, _) in enumerate(batches(erased)):
        draws = plan.draw_ids(i)
        decided = decide_erasing(erased.cfg, 0, draws, 64, 64)
        untouched = torch.ones_like(images, dtype=torch.bool)
        for row, box in zip(*np.nonzero(decided.boxes[:, :, 2] > 0), strict=True):
            top, left, h, w = (int(v) for v in decided.boxes[row, box])
            if mode == "pixel":
                fill = torch.from_numpy(box_noise(0, 0, int(draws[row]), int(box), h, w))
            else:
                fill = torch.from_numpy(decided.colors[row, box])[:, None, None].expand(3, h, w)
            later = decided.boxes[row, box + 1:]  # a later box may cover part of this one
            visible = torch.ones(h, w, dtype=torch.bool)
            for t2, l2, h2, w2 in later:
                visible[max(t2 - top, 0):max(t2 + h2 - top, 0), max(l2 - left, 0):max(l2 + w2 - left, 0)] = False
            region = images[row, :, top:top + h, left:left + w]
            assert torch.equal(region[:, visible], fill[:, visible]), (row, box)
            untouched[row, :, top:top + h, left:left + w] = False
            boxes_seen += 1
        assert torch.equal(images[untouched], clean[i][1][untouched])
    assert boxes_seen > 10


def test_progressive_resolution_changes_size_between_epochs_without_a_rebuild(real_shards):
    ld = loader(real_shards, res_schedule=(32, 64, 0, 2), size=224)
    pipe = ld.pipe
    sizes = [{tuple(b.images.shape[-2:]) for b in ld} for _ in range(3)]
    assert sizes == [{(32, 32)}, {(64, 64)}, {(64, 64)}]  # epoch 1: 48 rounds to 64 (multiple of 32)
    assert ld.pipe is pipe, "the pipeline was rebuilt"
    base = loader(real_shards, "baseline", res_schedule=(32, 64, 0, 2))
    assert [{tuple(b.images.shape[-2:]) for b in base} for _ in range(2)] == sizes[:2]


def test_repeated_augmentation_gives_each_copy_its_own_pixels(real_shards):
    ld = loader(real_shards, aug_repeats=2, batch_size=8)
    for keys, images, _ in batches(ld):
        assert keys[0::2] == keys[1::2], "copies are consecutive (one rank)"
        for a, b in zip(images[0::2], images[1::2], strict=True):
            assert (a - b).abs().mean() > 0.05, "the two copies of a sample got the same augmentation"
    state = ld.state_dict()
    assert state["aug_repeats"] == 2
    with pytest.raises(LoaderConfigError, match="aug_repeats"):
        loader(real_shards).load_state_dict(state)


# --- a short training run ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def object_shards(tmp_path_factory) -> Path:
    """160 crops of photos whose subject is an ImageNet class, labelled with it (a learnable split)."""
    return converted_fake(tmp_path_factory, "objects", {"train": 16, "validation": 40}, num_classes=6,
                          train_per_class=2, val_images=160, style="objects", seed=5)


def train_losses(shards: Path, preset: str, log: Path) -> list[float]:
    cmd = [sys.executable, str(ROOT / "tools" / "train_example.py"), "--shards", str(shards), "--preset", preset,
           "--size", "64", "--train-split", "validation", "--batch-size", "16", "--epochs", "4", "--lr", "0.05",
           "--device", "cpu", "--log-loss", str(log)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"validation top-1 [\d.]+ on 160 images", proc.stdout)
    return [float(x) for x in log.read_text().split()]


def test_short_training_with_the_modern_recipe_learns_like_the_plain_one(object_shards, tmp_path):
    """A smoke test, not an accuracy claim: with train-224-rand (RandAugment, erasing, mixup/cutmix,
    smoothing; soft-target loss) the loss is finite and falls, as it does without the recipe."""
    for preset in ("train-224", "train-224-rand"):
        losses = np.array(train_losses(object_shards, preset, tmp_path / f"{preset}.txt"))
        assert len(losses) == 40 and np.isfinite(losses).all(), preset
        quarter = len(losses) // 4
        assert losses[-quarter:].mean() < 0.8 * losses[:quarter].mean(), (preset, losses)
