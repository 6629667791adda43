"""Shard folders in S3-compatible object storage (AWS S3, GCS's S3 API, MinIO, Ceph, SeaweedFS, R2).

* :class:`S3Client` — get / range get / put / multipart upload / head / list / delete with bounded
  retries; endpoint and credentials from the standard ``AWS_*`` environment (needs the ``s3`` extra);
* :func:`open_remote` — a bucket URL's manifest and indexes fetched once into a local metadata folder;
* :class:`ShardCache` — node-local shard cache: download on demand or ahead, verified, LRU-evicted
  under a limit, shared by the processes of a node;
* :func:`convert_to_bucket`, :func:`verify_remote`, :func:`sync` — the ``s3://`` side of
  ``imagenet-pipe convert``, ``verify`` and ``sync``.

Names are imported lazily: importing this package (or its ``url`` module, as the command line
does) imports neither boto3 nor the converter.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "cache": ("TEMP_CACHE_LIMIT", "ShardCache", "parse_size"),
    "client": ("ObjectInfo", "S3Client"),
    "convert_bucket": ("convert_to_bucket",),
    "errors": ("AccessError", "BucketNotFoundError", "IntegrityError", "NotFoundError", "StorageError",
               "TransferError"),
    "remote": ("RemoteDataset", "open_remote"),
    "folders": ("SyncReport", "sync"),
    "url": ("S3Url", "is_s3_url"),
    "remote_verify": ("verify_remote",),
}
_MODULE_OF = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name: str):
    if name in _MODULE_OF:
        return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_MODULE_OF)
