"""A shard folder in a bucket, seen from a node: its manifest and small index files fetched once
into a local metadata folder that looks like the shard folder without the tars.

The folder is keyed by the manifest's sha256: every index is a function of the shards the
manifest lists with their checksums, so the same manifest means the same metadata, and a changed
manifest (a new conversion under the same URL) gets a fresh folder. Concurrent openers on one
node (the ranks) fetch it once: one takes the lock and fetches into a temporary folder renamed
into place; the others wait and reuse it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..format import MANIFEST, ShardRecord
from .client import S3Client
from .errors import BucketNotFoundError, NotFoundError
from .locks import locked
from .url import S3Url

META_DIR, SHARDS_DIR = "meta", "shards"
FETCH_THREADS = 8


@dataclass(frozen=True)
class RemoteDataset:
    """``root``: local folder with ``manifest.json``, ``_info.json``, ``classes.tsv``, the DALI
    ``.idx`` files and the other indexes (no tars). ``shards``: the manifest's records by name."""

    url: S3Url
    root: Path
    manifest: dict[str, Any]
    shards: dict[str, ShardRecord]

    def shard_url(self, name: str) -> S3Url:
        return self.url / name


def dataset_dir(cache_dir: Path, url: S3Url) -> Path:
    """One folder per dataset URL inside a cache folder (``bucket%2Fprefix``)."""
    return Path(cache_dir) / quote(f"{url.bucket}/{url.key}".rstrip("/"), safe="")


def is_metadata(relative: str) -> bool:
    """Top-level files other than shards: manifest, indexes, class table, ``.idx``."""
    return "/" not in relative and not relative.endswith(".tar") and ".partial" not in relative


def open_remote(url: S3Url | str, cache_dir: Path | str, client: S3Client | None = None) -> RemoteDataset:
    """Fetch (once per manifest version and node) the metadata of the shard folder at ``url``."""
    url, client = S3Url.parse(url), client or S3Client()
    manifest_bytes = read_manifest(client, url)
    manifest = json.loads(manifest_bytes)
    base = dataset_dir(Path(cache_dir), url) / META_DIR
    base.mkdir(parents=True, exist_ok=True)
    root = base / hashlib.sha256(manifest_bytes).hexdigest()[:16]
    if not root.is_dir():
        with locked(base / f"{root.name}.lock"):
            if not root.is_dir():
                _fetch_metadata(client, url, root, manifest_bytes)
    shards = {s["name"]: ShardRecord(**s) for s in manifest["shards"]}
    return RemoteDataset(url, root, manifest, shards)


def read_manifest(client: S3Client, url: S3Url) -> bytes:
    try:
        return client.get(url / MANIFEST)
    except BucketNotFoundError:
        raise
    except NotFoundError:
        raise NotFoundError(f"{url}: no {MANIFEST} (not a finished imagenet-pipe conversion, "
                            "or an upload still running)") from None


def _fetch_metadata(client: S3Client, url: S3Url, root: Path, manifest_bytes: bytes) -> None:
    for stale in root.parent.glob(f"{root.name}.partial-*"):  # left by a killed process (we hold the lock)
        shutil.rmtree(stale, ignore_errors=True)
    tmp = root.with_name(f"{root.name}.partial-{os.getpid()}")
    tmp.mkdir()
    try:
        names = [url.relative(o.url.key) for o in client.list(url)]
        wanted = [n for n in names if is_metadata(n) and n != MANIFEST]
        with ThreadPoolExecutor(FETCH_THREADS) as pool:
            list(pool.map(lambda n: client.download(url / n, tmp / n), wanted))
        (tmp / MANIFEST).write_bytes(manifest_bytes)
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
