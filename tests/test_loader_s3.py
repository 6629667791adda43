"""Both loaders straight from a bucket (a real SeaweedFS S3 server): the same keys, labels and
pixels as from the local folder, a node-local shard cache that a second epoch reads alone, and an
endpoint that goes away mid-epoch (retried) or for good (a named error, no hang)."""

from __future__ import annotations

import logging
import threading
import time

import pytest
import torch

from imagenet_pipe.loaders import build_loader
from imagenet_pipe.storage import StorageError, sync

from .s3server import point_aws_env_at, running_server
from .timeouts import deadline

FAST = {"device": "cpu", "num_threads": 2, "num_workers": 0, "size": 32, "dtype": "uint8", "return_keys": True}
BACKENDS = ["dali", "baseline"]


def batches(loader) -> list[tuple[list[str], torch.Tensor, torch.Tensor]]:
    return [(b.keys, b.images, b.labels) for b in loader]


@pytest.fixture
def bucket(s3prefix, shards1k) -> str:
    url = f"{s3prefix}/imagenet1k"
    sync(shards1k, url, progress=False)
    return url


@pytest.mark.parametrize("backend", BACKENDS)
def test_loaders_from_a_bucket_equal_the_local_folder(bucket, shards1k, tmp_path, backend):
    for split, preset in (("train", "train-224"), ("validation", "eval-224")):
        opts = {**FAST, "backend": backend, "batch_size": 5}
        local = batches(build_loader(shards1k, split, preset, **opts))
        with build_loader(bucket, split, preset, cache_dir=tmp_path / "cache", **opts) as remote:
            assert len(remote) == len(local)
            got = batches(remote)
        assert [k for k, _, _ in got] == [k for k, _, _ in local]
        assert all(torch.equal(a[1], b[1]) and torch.equal(a[2], b[2]) for a, b in zip(got, local, strict=True))


def test_second_epoch_reads_only_the_cache_and_resume_crosses_storage(bucket, shards1k, tmp_path):
    loader = build_loader(bucket, "train", "train-224", cache_dir=tmp_path / "cache", batch_size=4, **FAST)
    first = [k for b in loader for k in b.keys]
    cache = loader.shards.store.cache
    fetched = list(cache.downloaded)
    assert sorted(fetched) == sorted(loader.shards.names)  # every shard once
    second = [k for b in loader for k in b.keys]
    assert cache.downloaded == fetched and sorted(second) != first  # a new order, no new download
    # a state saved by a loader on the local folder resumes on the bucket (same shards, same plan)
    local = build_loader(shards1k, "train", "train-224", batch_size=4, **FAST)
    it = iter(local)
    head = [k for _ in range(3) for k in next(it).keys]
    loader.load_state_dict(local.state_dict())
    assert head + [k for b in loader for k in b.keys] == first
    loader.close()
    assert cache.cached()  # a cache_dir the caller gave is kept


def test_small_cache_evicts_and_still_reads_everything(bucket, shards1k, tmp_path):
    one_shard = max((shards1k / n).stat().st_size for n in build_loader(shards1k, "validation", **FAST).shards.names)
    loader = build_loader(bucket, "validation", cache_dir=tmp_path / "cache", cache_limit=2 * one_shard,
                          batch_size=3, **FAST)
    keys = [k for b in loader for k in b.keys]
    local = [k for b in build_loader(shards1k, "validation", batch_size=3, **FAST) for k in b.keys]
    assert keys == local
    assert len(loader.shards.store.cache.cached()) <= 2 + 1  # the limit, plus the shard being read


def test_temporary_cache_is_removed_on_close(bucket):
    loader = build_loader(bucket, "validation", batch_size=8, **FAST)
    list(loader)
    folder = loader.shards.store.cache_dir
    assert folder.exists()
    loader.close()
    assert not folder.exists()


@pytest.fixture
def private_s3(tmp_path_factory, monkeypatch):
    """A server this test may stop; the AWS environment points at it."""
    with running_server(tmp_path_factory.mktemp("seaweedfs-loader")) as server:
        point_aws_env_at(server, monkeypatch)
        server.make_bucket("outage")
        yield server


def test_endpoint_down_then_back_is_retried_and_gone_for_good_is_named(private_s3, shards1k, tmp_path, monkeypatch,
                                                                         caplog):
    sync(shards1k, "s3://outage/ds", progress=False)
    local = [k for b in build_loader(shards1k, "train", "train-224", batch_size=4, **FAST) for k in b.keys]
    loader = build_loader("s3://outage/ds", "train", "train-224", cache_dir=tmp_path / "cache", batch_size=4, **FAST)
    private_s3.stop()  # kill -9 before the epoch fetches its first shard; back two seconds later
    restarter = threading.Thread(target=lambda: (time.sleep(2), private_s3.start()), daemon=True)
    restarter.start()
    with deadline(240), caplog.at_level(logging.WARNING, logger="imagenet_pipe.storage"):
        keys = [k for b in loader for k in b.keys]
    restarter.join()
    assert any("retrying" in r.getMessage() for r in caplog.records)  # the outage was met, and waited out
    assert keys == local  # nothing skipped, nothing repeated

    monkeypatch.setenv("IMAGENET_PIPE_S3_RETRY_S", "1")
    fresh = build_loader("s3://outage/ds", "validation", batch_size=4, cache_dir=tmp_path / "other", **FAST)
    private_s3.stop()  # for good
    with deadline(120), pytest.raises(StorageError, match=r"s3://outage/ds/imagenet1k-validation-\d+\.tar"):
        list(fresh)


def test_eval_and_bench_commands_take_a_bucket_url(bucket, shards1k, tmp_path, capsys):
    from imagenet_pipe.cli import main as cli_main

    eval_args = ["--model", "small", "--device", "cpu", "--batch-size", "4", "--num-threads", "2", "--quiet"]
    torch.manual_seed(0)  # the same freshly initialised model both times
    assert cli_main(["eval", str(shards1k), *eval_args]) == 0
    local = capsys.readouterr().out
    torch.manual_seed(0)
    assert cli_main(["eval", bucket, *eval_args, "--cache-dir", str(tmp_path / "cache")]) == 0
    remote = capsys.readouterr().out
    rows = [line for line in local.splitlines() if "validation" in line]
    assert rows and all(row in remote for row in rows)  # the same images, the same scores
    assert cli_main(["bench", bucket, "--preset", "eval-224", "--device", "cpu", "--batch-size", "4",
                     "--stages", "read,loader", "--repeats", "1", "--ttfb-shards", "0", "--no-plot",
                     "--out", str(tmp_path / "bench"), "--cache-dir", str(tmp_path / "cache")]) == 0
