"""``imagenet-pipe verify s3://bucket/prefix``: the local checks of :mod:`imagenet_pipe.verification` on a
bucket, each shard downloaded once (into a temporary folder, next to the fetched metadata),
checked and deleted, so the disk holds at most one shard per worker."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from ..verification import Report, verify
from .client import S3Client
from .errors import NotFoundError
from .remote import open_remote
from .url import S3Url


class _ShardFetcher:
    """Picklable (it travels to verify's worker processes)."""

    def __init__(self, url: S3Url, root: Path, client: S3Client) -> None:
        self.url, self.root, self.client = url, root, client

    @contextmanager
    def __call__(self, shard: dict) -> Iterator[None]:
        path = self.root / shard["name"]
        # whatever arrives is checked (and its damage reported) by verify itself; a missing object
        # is reported there as a missing shard
        with suppress(NotFoundError):
            self.client.download(self.url / shard["name"], path, verify=False)
        try:
            yield
        finally:
            path.unlink(missing_ok=True)


def verify_remote(url: S3Url | str, decode: bool = False, workers: int | None = None, progress: bool = True,
                  log: Callable[[str], None] | None = None, client: S3Client | None = None) -> Report:
    client = client or S3Client()
    with tempfile.TemporaryDirectory(prefix="imagenet-pipe-verify-") as tmp:
        dataset = open_remote(url, tmp, client)
        return verify(dataset.root, decode=decode, workers=workers, progress=progress, log=log,
                      fetch=_ShardFetcher(dataset.url, dataset.root, client))
