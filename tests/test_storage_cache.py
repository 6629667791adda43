"""The node-local shard cache and the metadata folder, against a real SeaweedFS server: downloads
verified against the manifest, LRU eviction under a limit (never a shard in use), background
prefetch, a temporary per-process cache, and two processes sharing one cache folder."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from imagenet_pipe.storage import (
    TEMP_CACHE_LIMIT,
    IntegrityError,
    NotFoundError,
    S3Client,
    S3Url,
    ShardCache,
    StorageError,
    open_remote,
    sync,
)


@pytest.fixture
def remote1k(s3prefix, shards1k) -> str:
    """The session's fake shards, uploaded under a fresh prefix."""
    url = f"{s3prefix}/imagenet1k"
    sync(shards1k, url, progress=False)
    return url


def use(cache: ShardCache, *names: str) -> None:
    for name in names:
        with cache.open(name):
            pass


def test_metadata_folder_fetched_once_per_manifest(remote1k, shards1k, tmp_path):
    dataset = open_remote(remote1k, tmp_path)
    local = {p.name: p.read_bytes() for p in shards1k.iterdir() if p.is_file()}
    assert {p.name: p.read_bytes() for p in dataset.root.iterdir()} == \
        {n: b for n, b in local.items() if not n.endswith(".tar")}
    assert sorted(dataset.shards) == sorted(n for n in local if n.endswith(".tar"))

    client, base = S3Client(), S3Url.parse(remote1k)
    client.delete(base / "imagenet1k-train-0.idx")
    again = open_remote(remote1k, tmp_path)  # same manifest: the local folder as it was, nothing fetched
    assert again.root == dataset.root and (again.root / "imagenet1k-train-0.idx").exists()

    manifest = json.loads(local["manifest.json"])
    manifest["note"] = "a new conversion under the same URL"
    client.put(base / "manifest.json", json.dumps(manifest).encode())
    changed = open_remote(remote1k, tmp_path)
    assert changed.root != dataset.root and changed.manifest["note"]
    assert not (changed.root / "imagenet1k-train-0.idx").exists()  # fetched anew from the bucket

    with pytest.raises(NotFoundError, match=f"{S3Url.parse(remote1k).bucket}/nothing: no manifest.json"):
        open_remote(f"s3://{base.bucket}/nothing", tmp_path)


def test_shards_downloaded_verified_and_read_from_the_cache_on_the_second_pass(remote1k, shards1k, tmp_path):
    with ShardCache(remote1k, tmp_path / "cache") as cache:
        names = sorted(cache.dataset.shards)
        for _ in range(2):  # two epochs
            for name in names:
                with cache.open(name) as path:
                    assert path.read_bytes() == (shards1k / name).read_bytes()
        assert sorted(cache.downloaded) == names  # once each: the second pass read only the cache
        assert cache.cached() == names
        assert (cache.root / "_info.json").exists()
        with pytest.raises(StorageError, match="not a shard of this dataset's manifest"):
            cache.path("imagenet1k-train-99.tar")


def lru_model(accesses: list[str], sizes: dict[str, int], limit: int, pinned: set[str] = frozenset()) -> set[str]:
    """What an LRU cache of ``limit`` bytes holds after ``accesses`` (independent of the code under test)."""
    held: list[str] = []  # least recently used first
    for name in accesses:
        if name in held:
            held.remove(name)
        else:
            used = sum(sizes[n] for n in held)
            for old in list(held):
                if used + sizes[name] <= limit:
                    break
                if old not in pinned:
                    held.remove(old)
                    used -= sizes[old]
        held.append(name)
    return set(held)


def test_lru_eviction_under_the_limit(remote1k, tmp_path):
    cache = ShardCache(remote1k, tmp_path / "cache", cache_limit="216kB")
    sizes = {n: r.bytes for n, r in cache.dataset.shards.items()}
    names = sorted(sizes)
    same = [n for n in names if sizes[n] == 71680][:4]  # three fit in 216 kB, four do not
    use(cache, *same[:3])
    assert cache.cached() == sorted(same[:3])
    use(cache, same[3])
    assert cache.cached() == sorted(same[1:])  # the least recently used one went
    use(cache, same[1], same[0])  # same[1] used again: same[2] is now the oldest
    assert cache.cached() == sorted([same[0], same[1], same[3]])

    accesses = [*same[:3], same[3], same[1], same[0]]
    for name in [*names, names[2], names[0], *reversed(names)]:
        use(cache, name)
        accesses.append(name)
        assert set(cache.cached()) == lru_model(accesses, sizes, 216_000)
        assert sum(sizes[n] for n in cache.cached()) <= 216_000
    cache.close()


