"""``imagenet-pipe convert ... --out s3://bucket/prefix``: the local converter writes into a staging
folder; each finished shard is uploaded (in parts) and its local copy deleted; the indexes and
the manifest are uploaded last, so a bucket prefix holding a manifest is a complete conversion.

Resumable like a local conversion: the staging folder keeps the converter's state, and a rerun
keeps every uploaded shard whose size and sha256 (HEAD + the sha256 recorded at upload) match,
writing and uploading only the rest. The staging folder is removed when the upload is complete.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..conversion import MANIFEST, ConvertError, convert, resolve_options
from ..format import ShardRecord, idx_name
from .client import S3Client
from .errors import BucketNotFoundError, NotFoundError, StorageError
from .folders import upload_folder
from .remote import dataset_dir, read_manifest
from .url import S3Url


class BucketSink:
    """Where :func:`~imagenet_pipe.conversion.convert` hands each finished shard."""

    def __init__(self, client: S3Client, url: S3Url) -> None:
        self.client, self.url = client, url

    def has(self, record: ShardRecord) -> bool:
        info = self.client.head(self.url / record.name)
        return info is not None and info.size == record.bytes and info.sha256 == record.sha256

    def put(self, record: ShardRecord, path: Path) -> None:
        if not self.has(record):
            self.client.upload(path, self.url / record.name, sha256=record.sha256)
        path.unlink()


def default_staging() -> Path:
    """``$XDG_CACHE_HOME/imagenet-pipe/staging`` (``~/.cache/...``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "imagenet-pipe" / "staging"


def convert_to_bucket(dataset: str, source: Path | str, url: S3Url | str, *, staging: Path | str | None = None,
                      overwrite: bool = False, progress: bool = True, log: Callable[[str], None] | None = None,
                      client: S3Client | None = None, **options: Any) -> dict[str, Any]:
    """:func:`~imagenet_pipe.conversion.convert` into ``s3://bucket/prefix``; returns the manifest.
    The conversion is staged in ``<staging>/<bucket%2Fprefix>`` (the same folder on a rerun; only
    that subfolder is removed at the end). ``options``: those of ``convert`` (workers, splits,
    seed, shard_size, ...)."""
    url, client = S3Url.parse(url), client or S3Client()
    log = log or (lambda msg: print(msg, file=sys.stderr))
    client.check_bucket(url)
    previous = _remote_manifest(client, url)
    if previous is not None:
        wanted = resolve_options(dataset, Path(source), **_option_subset(options)).to_json()
        if previous.get("options") == wanted and not overwrite:
            log(f"{url} already holds this conversion ({MANIFEST}); nothing to do")
            return previous
        if not overwrite:
            raise ConvertError(f"{url} holds a different conversion ({MANIFEST}); pass --overwrite to replace it")
        client.delete(url / MANIFEST)  # the bucket stops claiming a finished conversion at once
    staging = dataset_dir(Path(staging) if staging else default_staging(), url)
    log(f"staging in {staging}; shards go to {url} as they are written")
    sink = BucketSink(client, url)
    manifest = convert(dataset, source, staging, overwrite=overwrite, progress=progress, log=log, sink=sink,
                       **options)
    absent = [s["name"] for s in manifest["shards"] if not sink.has(ShardRecord(**s))]
    if absent:  # cannot happen unless the bucket lost objects meanwhile; never upload a manifest then
        raise StorageError(f"{url}: {len(absent)} shard(s) vanished from the bucket during the upload, e.g. "
                           f"{absent[0]}; rerun the command")
    upload_folder(staging, url, progress=False, client=client, shards_here=False)  # indexes, then the manifest
    if previous is not None:
        _delete_stale(client, url, previous, manifest)
    shutil.rmtree(staging)
    log(f"{len(manifest['shards'])} shards, indexes and {MANIFEST} uploaded to {url}")
    return manifest




def _option_subset(options: dict[str, Any]) -> dict[str, Any]:
    """The options that make a conversion (those :func:`resolve_options` takes), without the ones
    that only steer a run (workers, keep_work, strict, ...)."""
    known = inspect.signature(resolve_options).parameters
    return {k: v for k, v in options.items() if k in known}


def _remote_manifest(client: S3Client, url: S3Url) -> dict[str, Any] | None:
    try:
        return json.loads(read_manifest(client, url))
    except BucketNotFoundError:
        raise
    except NotFoundError:
        return None


def _delete_stale(client: S3Client, url: S3Url, previous: dict[str, Any], current: dict[str, Any]) -> None:
    """Shards (and their .idx) of the replaced conversion that the new one does not have."""
    keep = {s["name"] for s in current["shards"]}
    for shard in previous.get("shards", []):
        if shard["name"] not in keep:
            client.delete(url / shard["name"])
            client.delete(url / idx_name(shard["name"]))
