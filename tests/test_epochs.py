"""Epoch semantics, set_epoch and resumable state of both loader backends (DALI on its CPU
operators, never mocked), over several epochs, world sizes and awkward batch sizes."""

from __future__ import annotations

import json
from itertools import islice

import pytest
import torch

from imagenet_pipe.loaders import DistInfo, LoaderConfig, LoaderConfigError, build_loader
from imagenet_pipe.loaders.plan import EpochPlan, PlanArgs, training_order

from .conftest import converted_fake

BACKENDS = ["dali", "baseline"]
# small outputs keep the many passes cheap; the geometry is still the preset's
FAST = {"device": "cpu", "num_threads": 2, "num_workers": 0, "size": 32, "dtype": "uint8", "return_keys": True}


@pytest.fixture(scope="session")
def shards_287(tmp_path_factory):
    """287 training samples (one of 288 quarantined) in shards of 23-24: nothing divides evenly."""
    return converted_fake(tmp_path_factory, "287", {"train": 25, "validation": 25}, num_classes=8,
                          train_per_class=36, val_images=30, style="small", seed=3)


def loader(root, world=1, rank=0, backend="dali", **kw):
    return build_loader(root, "train", "train-224", backend=backend, dist=DistInfo(rank, world), **{**FAST, **kw})


def epoch_keys(ld) -> list[str]:
    return [k for batch in ld for k in batch.keys]


def test_plan_is_a_pure_function_of_seed_and_epoch():
    args = PlanArgs(287, (24,) * 11 + (23,), 32, 1, 0, True, seed=5, shuffle_block=64)
    a, b = training_order(args, 3), training_order(args, 3)
    assert (a == b).all() and sorted(a.tolist()) == list(range(287))
    assert (training_order(args, 4) != a).any()
    # the order does not depend on the world size: global batches are consecutive slices of it
    for world in (1, 2, 3):
        plans = [EpochPlan(PlanArgs(287, args.shard_lengths, 32, world, r, True, 5, 64), 3) for r in range(world)]
        for i in range(plans[0].steps):  # global step i: rank r has positions r, r + world, ...
            step = a[i * world * 32:(i + 1) * world * 32]
            assert all((plans[r].batch(i) == step[r::world]).all() for r in range(world))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("world,batch", [(1, 32), (2, 32), (3, 7), (2, 13), (1, 287)])
def test_every_epoch_is_one_pass_and_ranks_are_disjoint(shards_287, backend, world, batch):
    loaders = [loader(shards_287, world, r, backend, batch_size=batch) for r in range(world)]
    steps = 287 // (world * batch)
    orders = []
    for _ in range(5 if world * batch < 287 else 2):
        per_rank = [epoch_keys(ld) for ld in loaders]
        for keys, ld in zip(per_rank, loaders, strict=True):
            assert len(ld) == steps and len(keys) == steps * batch
            assert len(set(keys)) == len(keys), "a sample twice on one rank in one epoch"
        seen = [k for keys in per_rank for k in keys]
        assert len(set(seen)) == len(seen) == world * steps * batch, "ranks overlap"
        orders.append(tuple(seen))
    assert len(set(orders)) == len(orders), "every epoch has its own order"


def test_backends_and_worker_counts_give_the_same_order(shards_287):
    dali = epoch_keys(loader(shards_287, batch_size=16))
    assert epoch_keys(loader(shards_287, backend="baseline", batch_size=16, num_workers=2)) == dali
    assert epoch_keys(loader(shards_287, backend="baseline", batch_size=16)) == dali


@pytest.mark.parametrize("backend", BACKENDS)
def test_set_epoch_yields_exactly_that_epoch(shards_287, backend):
    straight = loader(shards_287, backend=backend, batch_size=20)
    epochs = [[(b.keys, b.images.clone(), b.labels.clone()) for b in straight] for _ in range(4)]
    fresh = loader(shards_287, backend=backend, batch_size=20)
    fresh.set_epoch(3)
    again = [(b.keys, b.images, b.labels) for b in fresh]
    assert [k for k, _, _ in again] == [k for k, _, _ in epochs[3]]
    assert all(torch.equal(a[1], b[1]) and torch.equal(a[2], b[2]) for a, b in zip(again, epochs[3], strict=True))
    assert [k for k, _, _ in epochs[3]] != [k for k, _, _ in epochs[2]]


def _stream(ld, passes: int):
    """(epoch, keys, images, labels) of every batch over ``passes`` passes."""
    out = []
    for _ in range(passes):
        out += [(ld.epoch, b.keys, b.images.clone(), b.labels.clone()) for b in ld]
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_resume_after_k_batches_gives_the_same_batches(shards_287, backend):
    batch = 24
    steps = 287 // batch
    reference = _stream(loader(shards_287, backend=backend, batch_size=batch), 3)
    for k in (0, 1, steps - 1, steps, steps + 5):  # start, first step, last batch of an epoch, boundary, epoch 2
        first = loader(shards_287, backend=backend, batch_size=batch)
        taken = 0
        for _ in range(3):
            for _ in islice(first, k - taken):
                taken += 1
            if taken == k:
                break
        state = json.loads(json.dumps(first.state_dict()))  # a file round trip
        resumed = loader(shards_287, backend=backend, batch_size=batch)
        resumed.load_state_dict(state)
        rest = _stream(resumed, 3)[: len(reference) - k]
        assert [(e, keys) for e, keys, _, _ in rest] == [(e, keys) for e, keys, _, _ in reference[k:]], k
        assert all(torch.equal(a[2], b[2]) and torch.equal(a[3], b[3])
                   for a, b in zip(rest, reference[k:], strict=True)), f"pixels differ after resuming at {k}"