def test_a_shard_in_use_is_never_evicted(remote1k, tmp_path):
    cache = ShardCache(remote1k, tmp_path / "cache", cache_limit=200_000)
    names = sorted(cache.dataset.shards)
    held = cache.path(names[0])  # pinned (a reader holds it) ...
    use(cache, *names[1:])  # ... while every other shard passes through
    assert held.exists() and names[0] in cache.cached()
    cache.release(names[0])
    use(cache, *names[1:3])
    assert names[0] not in cache.cached()  # unpinned, it is the least recently used
    with pytest.raises(StorageError, match="exceed cache_limit 1000"):
        ShardCache(remote1k, tmp_path / "cache", cache_limit=1000).path(names[0])
    cache.close()


HOLDER = textwrap.dedent("""
    import sys
    from imagenet_pipe.storage import ShardCache
    url, cache_dir, name = sys.argv[1:4]
    cache = ShardCache(url, cache_dir)
    cache.path(name)
    print("pinned", flush=True)
    sys.stdin.readline()  # hold the shard until told
    cache.release(name)
    cache.close()
""")


def test_a_shard_in_use_by_another_process_is_never_evicted(remote1k, tmp_path):
    cache = ShardCache(remote1k, tmp_path / "cache", cache_limit=200_000)
    names = sorted(cache.dataset.shards)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, remote1k, str(tmp_path / "cache"), names[0]],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "pinned"
        use(cache, *names[1:])
        assert names[0] in cache.cached()  # the other process still reads it
    finally:
        holder.communicate("done\n", timeout=60)
    use(cache, *names[1:3])
    assert names[0] not in cache.cached()
    cache.close()


def test_prefetch_and_its_errors(remote1k, shards1k, tmp_path):
    client, base = S3Client(), S3Url.parse(remote1k)
    client.delete(base / "imagenet1k-train-4.tar")
    data = bytearray((shards1k / "imagenet1k-train-5.tar").read_bytes())
    data[3000] ^= 0xFF
    client.put(base / "imagenet1k-train-5.tar", bytes(data))  # same size, other bytes than the manifest says
    with ShardCache(remote1k, tmp_path / "cache") as cache:
        names = sorted(cache.dataset.shards)
        cache.prefetch(names)
        good = [n for n in names if n not in ("imagenet1k-train-4.tar", "imagenet1k-train-5.tar")]
        use(cache, *good)
        with pytest.raises(NotFoundError, match=f"{base}/imagenet1k-train-4.tar: no such object"):
            cache.path("imagenet1k-train-4.tar")
        with pytest.raises(IntegrityError, match=f"{base}/imagenet1k-train-5.tar: .* sha256"):
            cache.path("imagenet1k-train-5.tar")
        assert sorted(cache.downloaded) == good == cache.cached()
        assert sorted(p.name for p in cache.dir.glob("*.tar*") if not p.name.endswith(".lock")) == good


def test_without_cache_dir_a_temporary_limited_cache(remote1k, shards1k):
    cache = ShardCache(remote1k)
    assert cache.limit == TEMP_CACHE_LIMIT
    name = sorted(cache.dataset.shards)[0]
    path = cache.path(name)
    assert path.read_bytes() == (shards1k / name).read_bytes()
    cache.release(name)

    errors = multiprocessing.get_context("fork").SimpleQueue()

    def in_forked_child() -> None:
        try:
            cache.path(name)
            errors.put("no error")
        except StorageError as e:
            errors.put(str(e))

    child = multiprocessing.get_context("fork").Process(target=in_forked_child)
    child.start()
    child.join(60)
    assert "cannot be used in a forked process; open one per process" in errors.get()
    cache.close()
    assert not cache.cache_dir.exists()


READER = textwrap.dedent("""
    import json, pathlib, sys, time
    from imagenet_pipe.storage import ShardCache
    url, cache_dir, go = sys.argv[1:4]
    while not pathlib.Path(go).exists():
        time.sleep(0.005)
    cache = ShardCache(url, cache_dir)
    names = sorted(cache.dataset.shards)
    cache.prefetch(names)
    for name in names:
        with cache.open(name) as path:
            assert path.stat().st_size == cache.dataset.shards[name].bytes
    print(json.dumps(cache.downloaded))
    cache.close()
""")


def test_two_processes_sharing_a_cache_dir_download_each_shard_once(remote1k, tmp_path):
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", READER, remote1k, str(tmp_path / "cache"), str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    go.touch()  # both start reading at once
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in results]
    downloads = [name for out, _ in results for name in json.loads(out)]
    names = sorted(ShardCache(remote1k, tmp_path / "cache").dataset.shards)
    assert sorted(downloads) == names  # each shard fetched by exactly one of the two
    assert sorted(Path(p).name for p in (tmp_path / "cache").glob("*/shards/*.tar")) == names
