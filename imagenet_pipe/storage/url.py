"""``s3://bucket/prefix`` URLs. Parsing only: importing this module never imports boto3."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .errors import StorageError

SCHEME = "s3://"
# S3's rule (3-63 characters of lower-case letters, digits, dots and hyphens), which the
# S3-compatible servers (MinIO, Ceph, SeaweedFS, R2) share
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def is_s3_url(location: str | Path) -> bool:
    """True for ``s3://...`` strings; a :class:`Path` is always local."""
    return isinstance(location, str) and location.startswith(SCHEME)


@dataclass(frozen=True)
class S3Url:
    """A bucket and a key (an object) or key prefix (a folder), without trailing slash."""

    bucket: str
    key: str = ""

    @classmethod
    def parse(cls, text: str | S3Url) -> S3Url:
        if isinstance(text, S3Url):
            return text
        if not is_s3_url(text):
            raise StorageError(f"{text!r} is not an s3:// URL (expected s3://bucket/prefix)")
        bucket, _, key = text[len(SCHEME):].partition("/")
        if not _BUCKET.match(bucket):
            raise StorageError(f"{text}: {bucket!r} is not a valid bucket name (3-63 characters of a-z 0-9 . -)")
        key = key.strip("/")
        if any(part in ("", ".", "..") for part in key.split("/")) and key:
            raise StorageError(f"{text}: empty, '.' or '..' path component in the key")
        return cls(bucket, key)

    def __truediv__(self, name: str) -> S3Url:
        return S3Url(self.bucket, f"{self.key}/{name}" if self.key else name)

    @property
    def name(self) -> str:
        """The last path component (the file name of an object)."""
        return self.key.rsplit("/", 1)[-1]

    def relative(self, key: str) -> str:
        """``key`` below this prefix, as a relative path (``a/b.tar`` for ``<prefix>/a/b.tar``)."""
        return key[len(self.key) + 1:] if self.key else key

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.key}" if self.key else f"{SCHEME}{self.bucket}"