def test_state_after_the_last_batch_points_at_the_next_epoch(shards_287):
    ld = loader(shards_287, batch_size=100)
    for _ in ld:
        state = ld.state_dict()
    assert (state["epoch"], state["consumed"]) == (1, 0)


def test_resume_on_another_world_size_repeats_and_skips_nothing(shards_287):
    batch = 10
    two = [loader(shards_287, 2, r, batch_size=batch) for r in range(2)]
    seen = []
    for ld in two:
        seen += [k for b in islice(ld, 5) for k in b.keys]  # 5 steps on both ranks
    state = two[0].state_dict()
    three = [loader(shards_287, 3, r, batch_size=batch) for r in range(3)]
    for ld in three:
        ld.load_state_dict(state)
        seen += epoch_keys(ld)
    assert len(seen) == len(set(seen)), "a sample repeated across the world-size change"
    remainder = (287 - 5 * 2 * batch) % (3 * batch)
    assert len(seen) == 287 - remainder
    # the next epoch on the new world size is a normal epoch
    nxt = [k for ld in three for k in epoch_keys(ld)]
    assert len(nxt) == len(set(nxt)) == 3 * (287 // 30) * batch


def test_eval_resume_mid_pass_and_its_limits(shards_287):
    def val(world=1, rank=0, batch=7):
        return build_loader(shards_287, "validation", dist=DistInfo(rank, world), **{**FAST, "batch_size": batch})

    full = epoch_keys(val())
    first = val()
    head = [k for b in islice(first, 2) for k in b.keys]
    state = first.state_dict()
    resumed = val()
    resumed.load_state_dict(state)
    assert head + epoch_keys(resumed) == full
    with pytest.raises(LoaderConfigError, match="world_size"):
        val(2, 0).load_state_dict(state)


@pytest.mark.parametrize("change", [{"seed": 9}, {"shuffle_block": 8}])
def test_state_from_other_settings_is_refused(shards_287, change):
    ld = loader(shards_287, batch_size=10)
    next(iter(ld))
    state = ld.state_dict()
    other = loader(shards_287, batch_size=10, **change)
    with pytest.raises(LoaderConfigError, match=next(iter(change))):
        other.load_state_dict(state)
    val = build_loader(shards_287, "validation", **FAST)
    with pytest.raises(LoaderConfigError, match="split"):
        val.load_state_dict(state)


def test_abandoned_pass_then_next_pass_is_the_next_epoch(shards_287):
    ld = loader(shards_287, batch_size=10)
    it = iter(ld)
    next(it)
    mid = ld.state_dict()
    assert (mid["epoch"], mid["consumed"]) == (0, 10)  # taken after breaking out: still mid-epoch
    keys = epoch_keys(ld)
    assert ld.epoch == 1
    ref = loader(shards_287, batch_size=10)
    ref.set_epoch(1)
    assert keys == epoch_keys(ref)


def test_api_fit(shards_287):
    cfg = LoaderConfig(mode="train", batch_size=8, **{k: v for k, v in FAST.items()})
    ld = build_loader(shards_287, "train", cfg)
    images, labels = next(iter(ld))  # unpacks as two, keys as an attribute
    assert images.shape == (8, 3, 32, 32) and labels.dtype == torch.int64 and len(next(iter(ld)).keys) == 8
    assert build_loader(shards_287, "train", cfg, device=torch.device("cpu")).device.type == "cpu"
    for device in ("cuda", "cuda:1", 0, "gpu"):
        if torch.cuda.is_available():
            continue
        with pytest.raises(LoaderConfigError, match="CUDA"):
            build_loader(shards_287, "train", cfg, device=device)
    for bad in ({"batch_size": "256"}, {"scale": (0.5,)}, {"device": "tpu"}, {"nonsense": 1}):
        with pytest.raises(LoaderConfigError):
            build_loader(shards_287, "train", cfg, **bad)



def test_a_samples_crop_depends_only_on_seed_epoch_and_sample(shards_287):
    """Same sample, same epoch: the same pixels whatever the world size, batch size or backend."""
    def images(world, batch, backend="dali"):
        out = {}
        for rank in range(world):
            for b in loader(shards_287, world, rank, backend, batch_size=batch):
                out.update(zip(b.keys, b.images, strict=True))
        return out

    one, three = images(1, 16), images(3, 7)
    common = one.keys() & three.keys()
    assert len(common) > 200
    assert all(torch.equal(one[k], three[k]) for k in common)
    pil = images(1, 16, "baseline")  # the same crop boxes and flips, resampled by Pillow
    diff = torch.stack([(one[k].float() - pil[k].float()).abs().mean() for k in one])
    assert diff.mean() < 1.0 and diff.max() < 4.0, (diff.mean(), diff.max())
